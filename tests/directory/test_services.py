"""Asking the hub to bring a missing payer on board: saved and audited together, or neither."""

import pytest
from django.core.exceptions import ValidationError

from directory.services import onboarding_request_create
from hub.models import AuditEvent, OnboardingRequest
from tests.conftest import Tenant
from tests.support.every_payer import rows_of_every_payer


def test_an_onboarding_request_is_saved_and_audited_for_the_asking_payer(north: Tenant) -> None:
    onboarding = onboarding_request_create(
        payer=north.payer, requested_by=north.admin, organization_name="Prairie Health Co-op",
        npi="1003000126", state="ND", client_address="192.0.2.7",
    )  # fmt: skip

    assert OnboardingRequest.objects.for_payer(north.payer).get() == onboarding
    assert (onboarding.requested_by, onboarding.status) == (north.admin, "open")
    audit = AuditEvent.objects.for_payer(north.payer).get(action="onboarding_request.create")
    assert (audit.payer, audit.actor) == (north.payer, north.admin)
    assert audit.changes == {
        "organization_name": "Prairie Health Co-op", "npi": "1003000126", "state": "ND"
    }  # fmt: skip


def test_an_invalid_onboarding_request_leaves_no_row_and_no_audit(north: Tenant) -> None:
    with pytest.raises(ValidationError, match="check digit"):
        onboarding_request_create(
            payer=north.payer, requested_by=north.member, organization_name="X Health",
            npi="1234567890",
        )  # fmt: skip

    assert not rows_of_every_payer(OnboardingRequest).exists()
    assert not rows_of_every_payer(AuditEvent).exists()

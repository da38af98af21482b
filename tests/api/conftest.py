"""Fixtures of the payer-system API's tests: the persona payers' systems, and former payers
the hub can ask payer-to-payer."""

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from hub.models import Payer, PayerStatus
from tests.api.payer_systems import PayerSystems, payer_systems_registered
from tests.conftest import Tenant
from tests.factories import FhirEndpointFactory, PayerFactory

WEST_NPI = "1367902453"


@pytest.fixture
def systems(north: Tenant, south: Tenant) -> Iterator[PayerSystems]:
    with payer_systems_registered(north.payer, south.payer) as registered:
        yield registered


@pytest.fixture
def west(db: None) -> Payer:
    """Western Peaks Health: where North's members often hold concurrent coverage."""
    payer = PayerFactory(
        slug="west", name="Western Peaks Health", npi=WEST_NPI, status=PayerStatus.PARTICIPATING
    )
    FhirEndpointFactory(payer=payer, offers_backend_services=True)
    return payer


@pytest.fixture
def south_holds_records(south: Tenant) -> Payer:
    FhirEndpointFactory(payer=south.payer, offers_backend_services=True)
    return south.payer


def opt_in_body(**changes: Any) -> dict[str, Any]:
    """Return North's opt-in of a new enrollee who left South last month and is covered at
    West as well; ``changes`` replace top-level parts."""
    today = timezone.localdate()
    body: dict[str, Any] = {
        "member": {
            "member_id": "NSH-000042",
            "family_name": "Person",
            "given_names": ["Patricia", "Ann"],
            "birth_date": "1974-12-25",
            "gender": "female",
        },
        "new_coverage": {"start": (today - timedelta(days=3)).isoformat()},
        "previous_payers": [
            {
                "payer": "1245319599",
                "member_id": "DH10001235",
                "coverage_start": "2019-01-01",
                "coverage_end": (today - timedelta(days=4)).isoformat(),
            }
        ],
        "concurrent_payers": [
            {"payer": "west", "member_id": "WP-77", "coverage_start": "2024-01-01"}
        ],
        "consent": {"choice": "everything"},
        "attestation": {
            "obtained_at": (timezone.now() - timedelta(days=1)).replace(microsecond=0).isoformat(),
            "method": "enrollment_form",
            "education_text_version": "2026-01",
        },
    }
    return body | changes

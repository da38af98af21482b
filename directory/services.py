"""What the directory changes (STYLE.md #1: services write; #7: audited in the same transaction)."""

from django.db import transaction

from hub.audit import audit_record
from hub.models import OnboardingRequest, Payer, User


def onboarding_request_create(
    *,
    payer: Payer,
    requested_by: User,
    organization_name: str,
    npi: str = "",
    state: str = "",
    contact_email: str = "",
    note: str = "",
    client_address: str | None = None,
) -> OnboardingRequest:
    """Ask the hub operators to bring a payer that is missing from the directory on board."""
    with transaction.atomic():
        onboarding = OnboardingRequest(
            payer=payer, requested_by=requested_by, organization_name=organization_name,
            npi=npi, state=state, contact_email=contact_email, note=note,
        )  # fmt: skip
        onboarding.full_clean()
        onboarding.save()
        audit_record(
            action="onboarding_request.create", obj=onboarding, payer=payer, actor=requested_by,
            changes={"organization_name": organization_name, "npi": npi, "state": state},
            client_address=client_address,
        )  # fmt: skip
    return onboarding

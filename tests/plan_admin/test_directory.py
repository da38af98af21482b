"""The directory of participating payers and onboarding requests."""

from collections.abc import Callable

from django.test import Client
from django.utils import timezone

from hub.models import AuditEvent, OnboardingRequest, PayerStatus, User
from tests.conftest import Tenant
from tests.factories import FhirEndpointFactory, OnboardingRequestFactory, PayerFactory
from tests.plan_admin.conftest import admin_url
from tests.support.every_payer import rows_of_every_payer


def _names(response: object) -> list[str]:
    return [entry.payer.name for entry in response.context["entries"]]


def test_the_directory_lists_participating_payers_with_endpoint_status(
    north: Tenant, south: Tenant, signed_in: Callable[[User], Client]
) -> None:
    west = PayerFactory(name="West Coast Health", slug="west", states=["CA", "OR"],
                        plan_types=["medicaid"], npi="1003000126")  # fmt: skip
    PayerFactory(name="Invited Plan", slug="invited", status=PayerStatus.INVITED)
    FhirEndpointFactory(payer=west, capabilities_checked_at=timezone.now())
    FhirEndpointFactory(payer=south.payer)
    client = signed_in(north.admin)
    response = client.get(admin_url("directory"))
    assert _names(response) == ["Southern Cross Health", "West Coast Health"]  # not us, not invited
    page = response.content.decode()
    assert "Endpoint tested" in page and "Endpoint registered, waiting for its first probe" in page
    assert "Medicaid" in page and "CA, OR" in page

    assert _names(client.get(admin_url("directory"), {"q": "west"})) == ["West Coast Health"]
    assert _names(client.get(admin_url("directory"), {"q": "1003000126"})) == ["West Coast Health"]
    assert _names(client.get(admin_url("directory"), {"state": "or"})) == ["West Coast Health"]
    assert _names(client.get(admin_url("directory"), {"plan_type": "medicaid"})) == [
        "West Coast Health"
    ]
    assert _names(client.get(admin_url("directory"), {"state": "TX"})) == []


def test_an_admin_asks_the_hub_to_onboard_a_missing_payer(
    north: Tenant, south: Tenant, signed_in: Callable[[User], Client]
) -> None:
    OnboardingRequestFactory(requested_by=south.admin, organization_name="South's secret ask")
    client = signed_in(north.admin)
    response = client.post(admin_url("onboarding-create"), {
        "organization_name": "Prairie Health Co-op", "npi": "1003000126", "state": "nd",
        "contact_email": "it@prairie.example", "note": "Many of our members came from them."},
        follow=True)  # fmt: skip
    page = response.content.decode()
    assert "the hub&#x27;s team will contact Prairie Health Co-op" in page
    onboarding = OnboardingRequest.objects.for_payer(north.payer).get()
    assert (onboarding.state, onboarding.requested_by, onboarding.status) == (
        "ND",
        north.admin,
        "open",
    )
    assert "Prairie Health Co-op" in page and "Open" in page
    assert "South&#x27;s secret ask" not in page
    audit = AuditEvent.objects.for_payer(north.payer).get(action="onboarding_request.create")
    assert (audit.payer, audit.actor) == (north.payer, north.admin)


def test_a_bad_onboarding_request_is_refused_with_a_message(
    north: Tenant, signed_in: Callable[[User], Client]
) -> None:
    client = signed_in(north.admin)
    for data, message in [
        ({"organization_name": "X Health", "npi": "1234567890"}, "check digit is wrong"),
        ({"organization_name": "X Health", "state": "North"}, "two-letter code"),
        ({"organization_name": ""}, "This field is required"),
        ({"organization_name": "X Health", "contact_email": "nope"}, "valid email"),
    ]:
        response = client.post(admin_url("onboarding-create"), data)
        assert response.status_code == 400
        assert message in response.content.decode()
    assert not rows_of_every_payer(OnboardingRequest).exists()
    assert not rows_of_every_payer(AuditEvent).exists()


def test_a_search_the_database_cannot_take_is_refused_with_a_message(
    north: Tenant, south: Tenant, signed_in: Callable[[User], Client]
) -> None:
    FhirEndpointFactory(payer=south.payer)
    client = signed_in(north.admin)
    response = client.get(admin_url("directory"), {"q": "South\x00ern", "state": "Minnesota"})
    assert response.status_code == 400
    page = response.content.decode()
    assert "Null characters are not allowed" in page and "two-letter state code" in page
    assert _names(response) == ["Southern Cross Health"]  # the list is shown unfiltered

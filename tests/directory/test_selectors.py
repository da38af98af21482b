"""The directory both portals search: who is listed, what a search finds, whom a member may ask."""

from django.utils import timezone

from directory.selectors import directory_entries, directory_payers_to_ask, onboarding_requests_of
from hub.models import Payer, PayerStatus
from tests.conftest import Tenant
from tests.factories import FhirEndpointFactory, OnboardingRequestFactory, PayerFactory


def _west() -> Payer:
    west = PayerFactory(name="West Coast Health", slug="west", states=["CA", "OR"],
                        plan_types=["medicaid"], npi="1003000126", payer_identifier="WCH01")  # fmt: skip
    FhirEndpointFactory(payer=west, capabilities_checked_at=timezone.now())
    return west


def _names(**search: str) -> list[str]:
    north = Payer.objects.get(slug="north")
    return [entry.payer.name for entry in directory_entries(payer=north, **search)]


def test_other_participating_payers_are_listed_with_their_endpoint_status(
    north: Tenant, south: Tenant
) -> None:
    _west()
    FhirEndpointFactory(payer=south.payer)
    PayerFactory(name="Invited Plan", slug="invited", status=PayerStatus.INVITED)
    PayerFactory(name="Prairie Health", slug="prairie")

    entries = directory_entries(payer=north.payer)

    assert [(entry.payer.name, entry.endpoint_status) for entry in entries] == [
        ("Prairie Health", "No FHIR endpoint yet"),
        ("Southern Cross Health", "Endpoint registered, waiting for its first probe"),
        ("West Coast Health", "Endpoint tested"),
    ]  # not North itself, not the invited plan


def test_a_search_matches_a_name_an_npi_a_payer_id_a_state_or_a_kind_of_plan(
    north: Tenant, south: Tenant
) -> None:
    _west()
    assert _names(query="west") == ["West Coast Health"]
    assert _names(query="1003000126") == ["West Coast Health"]
    assert _names(query="wch01") == ["West Coast Health"]
    assert _names(state="or") == ["West Coast Health"]
    assert _names(plan_type="medicaid") == ["West Coast Health"]
    assert _names(state="TX") == []


def test_a_member_is_offered_only_the_payers_the_hub_can_ask(north: Tenant, south: Tenant) -> None:
    west = _west()
    PayerFactory(name="Prairie Health", slug="prairie")  # no FHIR endpoint to ask

    assert directory_payers_to_ask(payer=north.payer) == [west]
    assert directory_payers_to_ask(payer=north.payer, name="1003000126") == [west]
    assert directory_payers_to_ask(payer=north.payer, state="TX") == []


def test_a_payer_sees_only_its_own_onboarding_requests_newest_first(
    north: Tenant, south: Tenant
) -> None:
    older = OnboardingRequestFactory(requested_by=north.admin, organization_name="Older ask")
    newer = OnboardingRequestFactory(requested_by=north.member, organization_name="Newer ask")
    OnboardingRequestFactory(requested_by=south.admin, organization_name="South's secret ask")

    assert list(onboarding_requests_of(payer=north.payer)) == [newer, older]

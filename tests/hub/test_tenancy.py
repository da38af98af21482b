"""Fail-closed tenancy: nobody reaches another payer's objects (STYLE.md #2, #9)."""

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from hub.audit import audit_record
from hub.models import SigningKey
from hub.signing_keys import signing_keys_ensure
from tests.conftest import Tenant
from tests.factories import (
    ConsentFactory,
    DeliveryAttemptFactory,
    DeliveryFactory,
    ExchangeEventFactory,
    ExchangeRequestFactory,
    FhirEndpointFactory,
    IdentityProviderFactory,
    OnboardingRequestFactory,
    SftpDestinationFactory,
)


def _request_of(tenant: Tenant, former: Tenant) -> Any:
    return ExchangeRequestFactory(
        consent=ConsentFactory(member=tenant.member, former_payer=former.payer)
    )


def _audit_event_of(tenant: Tenant, former: Tenant) -> Any:
    return audit_record(action="test.touch", obj=tenant.payer, payer=tenant.payer)


def _signing_key_of(tenant: Tenant, former: Tenant) -> SigningKey:
    return signing_keys_ensure(payer=tenant.payer)[0]


# Every kind of tenant-owned object the plan-admin API serves, and how to make one.
KINDS: dict[str, Callable[[Tenant, Tenant], Any]] = {
    "exchange-requests": _request_of,
    "consents": lambda t, f: ConsentFactory(member=t.member, former_payer=f.payer),
    "exchange-events": lambda t, f: ExchangeEventFactory(exchange_request=_request_of(t, f)),
    "deliveries": lambda t, f: DeliveryFactory(exchange_request=_request_of(t, f)),
    "delivery-attempts": lambda t, f: DeliveryAttemptFactory(
        delivery=DeliveryFactory(exchange_request=_request_of(t, f))
    ),
    "onboarding-requests": lambda t, f: OnboardingRequestFactory(requested_by=t.member),
    "audit-events": _audit_event_of,
    "signing-keys": _signing_key_of,
    "fhir-endpoints": lambda t, f: FhirEndpointFactory(payer=t.payer),
    "identity-providers": lambda t, f: IdentityProviderFactory(payer=t.payer),
    "sftp-destinations": lambda t, f: SftpDestinationFactory(payer=t.payer),
}


def _client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_plan_admin_sees_own_payers_object_and_404_for_the_other_payers(
    kind: str, north: Tenant, south: Tenant
) -> None:
    souths_object = KINDS[kind](south, north)
    nora, sam = _client_for(north.admin), _client_for(south.admin)

    # Sam, South's administrator, reads it: the URL is right and the object exists.
    assert sam.get(f"/p/south/api/{kind}/{souths_object.pk}/").status_code == 200
    # Nora at North: not through her own payer's URL, nor through South's.
    assert nora.get(f"/p/north/api/{kind}/{souths_object.pk}/").status_code == 404
    assert nora.get(f"/p/south/api/{kind}/{souths_object.pk}/").status_code == 404
    assert nora.get(f"/p/south/api/{kind}/").status_code == 404
    # ...and South's object never shows up in North's lists.
    listed = nora.get(f"/p/north/api/{kind}/").json()["results"]
    assert souths_object.pk not in [row["id"] for row in listed]


def test_members_see_only_their_own_requests_and_consents(north: Tenant, south: Tenant) -> None:
    sues_request = _request_of(south, north)
    neds_request = _request_of(north, south)
    sue, ned = _client_for(south.member), _client_for(north.member)

    sue_page = sue.get(f"/p/south/me/requests/{sues_request.pk}/")
    assert sue_page.status_code == 200
    assert "Records from North Star Health" in sue_page.content.decode()
    assert sue.get(f"/p/south/me/consents/{sues_request.consent_id}.json").json()[
        "resourceType"
    ] == ("Consent")

    for url in (
        f"/p/north/me/requests/{sues_request.pk}/",
        f"/p/south/me/requests/{sues_request.pk}/",
        f"/p/south/me/consents/{sues_request.consent_id}.json",
        "/p/south/me/requests/",
    ):
        assert ned.get(url).status_code == 404, url
    # Ned's own list shows his request and not Sue's.
    listing = ned.get("/p/north/me/requests/").content.decode()
    assert f"/p/north/me/requests/{neds_request.pk}/" in listing
    assert f"/requests/{sues_request.pk}/" not in listing


def test_another_member_of_the_same_payer_is_a_404_too(north: Tenant, south: Tenant) -> None:
    from tests.factories import UserFactory

    neds_request = _request_of(north, south)
    nadia = UserFactory(username="nadia", payer=north.payer)
    assert _client_for(nadia).get(f"/p/north/me/requests/{neds_request.pk}/").status_code == 404


def test_roles_do_not_cross(north: Tenant, south: Tenant) -> None:
    request = _request_of(north, south)
    assert _client_for(north.member).get("/p/north/api/exchange-requests/").status_code == 404
    assert _client_for(north.admin).get(f"/p/north/me/requests/{request.pk}/").status_code == 404


def test_signed_out_visitors_are_sent_to_sign_in(north: Tenant) -> None:
    response = Client().get("/p/north/me/requests/")
    assert response.status_code == 302
    assert response["Location"].startswith("/p/north/sign-in/?next=")
    assert Client().get("/p/north/api/exchange-requests/").status_code == 403

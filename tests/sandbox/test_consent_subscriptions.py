"""A sandbox former payer subscribes to the hub Consent it was named in, and stops disclosing
once the member withdraws it (seed 000 steps 5 and 10-12) — against the real hub, served by
live_server, and a real Celery worker that delivers the hub's notification."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from exchange.consents.services import consent_fhir_url
from exchange.models import ConsentNotification, ConsentSubscription, ExchangeRequest
from exchange.services import exchange_request_withdraw
from tests.conftest import Tenant
from tests.factories import ExchangeRequestFactory
from tests.sandbox.harness import (
    BULK_SCOPES,
    FORMER,
    NEW,
    SEED,
    BackendClient,
    RunningSandbox,
    everything,
    match_request,
    matched_group,
    member_bundle,
    post_match,
    running_sandbox,
)
from tests.support.celery_worker import running_worker, wait_for
from tests.support.every_payer import rows_of_every_payer

PATRICIA = "pat1"  # the HRex example member, in every sandbox
MEMBER_PATIENT_REF = {"reference": "Patient/1"}  # harness.match_request's MemberPatient id


@pytest.fixture(scope="module")
def former_payer() -> Iterator[RunningSandbox]:
    """The former payer, known at the hub as `south`."""
    with running_sandbox(
        FORMER, "--seed", SEED, "--members", "40", "--peer", NEW, "--hub-client-id", "south"
    ) as sandbox:
        yield sandbox


@pytest.fixture
def hub(live_server: Any, settings: Any) -> str:
    settings.HUB_PUBLIC_URL = live_server.url
    return str(live_server.url)


@pytest.fixture
def exchange_request(hub: str, north: Tenant, south: Tenant) -> ExchangeRequest:
    """North's member asked South for records; the Consent lives on the hub's Consent endpoint."""
    exchange_request = ExchangeRequestFactory(
        consent__member=north.member, consent__former_payer=south.payer
    )
    consent = exchange_request.consent
    # As exchange_request_create does: the Consent's id and source are its hub URL.
    consent.fhir_resource["id"] = str(consent.pk)
    consent.fhir_resource["sourceReference"] = {"reference": consent_fhir_url(consent)}
    consent.save(update_fields=["fhir_resource"])
    return exchange_request


def _status(sandbox: RunningSandbox) -> dict[str, Any]:
    return dict(httpx.get(f"{sandbox.base}/sandbox/consent-notifications.json").json())


def _subscription(sandbox: RunningSandbox, consent_url: str) -> dict[str, Any] | None:
    """Return the sandbox's record of its Subscription to consent_url, if it has one."""
    found = [s for s in _status(sandbox)["subscriptions"] if s["consent_url"] == consent_url]
    return found[0] if found else None


def _match(sandbox: RunningSandbox, north: Tenant, exchange_request: ExchangeRequest) -> Any:
    """Ask the sandbox for $member-match as North would, sending the hub's Consent."""
    consent = copy.deepcopy(exchange_request.consent.fhir_resource)
    consent["patient"] = dict(MEMBER_PATIENT_REF)
    consent["performer"] = [dict(MEMBER_PATIENT_REF)]
    client = BackendClient(sandbox, organization_npi=north.payer.npi).register().http()
    response = post_match(client, match_request(sandbox.member(PATRICIA), consent=consent))
    return client, response


def _notify(sandbox: RunningSandbox, secret: str, body: Any) -> httpx.Response:
    return httpx.post(
        f"{sandbox.base}/sandbox/consent-notifications",
        content=json.dumps(body),
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/fhir+json"},
    )


@pytest.mark.django_db(transaction=True)
def test_a_withdrawn_consent_is_notified_and_disclosure_stops(
    former_payer: RunningSandbox,
    hub: str,
    north: Tenant,
    south: Tenant,
    exchange_request: ExchangeRequest,
) -> None:
    south.payer.client_jwks_url = f"{former_payer.base}/sandbox/client-jwks.json"
    south.payer.save()
    consent = exchange_request.consent
    consent_url = f"{hub}/p/north/fhir/Consent/{consent.pk}"

    fhir, matched = _match(former_payer, north, exchange_request)
    assert matched.status_code == 200, matched.text
    assert everything(fhir, PATRICIA)

    # In the background the sandbox got a token at the hub, read the Consent and subscribed.
    wait_for(lambda: consent.subscriptions.exists())
    subscription = consent.subscriptions.get()
    assert subscription.subscriber == south.payer
    assert subscription.criteria == f"Consent?_id={consent.pk}"
    assert subscription.endpoint == f"{former_payer.base}/sandbox/consent-notifications"
    assert subscription.payload == "application/fhir+json"
    name, _, value = subscription.headers.partition(":")
    assert name == "Authorization" and value.strip().startswith("Bearer ")
    secret = value.strip().removeprefix("Bearer ")
    wait_for(lambda: (_subscription(former_payer, consent_url) or {}).get("status") == "active")
    recorded = _subscription(former_payer, consent_url)
    assert recorded is not None
    assert recorded["subscription_url"] == f"{hub}/p/north/fhir/Subscription/{subscription.pk}"
    assert "secret" not in recorded and secret not in json.dumps(_status(former_payer))

    # A notification without our secret is refused and changes nothing.
    withdrawn = consent.fhir_resource | {"status": "inactive"}
    refused = _notify(former_payer, "not-the-secret", withdrawn)
    assert refused.status_code == 401
    assert refused.json()["resourceType"] == "OperationOutcome"
    # Nor does one about another Consent, even with the secret.
    other = _notify(former_payer, secret, withdrawn | {"id": "999999"})
    assert other.status_code == 422
    assert f"Consent/{consent.pk}" in other.json()["issue"][0]["diagnostics"]
    assert not [
        n for n in _status(former_payer)["notifications"] if n["consent_url"] == consent_url
    ]
    # A notification that the Consent is (still) active is recorded and changes nothing.
    still_active = _notify(former_payer, secret, consent.fhir_resource)
    assert still_active.status_code == 200, still_active.text
    assert everything(fhir, PATRICIA)

    # The member withdraws at the hub; a real worker delivers the notification.
    with running_worker(HUB_PUBLIC_URL=hub):
        exchange_request_withdraw(exchange_request=exchange_request, actor=north.member)
        wait_for(
            lambda: (
                ConsentNotification.objects.for_payer(north.payer)
                .filter(delivered_at__isnull=False)
                .exists()
            ),
            timeout=60,
        )

    notifications = [
        n for n in _status(former_payer)["notifications"] if n["consent_url"] == consent_url
    ]
    assert [(n["consent_id"], n["status"]) for n in notifications] == [
        (str(consent.pk), "active"),
        (str(consent.pk), "inactive"),
    ]
    assert notifications[0]["revoked_consents"] == []
    assert len(notifications[1]["revoked_consents"]) == 1
    assert (_subscription(former_payer, consent_url) or {})["consent_status"] == "inactive"

    # From now on every data request under the consent is refused, with the reason.
    for path in (
        f"/Patient/{PATRICIA}/$everything",
        f"/Patient/{PATRICIA}",
        f"/Condition?patient={PATRICIA}",
    ):
        response = fhir.get(path)
        assert response.status_code == 403, (path, response.text)
        diagnostics = response.json()["issue"][0]["diagnostics"]
        assert "consent" in diagnostics and "inactive" in diagnostics, diagnostics
    # And the same Consent sent again (as it was, still "active") no longer matches.
    _, again = _match(former_payer, north, exchange_request)
    assert again.status_code == 422
    assert "the hub reported the consent inactive" in again.json()["issue"][0]["diagnostics"]


@pytest.mark.django_db(transaction=True)
def test_a_refused_subscription_is_visible_and_does_not_block_a_bulk_match(
    former_payer: RunningSandbox, hub: str, north: Tenant, exchange_request: ExchangeRequest
) -> None:
    # South never registered its client JWKS at the hub, so the hub refuses its token request.
    client = BackendClient(former_payer, organization_npi=north.payer.npi).register()
    fhir = client.http(BULK_SCOPES)
    bundle = member_bundle(
        former_payer.member(PATRICIA), consent=exchange_request.consent.fhir_resource
    )
    groups = matched_group(fhir, [bundle])
    assert set(groups) == {"match"}
    consent_url = f"{hub}/p/north/fhir/Consent/{exchange_request.consent.pk}"

    def settled() -> bool:
        return (_subscription(former_payer, consent_url) or {}).get("status") not in (
            None,
            "requested",
        )

    wait_for(settled)
    subscription = _subscription(former_payer, consent_url)
    assert subscription is not None
    assert subscription["status"] == "error"
    assert "HTTP 401" in subscription["error"] and "'south'" in subscription["error"]
    assert not rows_of_every_payer(ConsentSubscription).exists()
    # The sandbox stays up and keeps disclosing under the (still active) consent.
    assert everything(fhir, PATRICIA)


def test_the_client_key_is_rs384_public_and_kept_in_the_data_dir(tmp_path: Path) -> None:
    def published_keys() -> list[dict[str, Any]]:
        with running_sandbox(FORMER, "--members", "3", "--data-dir", str(tmp_path)) as sandbox:
            jwks = httpx.get(f"{sandbox.base}/sandbox/client-jwks.json").json()
            id_token_keys = httpx.get(f"{sandbox.base}/oidc/jwks").json()["keys"]
        assert {k["kid"] for k in jwks["keys"]}.isdisjoint(k["kid"] for k in id_token_keys)
        return list(jwks["keys"])

    first = published_keys()
    assert [(k["kty"], k["alg"]) for k in first] == [("RSA", "RS384")]
    assert not {"d", "p", "q"} & set(first[0])
    # Registered once at the hub, the key must survive a restart.
    assert published_keys() == first
    assert (tmp_path / "client-key.pem").stat().st_mode & 0o777 == 0o600

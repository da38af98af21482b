"""Former payers read the Consents naming them and subscribe to their changes (seed 000 steps
5 and 10-12), as SMART Backend Services clients of the hub."""

import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.test import Client
from django.utils import timezone

from exchange.consents.endpoint.auth import token_endpoint_url
from exchange.consents.notifications import (
    NotificationNotDelivered,
    consent_notification_deliver,
    consent_subscription_give_up,
)
from exchange.models import (
    ConsentNotification,
    ConsentStatus,
    ConsentSubscription,
    UsedClientAssertion,
)
from exchange.services import exchange_request_withdraw
from hub.models import AuditEvent
from tests.conftest import Tenant
from tests.factories import ExchangeRequestFactory, PayerFactory
from tests.support.every_payer import rows_of_every_payer
from tests.support.http_stub import HttpStub, http_stub

KID = "south-system-1"


@pytest.fixture(scope="module")
def south_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def south_jwks(south: Tenant, south_key: rsa.RSAPrivateKey) -> Iterator[HttpStub]:
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(south_key.public_key()))
    with http_stub({"/jwks.json": {"keys": [{**public, "kid": KID, "alg": "RS384"}]}}) as stub:
        south.payer.client_jwks_url = f"{stub.base}/jwks.json"
        south.payer.save()
        yield stub


def _assertion(
    key: Any, *, client_id: str = "south", alg: str = "RS384", kid: str = KID, **claims: Any
) -> str:
    now = int(time.time())
    payload = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_endpoint_url(),
        "exp": now + 240,
        "jti": str(uuid.uuid4()),
        **claims,
    }
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


def _token_response(
    assertion: str, scope: str = "system/Consent.rs system/Subscription.cruds"
) -> Any:
    return Client().post(
        "/fhir/auth/token",
        {
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
            "scope": scope,
        },
    )


def _bearer(key: Any) -> dict[str, str]:
    response = _token_response(_assertion(key))
    assert response.status_code == 200, response.content
    return {"HTTP_AUTHORIZATION": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
def exchange_request(north: Tenant, south: Tenant) -> Any:
    return ExchangeRequestFactory(consent__member=north.member, consent__former_payer=south.payer)


def test_the_named_former_payer_reads_the_consent(
    exchange_request: Any, south_jwks: HttpStub, south_key: Any
) -> None:
    consent = exchange_request.consent
    response = Client().get(f"/p/north/fhir/Consent/{consent.pk}", **_bearer(south_key))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/fhir+json"
    assert response.json()["status"] == "active"
    assert (
        response.json()["provision"]["actor"][0]["reference"]["identifier"]["value"] == "1245319599"
    )


def test_another_payer_cannot_see_the_consent(exchange_request: Any, south_key: Any) -> None:
    other = PayerFactory(slug="west", name="West Health")
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(south_key.public_key()))
    with http_stub({"/jwks.json": {"keys": [{**public, "kid": KID, "alg": "RS384"}]}}) as stub:
        other.client_jwks_url = f"{stub.base}/jwks.json"
        other.save()
        token = _token_response(_assertion(south_key, client_id="west")).json()["access_token"]
        response = Client().get(
            f"/p/north/fhir/Consent/{exchange_request.consent_id}",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"


def test_no_token_no_consent(exchange_request: Any) -> None:
    response = Client().get(f"/p/north/fhir/Consent/{exchange_request.consent_id}")
    assert response.status_code == 401
    assert "bearer token" in response.json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (lambda key: _assertion(key, aud="https://elsewhere.example/token"), "Audience"),
        (lambda key: _assertion(key, exp=int(time.time()) - 60), "expired"),
        (lambda key: _assertion(key, exp=int(time.time()) + 3600), "five minutes"),
        (
            lambda key: _assertion(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            "Signature",
        ),
        (lambda key: _assertion(key, kid="unknown"), "kid"),
        (lambda key: _assertion(key, client_id="nobody"), "no client"),
        (
            lambda key: _assertion(ec.generate_private_key(ec.SECP256R1()), alg="ES256"),
            "RS384 or ES384",
        ),
        (lambda key: "not-a-jwt", "not a JWT"),
    ],
)
def test_bad_assertions_are_refused_with_the_reason(
    south_jwks: HttpStub, south_key: Any, tamper: Any, expected: str
) -> None:
    response = _token_response(tamper(south_key))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert expected in response.json()["error_description"]


def test_a_replayed_assertion_is_refused(south_jwks: HttpStub, south_key: Any) -> None:
    assertion = _assertion(south_key)
    assert _token_response(assertion).status_code == 200
    replay = _token_response(assertion)
    assert replay.status_code == 401
    assert "already used" in replay.json()["error_description"]


def test_a_jwks_whose_keys_are_not_objects_is_refused_not_a_crash(
    south: Tenant, south_key: Any
) -> None:
    with http_stub({"/jwks.json": {"keys": ["not-a-key", 42]}}) as stub:
        south.payer.client_jwks_url = f"{stub.base}/jwks.json"
        south.payer.save()
        response = _token_response(_assertion(south_key))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert "not JSON objects" in response.json()["error_description"]


def test_scopes_beyond_the_consent_endpoint_are_refused(
    south_jwks: HttpStub, south_key: Any
) -> None:
    response = _token_response(_assertion(south_key), scope="system/*.rs")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def _subscription(consent_id: int, endpoint: str, **overrides: Any) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "Monitor consent status changes",
        "criteria": f"Consent?_id={consent_id}",
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "header": ["Authorization: Bearer payer1-secret"],
        },
        **overrides,
    }


def _subscribe(key: Any, body: Any, slug: str = "north") -> Any:
    return Client().post(
        f"/p/{slug}/fhir/Subscription",
        data=json.dumps(body),
        content_type="application/fhir+json",
        **_bearer(key),
    )


def test_withdrawal_is_notified_to_the_subscriber_with_retries(
    exchange_request: Any,
    north: Tenant,
    south_jwks: HttpStub,
    south_key: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with http_stub() as receiver:
        created = _subscribe(
            south_key,
            _subscription(exchange_request.consent_id, f"{receiver.base}/consent-updates"),
        )
        assert created.status_code == 201, created.content
        assert created.json()["status"] == "active"
        assert created["Location"].endswith(f"/p/north/fhir/Subscription/{created.json()['id']}")

        receiver.post_statuses = [503]
        with django_capture_on_commit_callbacks() as callbacks:
            exchange_request_withdraw(exchange_request=exchange_request, actor=north.member)
        # The notification is owed in the withdrawal's own transaction (an outbox row); its
        # sending is the one after-commit task, not run here: this test delivers by hand to
        # see each attempt.
        assert len(callbacks) == 1
        exchange_request.consent.refresh_from_db()
        assert exchange_request.consent.status == ConsentStatus.INACTIVE
        notification = ConsentNotification.objects.for_payer(north.payer).get()
        assert notification.consent_status == "inactive"

        with pytest.raises(NotificationNotDelivered, match="503"):
            consent_notification_deliver(notification_id=notification.pk, payer_id=north.payer.pk)
        consent_notification_deliver(notification_id=notification.pk, payer_id=north.payer.pk)
        notification.refresh_from_db()
        assert notification.delivered_at is not None and notification.attempts == 2

        # Delivered once more would be a duplicate: a delivered notification is not resent.
        consent_notification_deliver(notification_id=notification.pk, payer_id=north.payer.pk)
        posts = [r for r in receiver.received if r.method == "POST"]
        assert len(posts) == 2
        assert posts[-1].path == "/consent-updates"
        assert posts[-1].headers["Authorization"] == "Bearer payer1-secret"
        body = json.loads(posts[-1].body)
        assert body["resourceType"] == "Consent"
        assert body["id"] == str(exchange_request.consent_id)
        assert body["status"] == "inactive"


def test_a_subscription_is_read_and_deleted_only_with_a_subscription_scope(
    exchange_request: Any, north: Tenant, south_jwks: HttpStub, south_key: Any
) -> None:
    created = _subscribe(
        south_key, _subscription(exchange_request.consent_id, "http://127.0.0.1:9/hook")
    )
    assert created.status_code == 201, created.content
    url = f"/p/north/fhir/Subscription/{created.json()['id']}"
    consent_only = _token_response(_assertion(south_key), scope="system/Consent.rs")
    reader = {"HTTP_AUTHORIZATION": f"Bearer {consent_only.json()['access_token']}"}

    for method in (Client().get, Client().delete):
        refused = method(url, **reader)
        assert refused.status_code == 403
        assert "system/Subscription.cruds" in refused.json()["issue"][0]["diagnostics"]
    subscription = ConsentSubscription.objects.for_payer(north.payer).get()
    assert subscription.status == "active"

    assert Client().get(url, **_bearer(south_key)).json()["status"] == "active"
    assert Client().delete(url, **_bearer(south_key)).status_code == 204
    subscription.refresh_from_db()
    assert subscription.status == "off"
    # Ending a subscription is a change like creating one: audited, naming the client.
    deleted = AuditEvent.objects.for_payer(north.payer).get(action="consent_subscription.delete")
    assert deleted.actor_label == "client:south"
    assert deleted.object_id == str(subscription.pk)


def test_a_subscription_the_subscriber_ended_is_not_notified_nor_revived(
    exchange_request: Any,
    north: Tenant,
    south_jwks: HttpStub,
    south_key: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with http_stub() as receiver:
        created = _subscribe(
            south_key, _subscription(exchange_request.consent_id, f"{receiver.base}/hook")
        )
        with django_capture_on_commit_callbacks() as callbacks:
            exchange_request_withdraw(exchange_request=exchange_request, actor=north.member)
        assert len(callbacks) == 1  # the sending, not run: it is done by hand below
        notification = ConsentNotification.objects.for_payer(north.payer).get()
        # The subscriber ends its subscription before the notification goes out.
        ended = Client().delete(
            f"/p/north/fhir/Subscription/{created.json()['id']}", **_bearer(south_key)
        )
        assert ended.status_code == 204

        consent_notification_deliver(notification_id=notification.pk, payer_id=north.payer.pk)
        consent_subscription_give_up(notification_id=notification.pk, payer_id=north.payer.pk)

    assert [r for r in receiver.received if r.method == "POST"] == []
    subscription = ConsentSubscription.objects.for_payer(north.payer).get()
    assert (subscription.status, subscription.error) == ("off", "")


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"resourceType": "Patient"}, 400, "must be a Subscription"),
        ({"resourceType": "Subscription", "status": "requested"}, 400, "not valid FHIR"),
        (lambda c, e: _subscription(c, e, criteria="Patient?_id=1"), 422, "criteria"),
        (lambda c, e: _subscription(c, e, criteria="Consent?_id=999999"), 404, "not known"),
        (lambda c, e: _subscription(c, "http://169.254.169.254/latest"), 422, "channel.endpoint"),
        (lambda c, e: _subscription(c, f"{e}/{'a' * 600}"), 422, "at most 500 characters"),
    ],
)
def test_bad_subscriptions_are_refused_with_an_operation_outcome(
    exchange_request: Any, south_jwks: HttpStub, south_key: Any, body: Any, status: int, says: str
) -> None:
    if callable(body):
        body = body(exchange_request.consent_id, "http://127.0.0.1:9/hook")
    response = _subscribe(south_key, body)
    assert response.status_code == status, response.content
    assert response.json()["resourceType"] == "OperationOutcome"
    assert says in response.json()["issue"][0]["diagnostics"]
    assert not rows_of_every_payer(ConsentSubscription).exists()


def test_malformed_json_is_a_400(
    exchange_request: Any, south_jwks: HttpStub, south_key: Any
) -> None:
    response = Client().post(
        "/p/north/fhir/Subscription",
        data="{not json",
        content_type="application/fhir+json",
        **_bearer(south_key),
    )
    assert response.status_code == 400
    assert "not JSON" in response.json()["issue"][0]["diagnostics"]


def test_metadata_lists_what_the_endpoint_does(north: Tenant) -> None:
    statement = Client().get("/p/north/fhir/metadata").json()
    types = {r["type"] for r in statement["rest"][0]["resource"]}
    assert types == {"Consent", "Subscription"}


def test_an_unknown_payer_is_a_fhir_404(south_jwks: HttpStub, south_key: Any) -> None:
    for response in (
        Client().get("/p/nowhere/fhir/metadata"),
        Client().get("/p/nowhere/fhir/Consent/1", **_bearer(south_key)),
    ):
        assert response.status_code == 404
        assert response.json()["resourceType"] == "OperationOutcome"


def test_spent_assertions_are_forgotten_once_they_have_expired(
    south_jwks: HttpStub, south_key: Any
) -> None:
    UsedClientAssertion.objects.create(
        issuer="south", jti="old", expires_at=timezone.now() - timedelta(minutes=1)
    )
    assert _token_response(_assertion(south_key)).status_code == 200
    assert not UsedClientAssertion.objects.filter(jti="old").exists()

"""The *Webhooks* page: add an endpoint (its secret shown once), send a test event and see
its try, redeliver, rotate, deactivate — North's administrator only; South's administrator
gets 404 for North's endpoints and messages, and a member gets nothing."""

import re
from collections.abc import Callable, Iterator

import pytest
from django.test import Client

from exchange.models import WebhookAttempt, WebhookEndpoint, WebhookMessage, WebhookSecret
from exchange.webhooks.events import DELIVERY_READY, REQUEST_STATUS_CHANGED, WEBHOOK_TEST
from hub.models import AuditEvent, User
from tests.conftest import Tenant
from tests.factories import WebhookEndpointFactory, WebhookMessageFactory
from tests.plan_admin.conftest import admin_url
from tests.support.webhook_receiver import WebhookReceiver, webhook_receiver

SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]+")


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as running:
        yield running


def _add_endpoint(client: Client, tenant: Tenant, url: str) -> tuple[WebhookEndpoint, str]:
    response = client.post(
        admin_url("webhook-create"),
        {"url": url, "description": "Enrollment system",
         "event_types": [REQUEST_STATUS_CHANGED, DELIVERY_READY]},
    )  # fmt: skip
    assert response.status_code == 201, response.content.decode()
    assert "no-store" in response["Cache-Control"]
    (secret,) = set(SECRET.findall(response.content.decode()))
    return WebhookEndpoint.objects.for_payer(tenant.payer).get(url=url), secret


def test_an_endpoint_s_secret_is_shown_once_and_its_test_event_is_listed_with_its_try(
    north: Tenant, signed_in: Callable[[User], Client], receiver: WebhookReceiver
) -> None:
    client = signed_in(north.admin)
    endpoint, secret = _add_endpoint(client, north, receiver.url)
    assert endpoint.event_types == [DELIVERY_READY, REQUEST_STATUS_CHANGED]
    assert WebhookSecret.objects.for_payer(north.payer).get().secret == secret
    page = client.get(admin_url("webhooks")).content.decode()
    assert receiver.url in page
    assert secret not in page and not SECRET.search(page)  # never rendered back
    audit = AuditEvent.objects.for_payer(north.payer).get(action="webhook_endpoint.create")
    assert secret not in str(audit.changes)

    receiver.secrets.append(secret)
    response = client.post(admin_url("webhook-test", endpoint_id=endpoint.pk))
    assert response.status_code == 302
    (delivery,) = receiver.received
    assert delivery.status == 204 and delivery.error == ""  # verified with the recipe
    assert delivery.payload is not None and delivery.payload["type"] == WEBHOOK_TEST

    message = WebhookMessage.objects.for_payer(north.payer).get()
    page = client.get(admin_url("webhooks")).content.decode()
    assert message.message_id in page
    assert "HTTP 204" in page and "Delivered" in page

    response = client.post(admin_url("webhook-redeliver", message_id=message.pk))
    assert response.status_code == 302
    assert len(receiver.received) == 2
    assert {d.headers["webhook-id"] for d in receiver.received} == {message.message_id}
    numbers = WebhookAttempt.objects.for_payer(north.payer).values_list("number", flat=True)
    assert sorted(numbers) == [1, 2]


def test_a_failed_test_event_shows_the_endpoint_s_answer(
    north: Tenant, signed_in: Callable[[User], Client], receiver: WebhookReceiver
) -> None:
    client = signed_in(north.admin)
    endpoint, secret = _add_endpoint(client, north, receiver.url)
    receiver.secrets.append(secret)
    receiver.fail_with = [500]
    client.post(admin_url("webhook-test", endpoint_id=endpoint.pk))
    page = client.get(admin_url("webhooks")).content.decode()
    assert "HTTP 500" in page and "next try" in page and "Sending" in page


def test_rotating_shows_the_new_secret_once_and_both_sign_meanwhile(
    north: Tenant, signed_in: Callable[[User], Client], receiver: WebhookReceiver
) -> None:
    client = signed_in(north.admin)
    endpoint, old = _add_endpoint(client, north, receiver.url)
    response = client.post(
        admin_url("webhook-rotate", endpoint_id=endpoint.pk), {"overlap_hours": "24"}
    )
    assert response.status_code == 200
    (new,) = set(SECRET.findall(response.content.decode()))
    assert new != old
    receiver.secrets.append(old)
    client.post(admin_url("webhook-test", endpoint_id=endpoint.pk))
    (delivery,) = receiver.received
    assert len(delivery.headers["webhook-signature"].split()) == 2
    assert delivery.status == 204


def test_a_deactivated_endpoint_gets_no_test_event(
    north: Tenant, signed_in: Callable[[User], Client], receiver: WebhookReceiver
) -> None:
    client = signed_in(north.admin)
    endpoint, _ = _add_endpoint(client, north, receiver.url)
    client.post(admin_url("webhook-deactivate", endpoint_id=endpoint.pk))
    endpoint.refresh_from_db()
    assert endpoint.active is False
    client.post(admin_url("webhook-test", endpoint_id=endpoint.pk))
    assert receiver.received == []
    assert "Deactivated" in client.get(admin_url("webhooks")).content.decode()


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (
            {"url": "http://hooks.example.com/in", "event_types": [REQUEST_STATUS_CHANGED]},
            "https://",
        ),
        ({"url": "https://10.1.2.3/in", "event_types": [REQUEST_STATUS_CHANGED]}, "private"),
        ({"url": "https://hooks.example.com/in"}, "Choose at least one event"),
        ({"url": "https://hooks.example.com/in", "event_types": ["member.name"]}, "valid choice"),
    ],
)
def test_a_bad_endpoint_is_refused_with_a_clear_error(
    north: Tenant, signed_in: Callable[[User], Client], data: dict[str, object], problem: str
) -> None:
    response = signed_in(north.admin).post(admin_url("webhook-create"), data)
    assert response.status_code == 400
    assert problem in response.content.decode()
    assert not WebhookEndpoint.objects.for_payer(north.payer).exists()


def test_another_payer_s_admin_gets_404_and_a_member_gets_no_access(
    north: Tenant, south: Tenant, signed_in: Callable[[User], Client]
) -> None:
    endpoint = WebhookEndpointFactory(payer=north.payer)
    message = WebhookMessageFactory(endpoint=endpoint)
    sam = signed_in(south.admin)
    for slug in ("north", "south"):
        assert sam.get(admin_url("webhooks", slug)).status_code == (404 if slug == "north" else 200)
        for name, kwargs in [
            ("webhook-test", {"endpoint_id": endpoint.pk}),
            ("webhook-rotate", {"endpoint_id": endpoint.pk}),
            ("webhook-deactivate", {"endpoint_id": endpoint.pk}),
            ("webhook-redeliver", {"message_id": message.pk}),
        ]:
            assert sam.post(admin_url(name, slug, **kwargs)).status_code == 404
    ned = signed_in(north.member)
    assert ned.get(admin_url("webhooks")).status_code == 404
    assert ned.post(admin_url("webhook-test", endpoint_id=endpoint.pk)).status_code == 404
    endpoint.refresh_from_db()
    assert endpoint.active
    assert not WebhookAttempt.objects.for_payer(north.payer).exists()
    assert WebhookSecret.objects.for_payer(north.payer).count() == 0

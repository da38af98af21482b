"""A request's moves owe its payer's systems ``request.status_changed``, a delivery owes
``delivery.ready`` with the files' checksums; the other payer hears nothing, and no
payload carries PHI."""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from exchange.models import ExchangeRequest, ExchangeStatus, WebhookMessage
from exchange.state_machine import Move, exchange_request_transition, exchange_requests_transition
from exchange.webhooks.events import DELIVERY_READY, REQUEST_STATUS_CHANGED
from tests.conftest import Tenant
from tests.factories import ConsentFactory, ExchangeRequestFactory, WebhookEndpointFactory

S = ExchangeStatus


def _request(tenant: Tenant, former: Tenant, status: str = S.CONSENTED) -> ExchangeRequest:
    tenant.member.first_name, tenant.member.last_name = "Nedda", "Northwind"
    tenant.member.save()
    return ExchangeRequestFactory(
        consent=ConsentFactory(member=tenant.member, former_payer=former.payer),
        status=status, card_member_id="NORTHWIND-CARD-0042",
    )  # fmt: skip


def _messages(tenant: Tenant, event_type: str) -> list[WebhookMessage]:
    return list(
        WebhookMessage.objects.for_payer(tenant.payer).filter(event_type=event_type).order_by("id")
    )


def test_a_move_is_sent_to_its_payer_s_endpoints_only(
    north: Tenant, south: Tenant, django_capture_on_commit_callbacks: object
) -> None:
    norths = WebhookEndpointFactory(payer=north.payer, event_types=[REQUEST_STATUS_CHANGED])
    WebhookEndpointFactory(payer=south.payer, event_types=[REQUEST_STATUS_CHANGED])
    WebhookEndpointFactory(payer=north.payer, event_types=[DELIVERY_READY])
    WebhookEndpointFactory(payer=north.payer, event_types=[REQUEST_STATUS_CHANGED], active=False)
    request = _request(north, south)

    with django_capture_on_commit_callbacks() as sent:  # type: ignore[operator]
        exchange_request_transition(
            payer=north.payer, exchange_request_id=request.pk, from_status=S.CONSENTED,
            to_status=S.FAILED, message="gave up", actor=None, reason_code="gave_up_retrying",
        )  # fmt: skip

    (message,) = _messages(north, REQUEST_STATUS_CHANGED)
    assert message.endpoint == norths
    assert message.message_id.startswith("msg_")
    data = message.payload["data"]
    assert data == {
        "request_id": request.pk, "from": "consented", "to": "failed",
        "reason_code": "gave_up_retrying", "at": data["at"],
    }  # fmt: skip
    assert message.payload["type"] == REQUEST_STATUS_CHANGED
    assert WebhookMessage.objects.for_payer(south.payer).count() == 0
    assert len(sent) == 1  # handed to a worker once the move commits


def test_a_move_that_did_not_happen_owes_nothing(north: Tenant, south: Tenant) -> None:
    WebhookEndpointFactory(payer=north.payer, event_types=[REQUEST_STATUS_CHANGED])
    request = _request(north, south, status=S.MATCHING)
    moved = exchange_request_transition(
        payer=north.payer, exchange_request_id=request.pk, from_status=S.CONSENTED,
        to_status=S.MATCHING, message="again", actor=None,
    )  # fmt: skip
    assert moved is False
    assert _messages(north, REQUEST_STATUS_CHANGED) == []


@pytest.mark.parametrize("size", [2, 12])
def test_a_batch_move_owes_one_message_per_request_in_a_fixed_number_of_queries(
    north: Tenant, south: Tenant, size: int
) -> None:
    WebhookEndpointFactory(payer=north.payer, event_types=[REQUEST_STATUS_CHANGED])
    requests = [_request(north, south, status=S.RETRIEVING) for _ in range(size)]
    with CaptureQueriesContext(connection) as queries:
        moved = exchange_requests_transition(
            payer=north.payer, moves=[Move(r.pk, "screening") for r in requests],
            from_status=S.RETRIEVING, to_status=S.SCREENING, actor=None,
        )  # fmt: skip
    assert moved == {r.pk for r in requests}
    messages = _messages(north, REQUEST_STATUS_CHANGED)
    assert sorted(m.payload["data"]["request_id"] for m in messages) == sorted(moved)
    # Whatever the batch's size: the lock, the update, timeline, audit, endpoints, messages.
    assert len(queries) <= 10


def test_a_delivery_owes_delivery_ready_with_the_files_checksums_and_no_phi(
    north: Tenant, south: Tenant
) -> None:
    WebhookEndpointFactory(payer=north.payer, event_types=[REQUEST_STATUS_CHANGED, DELIVERY_READY])
    request = _request(north, south, status=S.DELIVERING)
    files = [
        {"path": f"south/{request.pk}/bundle.json", "size": 1234, "sha256": "a" * 64},
        {"path": f"south/{request.pk}/manifest.json", "size": 321, "sha256": "b" * 64},
    ]
    exchange_request_transition(
        payer=north.payer, exchange_request_id=request.pk, from_status=S.DELIVERING,
        to_status=S.DELIVERED, message="Delivered", actor=None,
        details={"disclosed_by": "south", "disclosed_to": "north", "mode": "push_sftp",
                 "remote_directory": f"south/{request.pk}", "files": files},
    )  # fmt: skip

    (ready,) = _messages(north, DELIVERY_READY)
    assert ready.payload["data"] == {
        "request_id": request.pk, "remote_directory": f"south/{request.pk}", "files": files,
        "delivered_at": ready.payload["data"]["delivered_at"],
    }  # fmt: skip
    (changed,) = _messages(north, REQUEST_STATUS_CHANGED)
    assert changed.payload["data"]["to"] == "delivered"
    for message in (ready, changed):
        text = json.dumps(message.payload)
        for phi in ("Nedda", "Northwind", "NORTHWIND-CARD-0042", north.member.username):
            assert phi not in text

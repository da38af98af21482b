"""Owe each subscribed endpoint a message when something happens (the event types: see
exchange/webhooks/__init__.py).

Messages are written in the caller's transaction — the one that records the change — and
handed to a worker only once it commits: a rolled-back change owes nothing, and a committed
one is never lost, even if the broker is down then (the sweep sends what no task took). A
batch of moves (a cohort's chunk) costs one query for the payer's endpoints and one insert,
whatever its size.
"""

import secrets
from collections.abc import Sequence
from datetime import datetime
from functools import partial
from typing import Any

from django.db import transaction

from exchange.models import ExchangeStatus, WebhookEndpoint, WebhookMessage
from exchange.webhooks.tasks import webhook_message_enqueue

REQUEST_STATUS_CHANGED = "request.status_changed"
DELIVERY_READY = "delivery.ready"
REQUEST_DUE_SOON = "request.due_soon"
REQUEST_OVERDUE = "request.overdue"
WEBHOOK_TEST = "webhook.test"

# What an endpoint may subscribe to, as the portal describes it. webhook.test is sent only
# on demand, to the one endpoint being tested.
EVENT_TYPES = {
    REQUEST_STATUS_CHANGED: "A request of one of your members changed status",
    DELIVERY_READY: "A request's files were delivered and are ready to collect",
    REQUEST_DUE_SOON: "A request not yet delivered nears its due date (the rule's week)",
    REQUEST_OVERDUE: "A request passed its due date without being delivered",
}


def webhook_message_id() -> str:
    """Return a new message id, ``msg_`` and 27 random URL-safe characters."""
    return "msg_" + secrets.token_urlsafe(20)


def webhook_envelope(*, event_type: str, at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    """Return a message's payload in the Standard Webhooks envelope (§Payload structure)."""
    return {"type": event_type, "timestamp": at.isoformat(), "data": data}


def webhook_messages_queue(
    *,
    payer_id: int,
    event_type: str,
    at: datetime,
    data: Sequence[dict[str, Any]],
    endpoints: Sequence[WebhookEndpoint] | None = None,
    enqueue: bool = True,
) -> list[WebhookMessage]:
    """Write one message per event in ``data`` for every active endpoint subscribed to
    ``event_type`` (or for ``endpoints``, when given); send them once the caller commits,
    unless ``enqueue`` is False: the caller tries them itself (the sweep covers it if not)."""
    if endpoints is None:
        endpoints = webhook_endpoints_subscribed(payer_id=payer_id, event_types={event_type})[
            event_type
        ]
    messages = WebhookMessage.objects.bulk_create(
        [
            WebhookMessage(
                payer_id=payer_id,
                endpoint=endpoint,
                message_id=webhook_message_id(),
                event_type=event_type,
                payload=webhook_envelope(event_type=event_type, at=at, data=event),
                next_attempt_at=at,
            )
            for event in data
            for endpoint in endpoints
        ]
    )
    for message in messages if enqueue else ():
        transaction.on_commit(
            partial(webhook_message_enqueue, message_id=message.pk, payer_id=payer_id),
            # A broker that is down must not undo the committed change: the sweep sends.
            robust=True,
        )
    return messages


def webhook_endpoints_subscribed(
    *, payer_id: int, event_types: set[str]
) -> dict[str, list[WebhookEndpoint]]:
    """Return the payer's active endpoints subscribed to each of ``event_types`` (one query).

    Filtered here rather than with a JSON ``contains`` lookup, which the demo's SQLite lacks;
    a payer has a handful of endpoints.
    """
    endpoints = list(WebhookEndpoint.objects.for_payer(payer_id).filter(active=True))
    return {
        event_type: [endpoint for endpoint in endpoints if event_type in endpoint.event_types]
        for event_type in event_types
    }


def request_moves_notify(
    *,
    payer_id: int,
    moves: Sequence[tuple[int, dict[str, Any]]],
    from_status: str,
    to_status: str,
    reason_code: str,
    at: datetime,
) -> None:
    """Owe ``request.status_changed`` for each moved request (id, audit details), and
    ``delivery.ready`` for each that was delivered, with its files."""
    wanted = {REQUEST_STATUS_CHANGED, DELIVERY_READY}
    subscribed = webhook_endpoints_subscribed(payer_id=payer_id, event_types=wanted)
    if subscribed[REQUEST_STATUS_CHANGED]:
        webhook_messages_queue(
            payer_id=payer_id,
            event_type=REQUEST_STATUS_CHANGED,
            at=at,
            endpoints=subscribed[REQUEST_STATUS_CHANGED],
            data=[
                {
                    "request_id": request_id,
                    "from": from_status,
                    "to": to_status,
                    "reason_code": reason_code,
                    "at": at.isoformat(),
                }
                for request_id, _ in moves
            ],
        )
    if to_status == ExchangeStatus.DELIVERED and subscribed[DELIVERY_READY]:
        webhook_messages_queue(
            payer_id=payer_id,
            event_type=DELIVERY_READY,
            at=at,
            endpoints=subscribed[DELIVERY_READY],
            data=[delivery_ready_data(request_id, details, at) for request_id, details in moves],
        )


def delivery_ready_data(request_id: int, details: dict[str, Any], at: datetime) -> dict[str, Any]:
    """Return ``delivery.ready``'s data from the delivery's disclosure details (the ones its
    audit event records): where the files are, each one's path, size and sha256."""
    return {
        "request_id": request_id,
        "remote_directory": details.get("remote_directory", ""),
        "files": [
            {"path": file["path"], "size": file["size"], "sha256": file["sha256"]}
            for file in details.get("files", [])
        ],
        "delivered_at": at.isoformat(),
    }

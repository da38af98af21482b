"""What plan administrators do with webhooks: endpoints, secrets, test events, redelivery.

Every change is audited in its transaction with the acting administrator (STYLE.md #7); a
secret's value is never audited, logged or rendered after the call that created it returns
it once.
"""

from collections.abc import Collection
from datetime import timedelta
from functools import partial

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from exchange.models import (
    WebhookEndpoint,
    WebhookMessage,
    WebhookMessageStatus,
    WebhookSecret,
)
from exchange.webhooks import sending
from exchange.webhooks.events import EVENT_TYPES, WEBHOOK_TEST, webhook_messages_queue
from exchange.webhooks.signing import webhook_secret_generate
from exchange.webhooks.tasks import webhook_message_enqueue
from hub.audit import audit_record
from hub.models import Payer, User

M = WebhookMessageStatus
DEFAULT_OVERLAP = timedelta(hours=24)
# The longest a rotated secret may keep signing beside its successor.
MAX_OVERLAP = timedelta(days=7)


class WebhookRefused(ValueError):
    """The action cannot be done as asked; the message says why, in plain words."""


def webhook_endpoint_create(
    *,
    payer: Payer,
    actor: User,
    url: str,
    event_types: Collection[str],
    description: str = "",
    client_address: str | None = None,
) -> tuple[WebhookEndpoint, str]:
    """Register an endpoint with its first secret; return both (the secret's only showing)."""
    unknown = set(event_types) - set(EVENT_TYPES)
    if unknown or not event_types:
        raise ValidationError("Choose at least one of the event types the hub sends.")
    endpoint = WebhookEndpoint(
        payer=payer,
        url=url,
        description=description,
        event_types=sorted(event_types),
    )
    endpoint.full_clean()
    secret = webhook_secret_generate()
    with transaction.atomic():
        endpoint.save()
        WebhookSecret.objects.create(payer=payer, endpoint=endpoint, secret=secret)
        audit_record(
            action="webhook_endpoint.create",
            obj=endpoint,
            payer=payer,
            actor=actor,
            changes={
                "url": {"before": None, "after": url},
                "event_types": {"before": None, "after": endpoint.event_types},
                "secret": "created",
            },
            client_address=client_address,
        )
    return endpoint, secret


def webhook_secret_rotate(
    *,
    endpoint: WebhookEndpoint,
    actor: User,
    overlap: timedelta = DEFAULT_OVERLAP,
    client_address: str | None = None,
) -> str:
    """Give the endpoint a new secret; the secrets signing now keep signing beside it for
    ``overlap`` (Standard Webhooks: rotate without dropping messages). Return the new one."""
    if not timedelta(0) <= overlap <= MAX_OVERLAP:
        raise WebhookRefused("Keep the old secret for between 0 and 168 hours.")
    now = timezone.now()
    secret = webhook_secret_generate()
    with transaction.atomic():
        # A secret already retiring keeps its own, earlier, end.
        WebhookSecret.objects.for_payer(endpoint.payer_id).filter(
            endpoint=endpoint, expires_at__isnull=True
        ).update(expires_at=now + overlap)
        WebhookSecret.objects.create(payer_id=endpoint.payer_id, endpoint=endpoint, secret=secret)
        audit_record(
            action="webhook_endpoint.rotate_secret",
            obj=endpoint,
            payer=endpoint.payer_id,
            actor=actor,
            changes={"secret": "rotated", "overlap_hours": overlap.total_seconds() / 3600},
            client_address=client_address,
        )
    return secret


def webhook_endpoint_deactivate(
    *, endpoint: WebhookEndpoint, actor: User, client_address: str | None = None
) -> None:
    """Stop sending to the endpoint; the messages it is still owed are given up."""
    with transaction.atomic():
        changed = (
            WebhookEndpoint.objects.for_payer(endpoint.payer_id)
            .filter(pk=endpoint.pk, active=True)
            .update(active=False, deactivated_at=timezone.now())
        )
        if not changed:
            return
        WebhookMessage.objects.for_payer(endpoint.payer_id).filter(
            endpoint=endpoint, status=M.PENDING
        ).update(status=M.FAILED, next_attempt_at=None)
        audit_record(
            action="webhook_endpoint.deactivate",
            obj=endpoint,
            payer=endpoint.payer_id,
            actor=actor,
            changes={"active": {"before": True, "after": False}},
            client_address=client_address,
        )


def webhook_test_send(
    *, endpoint: WebhookEndpoint, actor: User, client_address: str | None = None
) -> WebhookMessage:
    """Send a ``webhook.test`` message to the endpoint now, and return it with its try;
    a failed try is retried on the schedule like any message."""
    if not endpoint.active:
        raise WebhookRefused("This endpoint is deactivated; it is sent nothing.")
    now = timezone.now()
    with transaction.atomic():
        (message,) = webhook_messages_queue(
            payer_id=endpoint.payer_id,
            event_type=WEBHOOK_TEST,
            at=now,
            endpoints=[endpoint],
            data=[{"endpoint_id": endpoint.pk, "requested_at": now.isoformat()}],
            enqueue=False,
        )
        audit_record(
            action="webhook_message.test",
            obj=message,
            payer=endpoint.payer_id,
            actor=actor,
            changes={"message_id": message.message_id},
            client_address=client_address,
        )
    # Tried here, so the administrator sees the answer at once; retries go to the task.
    _try_now(message)
    return message


def webhook_message_redeliver(
    *, message: WebhookMessage, actor: User, client_address: str | None = None
) -> None:
    """Send the message again now, starting its retry schedule over (same ``webhook-id``,
    so a receiver that already has it can tell)."""
    if not message.endpoint.active:
        raise WebhookRefused("This message's endpoint is deactivated; it is sent nothing.")
    with transaction.atomic():
        WebhookMessage.objects.for_payer(message.payer_id).filter(pk=message.pk).update(
            status=M.PENDING, scheduled_attempts=0, next_attempt_at=timezone.now()
        )
        audit_record(
            action="webhook_message.redeliver",
            obj=message,
            payer=message.payer_id,
            actor=actor,
            changes={"message_id": message.message_id, "status_before": message.status},
            client_address=client_address,
        )
    _try_now(message)


def _try_now(message: WebhookMessage) -> None:
    outcome = sending.webhook_message_attempt(message_id=message.pk, payer_id=message.payer_id)
    if outcome.retry_in is not None:
        transaction.on_commit(
            partial(
                webhook_message_enqueue,
                message_id=message.pk,
                payer_id=message.payer_id,
                countdown=outcome.retry_in,
            ),
            robust=True,
        )

"""Send one webhook message to its endpoint, once, and schedule the next try if it failed.

Every try goes through ``PayerHttpClient`` (vetted destination, TLS, timeouts). Success is
a 2xx within WEBHOOK_TIMEOUT_SECONDS; redirects are not followed (a 3xx is a failure, as
Standard Webhooks receivers are expected to answer at the URL they registered). Failed tries
follow the Standard Webhooks retry schedule; ``Retry-After`` on 429 or 503 pushes the next
try later, never sooner. Each try is a ``WebhookAttempt`` row.

A try starts by claiming the message with a conditional UPDATE on its due time (STYLE.md #4):
a task Celery delivers twice, the sweep and a retry racing, or a message already delivered
all find nothing to claim and send nothing.
"""

import json
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from exchange.fhir.client import retry_after_seconds
from exchange.models import (
    WebhookAttempt,
    WebhookEndpoint,
    WebhookMessage,
    WebhookMessageStatus,
    WebhookSecret,
)
from exchange.webhooks.signing import webhook_headers
from hub.outbound import OutboundError, PayerHttpClient

M = WebhookMessageStatus

# Standard Webhooks §Retry schedule: immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and
# 10 h after each failure; the eighth failure is the last.
RETRY_SCHEDULE = (
    timedelta(0),
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
# Retry-After is honoured up to the longest wait of the schedule.
_RETRY_AFTER_CAP = max(RETRY_SCHEDULE)
_RETRY_AFTER_STATUSES = frozenset({429, 503})
_ERROR_LIMIT = WebhookAttempt._meta.get_field("error").max_length or 500


@dataclass(frozen=True)
class AttemptOutcome:
    """What one call did: whether it sent, whether the message is now delivered, and in how
    many seconds the next try is due (None: no further try)."""

    sent: bool
    delivered: bool = False
    retry_in: float | None = None


def message_body(message: WebhookMessage) -> bytes:
    """Return the exact bytes signed and sent: the envelope as compact, key-sorted JSON, so
    every try of a message carries the same body."""
    return json.dumps(message.payload, separators=(",", ":"), sort_keys=True).encode()


def _claim_lease() -> timedelta:
    # Long enough for the POST to finish; a worker that dies mid-try leaves the message to
    # the sweep once it has passed.
    return timedelta(seconds=2 * settings.WEBHOOK_TIMEOUT_SECONDS + 60)


def webhook_message_attempt(
    *, message_id: int, payer_id: int, now: datetime | None = None
) -> AttemptOutcome:
    """Send the message if a try is due at ``now``; record the try and schedule the next."""
    now = now or timezone.now()
    claimed = (
        WebhookMessage.objects.for_payer(payer_id)
        .filter(pk=message_id, status=M.PENDING, next_attempt_at__lte=now)
        .update(next_attempt_at=now + _claim_lease())
    )
    if not claimed:
        return AttemptOutcome(sent=False)
    message = (
        WebhookMessage.objects.for_payer(payer_id).select_related("endpoint").get(pk=message_id)
    )
    endpoint = message.endpoint
    if not endpoint.active:
        WebhookMessage.objects.for_payer(payer_id).filter(pk=message_id).update(
            status=M.FAILED, next_attempt_at=None
        )
        return AttemptOutcome(sent=False)
    body = message_body(message)
    headers = {
        "Content-Type": "application/json",
        **webhook_headers(
            secrets=webhook_secrets_signing(endpoint=endpoint, now=now),
            message_id=message.message_id,
            timestamp=int(now.timestamp()),
            body=body,
        ),
    }
    status_code: int | None = None
    error = ""
    retry_after: float | None = None
    permanent = False
    started = time.monotonic()
    try:
        with (
            PayerHttpClient() as client,
            # The answer's body is not needed, so it is never read (nor limited in size).
            client.stream(
                "POST",
                endpoint.url,
                content=body,
                headers=headers,
                timeout=settings.WEBHOOK_TIMEOUT_SECONDS,
                follow_redirects=False,
            ) as response,
        ):
            status_code = response.status_code
            if status_code in _RETRY_AFTER_STATUSES:
                retry_after = retry_after_seconds(response.headers.get("Retry-After"))
    except OutboundError as exc:
        error = str(exc)
        permanent = exc.permanent
    duration_ms = int((time.monotonic() - started) * 1000)
    delivered = status_code is not None and 200 <= status_code < 300
    if status_code is not None and not delivered:
        error = f"the endpoint answered HTTP {status_code}"
    return _attempt_record(
        message,
        now=now,
        status_code=status_code,
        error=error,
        duration_ms=duration_ms,
        delivered=delivered,
        permanent=permanent,
        retry_after=retry_after,
    )


def _attempt_record(
    message: WebhookMessage,
    *,
    now: datetime,
    status_code: int | None,
    error: str,
    duration_ms: int,
    delivered: bool,
    permanent: bool,
    retry_after: float | None,
) -> AttemptOutcome:
    """Write the try and the message's new state together."""
    tries = message.scheduled_attempts + 1
    next_at: datetime | None = None
    if not delivered and not permanent and tries < len(RETRY_SCHEDULE):
        wait = RETRY_SCHEDULE[tries]
        if retry_after is not None:
            wait = max(wait, min(timedelta(seconds=retry_after), _RETRY_AFTER_CAP))
        next_at = now + wait
    status = M.DELIVERED if delivered else (M.PENDING if next_at else M.FAILED)
    with transaction.atomic():
        number = WebhookAttempt.objects.for_payer(message.payer_id).filter(message=message).count()
        WebhookAttempt.objects.create(
            payer_id=message.payer_id,
            message=message,
            number=number + 1,
            attempted_at=now,
            status_code=status_code,
            error=error[:_ERROR_LIMIT],
            duration_ms=duration_ms,
            succeeded=delivered,
            next_attempt_at=next_at,
        )
        WebhookMessage.objects.for_payer(message.payer_id).filter(pk=message.pk).update(
            status=status,
            scheduled_attempts=tries,
            next_attempt_at=next_at,
            delivered_at=now if delivered else None,
        )
    return AttemptOutcome(
        sent=True,
        delivered=delivered,
        retry_in=(next_at - now).total_seconds() if next_at else None,
    )


def webhook_secrets_signing(*, endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """Return the secrets that sign at ``now``: the current one and any rotated one whose
    overlap has not ended, newest first."""
    return list(
        WebhookSecret.objects.for_payer(endpoint.payer_id)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now), endpoint=endpoint)
        .order_by("-created_at", "-id")
        .values_list("secret", flat=True)
    )


def webhook_messages_due(*, grace: timedelta, limit: int = 500) -> list[tuple[int, int]]:
    """Return (message id, payer id) of messages whose try is due ``grace`` ago and that no
    task has taken: retries longer than a task may wait, or a broker down at commit time."""
    due = timezone.now() - grace
    rows = (
        WebhookMessage.objects.across_payers(
            reason="the webhook sweep finds every payer's due messages; each is sent scoped"
        )
        .filter(status=M.PENDING, next_attempt_at__lt=due)
        .order_by("next_attempt_at")
        .values_list("pk", "payer_id")[:limit]
    )
    return list(rows)

"""The rule's clock, kept: plan administrators are told before a request is due and when it
is overdue (CMS-0057-F: the request within one week of the later of coverage start and the
opt-in, 42 CFR 422.121(b); ``ExchangeRequest.due_by``).

Every ``EXCHANGE_DUE_SOON_HOURS`` before its due date a request not yet delivered (in
progress, or failed and waiting for someone) is *due soon*; past the date it is *overdue*.
Each alert is given once per request and kind — claimed with a conditional UPDATE of
``due_soon_alerted_at`` / ``overdue_alerted_at``, so two beat processes, or a task run
twice, alert once — and reaches the payer's people three ways: a ``request.due_soon`` /
``request.overdue`` webhook message per subscribed endpoint (exchange/webhooks/), one email
to the payer's active plan administrators listing the requests, and an audit event per
request. Neither carries PHI: request ids, states and dates only.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q, QuerySet

from exchange.models import ExchangeRequest, ExchangeStatus
from exchange.state_machine import IN_PROGRESS
from exchange.webhooks.events import REQUEST_DUE_SOON, REQUEST_OVERDUE, webhook_messages_queue
from hub.admin_mail import plan_admins_mail
from hub.audit import ENGINE, audit_record_many
from hub.models import Payer

# Not delivered yet, and still someone's to move: a failed request waits for a retry.
OWING = IN_PROGRESS | {ExchangeStatus.FAILED}
# The field that records each alert, and how the mail says it.
_KINDS = {
    REQUEST_DUE_SOON: ("due_soon_alerted_at", "due soon"),
    REQUEST_OVERDUE: ("overdue_alerted_at", "overdue"),
}


@dataclass(frozen=True)
class _Owed:
    request_id: int
    status: str
    due_by: datetime


@dataclass(frozen=True)
class DeadlinesOwed:
    """How many of a payer's requests not yet delivered are due soon, and overdue."""

    due_soon: int
    overdue: int


def _owing(requests: QuerySet[ExchangeRequest], *, now: datetime) -> QuerySet[ExchangeRequest]:
    """Return ``requests`` not yet delivered that are due soon or overdue ``now``."""
    due_soon_until = now + timedelta(hours=settings.EXCHANGE_DUE_SOON_HOURS)
    return requests.filter(status__in=OWING, due_by__lte=due_soon_until)


def _owed_counts(*, now: datetime) -> dict[str, Count]:
    return {
        "overdue": Count("pk", filter=Q(due_by__lte=now)),
        "due_soon": Count("pk", filter=Q(due_by__gt=now)),
    }


def deadlines_owed(*, payer: Payer, now: datetime) -> DeadlinesOwed:
    """Return the payer's requests due soon and overdue now (the portal's standing alert, one
    query on the (payer, due_by) index)."""
    counts = _owing(ExchangeRequest.objects.for_payer(payer), now=now).aggregate(
        **_owed_counts(now=now)
    )
    return DeadlinesOwed(due_soon=counts["due_soon"], overdue=counts["overdue"])


def deadlines_owed_by_payer(*, now: datetime) -> dict[int, DeadlinesOwed]:
    """Return, for each payer with any, its requests due soon and overdue now (the operations
    view: one grouped query across payers, however many there are)."""
    requests = ExchangeRequest.objects.across_payers(
        reason="the hub team watches the rule's clock of every payer, as counts only"
    )
    rows = (
        _owing(requests, now=now)
        .values("payer_id")
        .annotate(**_owed_counts(now=now))
        .order_by("payer_id")
    )
    return {
        row["payer_id"]: DeadlinesOwed(due_soon=row["due_soon"], overdue=row["overdue"])
        for row in rows
    }


def deadlines_alert(*, now: datetime) -> dict[str, int]:
    """Alert every payer of its requests due soon and overdue, once each; return how many
    requests of each kind were alerted."""
    due_soon_until = now + timedelta(hours=settings.EXCHANGE_DUE_SOON_HOURS)
    return {
        REQUEST_DUE_SOON: _alert(
            REQUEST_DUE_SOON, now=now, due_by__gt=now, due_by__lte=due_soon_until
        ),
        REQUEST_OVERDUE: _alert(REQUEST_OVERDUE, now=now, due_by__lte=now),
    }


def _alert(event_type: str, *, now: datetime, **due: datetime) -> int:
    field, _ = _KINDS[event_type]
    candidates = (
        ExchangeRequest.objects.across_payers(
            reason="the rule's clock looks at every payer's requests; each is claimed scoped"
        )
        .filter(status__in=OWING, **{f"{field}__isnull": True}, **due)
        .values_list("payer_id", "pk")
    )
    by_payer: dict[int, list[int]] = defaultdict(list)
    for payer_id, request_id in candidates:
        by_payer[payer_id].append(request_id)
    alerted = 0
    for payer_id, request_ids in by_payer.items():
        alerted += len(
            _alert_payer(event_type, payer_id=payer_id, request_ids=request_ids, now=now)
        )
    return alerted


def _alert_payer(
    event_type: str, *, payer_id: int, request_ids: list[int], now: datetime
) -> list[_Owed]:
    """Claim the payer's requests for this alert and tell its people; return those claimed."""
    field, what = _KINDS[event_type]
    with transaction.atomic():
        claimed = [
            _Owed(pk, status, due_by)
            for pk, status, due_by in ExchangeRequest.objects.for_payer(payer_id)
            .filter(pk__in=request_ids, **{f"{field}__isnull": True})
            .select_for_update(skip_locked=True)
            .values_list("pk", "status", "due_by")
        ]
        if not claimed:
            return []
        ExchangeRequest.objects.for_payer(payer_id).filter(
            pk__in=[owed.request_id for owed in claimed]
        ).update(**{field: now})
        events = [
            {
                "request_id": owed.request_id,
                "status": owed.status,
                "due_by": owed.due_by.isoformat(),
            }
            for owed in claimed
        ]
        webhook_messages_queue(payer_id=payer_id, event_type=event_type, at=now, data=events)
        audit_record_many(
            action=f"exchange_request.{event_type.removeprefix('request.')}",
            changes_by_object=[
                (ExchangeRequest(pk=owed.request_id), {"due_by": owed.due_by.isoformat()})
                for owed in claimed
            ],
            payer=payer_id,
            actor_label=ENGINE,
        )
        transaction.on_commit(
            lambda: _mail_admins(payer_id=payer_id, claimed=claimed, what=what), robust=True
        )
    return claimed


def _mail_admins(*, payer_id: int, claimed: list[_Owed], what: str) -> None:
    """Mail the payer's active plan administrators one message listing the requests."""
    payer = Payer.objects.get(pk=payer_id)
    count = len(claimed)
    subject = f"{payer.name}: {count} payer-to-payer request{'s' if count != 1 else ''} {what}"
    lines = [
        f"Request {owed.request_id}: {owed.status.replace('_', ' ')}, due by "
        f"{owed.due_by:%Y-%m-%d %H:%M} UTC"
        for owed in sorted(claimed, key=lambda owed: owed.due_by)
    ]
    body = (
        "CMS-0057-F asks for each request within one week of the later of coverage start and "
        f"the member's opt-in. Not delivered yet, and {what}:\n\n"
        + "\n".join(lines)
        + "\n\nSee them in the plan-admin portal: Requests, filtered by status or due date.\n"
    )
    plan_admins_mail(payer=payer, subject=subject, body=body)

"""Mail one member their authorization link, once, and schedule the next try if it failed.

A try starts by claiming the row with a conditional UPDATE on its due time (STYLE.md #4): a
task Celery delivers twice, the sweep and a retry racing, or a link already sent all find
nothing to claim and send nothing. Mail is not transactional: a worker that dies between
the mail server's acceptance and the row's update leaves the row to the sweep once its
lease has passed, so the member may, rarely, get the same message twice — never none.

The message carries no PHI beyond what the member's own plan may tell them by mail: the
names of the two plans and the date the request is due, never a member id or a record;
the link itself grants nothing until the member signs in at their plan.
"""

import smtplib
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from exchange.models import ExchangeRequest, ExchangeStatus, MemberAuthorizationLink
from hub.audit import ENGINE, audit_record

# Waits after each failed try; one try more than waits: the last failure gives up (about a
# day of tries, within the rule's week: CMS-0057-F, 42 CFR 422.121(b)).
RETRY_SCHEDULE = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=6),
    timedelta(hours=12),
)
# Long enough for the mail server to answer; a worker that dies mid-try leaves the row to
# the sweep once it has passed.
_CLAIM_LEASE = timedelta(minutes=5)
_ERROR_LIMIT = MemberAuthorizationLink._meta.get_field("last_error").max_length or 500


@dataclass(frozen=True)
class SendOutcome:
    """What one call did: whether it mailed, and in how many seconds the next try is due
    (None: no further try)."""

    sent: bool
    retry_in: float | None = None


def member_request_url(exchange_request: ExchangeRequest) -> str:
    """Return the absolute URL of the request's page in the member's portal (at the new
    payer, under HUB_PUBLIC_URL like every link the hub hands out)."""
    path = reverse(
        "members:request-detail",
        kwargs={"payer_slug": exchange_request.payer.slug, "request_id": exchange_request.pk},
    )
    return f"{settings.HUB_PUBLIC_URL}{path}"


def member_authorization_link_message(link: MemberAuthorizationLink) -> tuple[str, str]:
    """Return the subject and plain-text body of the link's email."""
    exchange_request = link.exchange_request
    context = {
        "new_payer": exchange_request.payer.name,
        "former_payer": exchange_request.former_payer.name,
        "due_by": exchange_request.due_by,
        "link": member_request_url(exchange_request),
    }
    subject = render_to_string("exchange/mail/member_authorization_link_subject.txt", context)
    body = render_to_string("exchange/mail/member_authorization_link.txt", context)
    # A header cannot hold a line break (Django refuses one in a subject).
    return " ".join(subject.split()), body


def member_authorization_link_send(
    *, link_id: int, payer_id: int, now: datetime | None = None
) -> SendOutcome:
    """Mail the link if a try is due at ``now``; record the outcome and schedule the next."""
    now = now or timezone.now()
    claimed = (
        MemberAuthorizationLink.objects.for_payer(payer_id)
        .filter(
            pk=link_id, sent_at__isnull=True, given_up_at__isnull=True, next_attempt_at__lte=now
        )
        .update(next_attempt_at=now + _CLAIM_LEASE)
    )
    if not claimed:
        return SendOutcome(sent=False)
    link = (
        MemberAuthorizationLink.objects.for_payer(payer_id)
        .select_related("exchange_request__payer", "exchange_request__former_payer")
        .get(pk=link_id)
    )
    status = link.exchange_request.status
    if status != ExchangeStatus.AWAITING_AUTHORIZATION:
        # Withdrawn or cancelled meanwhile, or the member found the page on their own.
        _gave_up(
            link,
            now=now,
            error=f"Not sent: the request no longer awaits the member ({status}).",
            attempted=False,
        )
        return SendOutcome(sent=False)
    subject, body = member_authorization_link_message(link)
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [link.email])
    except smtplib.SMTPRecipientsRefused:
        # The address itself is refused: trying again would not help; the payer must
        # reach the member another way (the API shows this link's state).
        _gave_up(link, now=now, error="The mail server refused the member's address.")
        return SendOutcome(sent=False)
    except (smtplib.SMTPException, OSError) as exc:
        return _failed(
            link, now=now, error=f"The mail server could not be reached or failed: {exc}"
        )
    with transaction.atomic():
        MemberAuthorizationLink.objects.for_payer(payer_id).filter(pk=link.pk).update(
            sent_at=now, attempts=link.attempts + 1, next_attempt_at=None, last_error=""
        )
        audit_record(
            action="exchange_request.member_link_sent",
            obj=link.exchange_request,
            payer=payer_id,
            actor_label=ENGINE,
            changes={"attempt": link.attempts + 1},
        )
    return SendOutcome(sent=True)


def _failed(link: MemberAuthorizationLink, *, now: datetime, error: str) -> SendOutcome:
    tries = link.attempts + 1
    if tries > len(RETRY_SCHEDULE):
        _gave_up(link, now=now, error=error)
        return SendOutcome(sent=False)
    wait = RETRY_SCHEDULE[tries - 1]
    MemberAuthorizationLink.objects.for_payer(link.payer_id).filter(pk=link.pk).update(
        attempts=tries, next_attempt_at=now + wait, last_error=error[:_ERROR_LIMIT]
    )
    return SendOutcome(sent=False, retry_in=wait.total_seconds())


def _gave_up(
    link: MemberAuthorizationLink, *, now: datetime, error: str, attempted: bool = True
) -> None:
    MemberAuthorizationLink.objects.for_payer(link.payer_id).filter(pk=link.pk).update(
        attempts=link.attempts + (1 if attempted else 0),
        given_up_at=now,
        next_attempt_at=None,
        last_error=error[:_ERROR_LIMIT],
    )


def member_authorization_links_due(*, grace: timedelta, limit: int = 500) -> list[tuple[int, int]]:
    """Return (link id, payer id) of links owed a try that no task holds: unsent, not given
    up, and ``grace`` past the time a try was due."""
    rows = (
        MemberAuthorizationLink.objects.across_payers(
            reason="the sweep finds every payer's unsent authorization links; each is sent scoped"
        )
        .filter(
            sent_at__isnull=True,
            given_up_at__isnull=True,
            next_attempt_at__lt=timezone.now() - grace,
        )
        .order_by("next_attempt_at")
        .values_list("pk", "payer_id")[:limit]
    )
    return list(rows)

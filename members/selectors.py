"""What a member may read: their own requests and consents at their own payer (STYLE.md #1, #2)."""

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import Http404
from django.utils import timezone

from exchange.models import (
    Consent,
    ConsentStatus,
    ExchangeEvent,
    ExchangeRequest,
    ExchangeStatus,
)
from exchange.selectors import exchange_request_manifest, exchange_request_record_counts
from exchange.state_machine import ENDED
from hub.models import Payer, User
from hub.tenancy import get_for_payer_or_404
from members.record_kinds import RecordKind, record_kinds_in_words
from members.request_steps import STEP_OF_STATUS, STEPS, status_tag_class, status_words

# The page stops asking for news once nothing more will happen without a person acting:
# an ended request, or a failed one (a plan administrator's retry restarts it).
SETTLED = ENDED | {ExchangeStatus.FAILED}


def member_requests(*, payer: Payer, member: User) -> QuerySet[ExchangeRequest]:
    """Return the member's requests, newest first, with their former payers and consents."""
    return (
        ExchangeRequest.objects.for_payer(payer)
        .filter(member=member)
        .select_related("former_payer", "consent")
        .order_by("-opted_in_at")
    )


def member_open_requests_to(
    *, payer: Payer, member: User, former_payers: list[Payer]
) -> list[ExchangeRequest]:
    """Return the member's requests to ``former_payers`` that have not ended."""
    return list(
        member_requests(payer=payer, member=member)
        .filter(former_payer__in=former_payers)
        .exclude(status__in=ENDED)
    )


def member_request(*, payer: Payer, member: User, request_id: int) -> ExchangeRequest:
    """Return one of the member's requests; anything else is a 404."""
    return get_for_payer_or_404(
        ExchangeRequest.objects.select_related("former_payer", "consent"),
        payer,
        pk=request_id,
        member=member,
    )


def member_request_timeline(*, exchange_request: ExchangeRequest) -> QuerySet[ExchangeEvent]:
    return ExchangeEvent.objects.for_payer(exchange_request.payer_id).filter(
        exchange_request=exchange_request
    )


def member_request_version(*, payer: Payer, member: User, request_id: int) -> str:
    """Return a token that changes whenever what the request page's moving part shows may;
    a request not the member's is a 404.

    That is the status and its reason, the records fetched so far and the timeline (its
    newest event); counts and files from the package come with a change of status. The page
    polls with its token every 2 s, so this is one query, and an unchanged token is all the
    poll costs.
    """
    newest_event = (
        ExchangeEvent.objects.for_payer(payer)
        .filter(exchange_request=OuterRef("pk"))
        .order_by("-created_at", "-id")
        .values("id")[:1]
    )
    shown = (
        ExchangeRequest.objects.for_payer(payer)
        .filter(pk=request_id, member=member)
        .annotate(newest_event=Subquery(newest_event))
        .values_list("status", "reason_message", "resource_counts", "newest_event")
        .first()
    )
    if shown is None:
        raise Http404("No such object.")
    return hashlib.blake2s(
        orjson.dumps(list(shown), option=orjson.OPT_SORT_KEYS), digest_size=8
    ).hexdigest()


def member_consent(*, payer: Payer, member: User, consent_id: int) -> Consent:
    """Return one of the member's consents; anything else is a 404."""
    return get_for_payer_or_404(Consent.objects.all(), payer, pk=consent_id, member=member)


def consent_can_be_withdrawn(consent: Consent) -> bool:
    """Return whether the consent still lasts: given, not withdrawn, within its year."""
    return consent.status == ConsentStatus.ACTIVE and consent.period_end >= timezone.localdate()


@dataclass(frozen=True)
class DeliveredFile:
    name: str
    size: int


@dataclass(frozen=True)
class RequestProgress:
    """What the request page shows, read once so every number on it agrees."""

    status: str
    status_label: str
    status_tag_class: str
    ended: bool
    settled: bool
    reason: str
    step: int  # index in STEPS of the step reached (where it stopped, for a stopped request)
    fetched: int  # records received from the former plan
    packaged: bool
    # exchange_request_record_counts: the one total the member, the admin and manifest share.
    record_total: int
    record_kinds: list[RecordKind]
    files: list[DeliveredFile]
    screened_out: list[dict[str, Any]]
    events: list[ExchangeEvent] = field(default_factory=list)

    @property
    def steps(self) -> list[tuple[str, str]]:
        """Return each step's label and its USWDS state: complete, current or to do."""
        done = len(STEPS) if self.status == ExchangeStatus.DELIVERED else self.step
        return [
            (label, "complete" if i < done else "current" if i == self.step else "")
            for i, label in enumerate(STEPS)
        ]

    @property
    def step_number(self) -> int:
        return self.step + 1

    @property
    def step_count(self) -> int:
        return len(STEPS)

    def as_json(self) -> dict[str, object]:
        return {
            "status": self.status,
            "status_label": self.status_label,
            "ended": self.ended,
            "reason": self.reason,
            "step": self.step_number,
            "steps": self.step_count,
            "fetched": self.fetched,
            "record_total": self.record_total,
            "record_kinds": [{"name": k.name, "count": k.count} for k in self.record_kinds],
            "screened_out": self.screened_out,
            "files": [{"name": f.name, "size": f.size} for f in self.files],
            "events": [{"at": e.created_at.isoformat(), "message": e.message} for e in self.events],
        }


def _step_reached(status: str, events: list[ExchangeEvent]) -> int:
    if status in STEP_OF_STATUS:
        return STEP_OF_STATUS[status]
    # A stopped request shows the step it stopped at: the state its last move came from.
    for event in reversed(events):
        if event.status == status and event.data.get("from") in STEP_OF_STATUS:
            return STEP_OF_STATUS[event.data["from"]]
    return 0


def member_request_progress(*, exchange_request: ExchangeRequest) -> RequestProgress:
    """Return the request's progress, polled by its page while the work runs."""
    manifest = exchange_request_manifest(exchange_request=exchange_request)
    counts = exchange_request_record_counts(exchange_request=exchange_request, manifest=manifest)
    events = list(member_request_timeline(exchange_request=exchange_request))
    status = exchange_request.status
    return RequestProgress(
        status=status,
        status_label=status_words(status),
        status_tag_class=status_tag_class(status),
        ended=status in ENDED,
        settled=status in SETTLED,
        reason=exchange_request.reason_message,
        step=_step_reached(status, events),
        fetched=sum(exchange_request.resource_counts.values()),
        packaged=bool(manifest),
        record_total=sum(counts.values()),
        record_kinds=record_kinds_in_words(counts),
        files=[DeliveredFile(f["name"], f["size"]) for f in manifest.get("files", [])],
        screened_out=manifest.get("screenedOut", []),
        events=events,
    )

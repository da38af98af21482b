"""A request's timeline in the administrator's voice.

``ExchangeEvent.message`` speaks to the member ("You withdrew your consent"); the
administrator reads the same events as the state each one reached, worded here from the
event's ``status`` and ``data`` (``from``, ``reason``) and the request's own numbers.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

from exchange.models import ExchangeEvent, ExchangeRequest, ExchangeStatus
from plan_admin.labels import reason_label, status_label, status_tone

S = ExchangeStatus


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    text: str
    status: str
    status_label: str
    tone: str
    reason_code: str
    reason_label: str


def _count(counts: dict[str, int]) -> int:
    return sum(value for value in counts.values() if isinstance(value, int))


def _resources(n: int) -> str:
    return f"{n} resource{'' if n == 1 else 's'}"


def _fetched(request: ExchangeRequest) -> str:
    return f"Records fetched from {request.former_payer.name}: {_resources(_count(request.resource_counts))}"


def _screened(request: ExchangeRequest) -> str:
    removed = _count(request.screened_out_counts)
    kept = max(_count(request.resource_counts) - removed, 0)
    return f"Records screened: {_resources(kept)} kept, {removed} screened out"


def _consented(request: ExchangeRequest, came_from: str) -> str:
    if came_from == S.FAILED:
        return "An administrator retried the request: it starts over from the member's consent"
    return f"Member opted in and consented to the exchange with {request.former_payer.name}"


_WORDING: dict[str, Callable[[ExchangeRequest], str]] = {
    S.AWAITING_AUTHORIZATION: lambda r: f"Waiting for the member to sign in at {r.former_payer.name}",
    S.AUTHORIZED: lambda r: f"Member authorized the hub at {r.former_payer.name}",
    S.MATCHING: lambda r: f"Asked {r.former_payer.name} to find the member ($member-match)",
    S.MATCHED: lambda r: f"Member found at {r.former_payer.name}",
    S.RETRIEVING: lambda r: f"Retrieving records from {r.former_payer.name}",
    S.SCREENING: _fetched,
    S.PACKAGING: _screened,
    S.DELIVERING: lambda r: f"Package ready; delivering to {r.payer.name}",
    S.DELIVERED: lambda r: f"Records delivered to {r.payer.name}",
    S.NO_MATCH: lambda r: f"Member not found at {r.former_payer.name}",
    S.CONSENT_CONSTRAINED: lambda r: f"{r.former_payer.name} cannot honour the member's consent",
    S.AUTHORIZATION_DENIED: lambda r: f"Member declined to authorize at {r.former_payer.name}",
    S.FAILED: lambda r: "Request failed",
    S.CANCELLED: lambda r: "Cancelled by an administrator",
    S.REVOKED: lambda r: "Member withdrew consent",
}  # fmt: skip


def timeline_text(event: ExchangeEvent, request: ExchangeRequest) -> str:
    """Return what the event means to an administrator: the state the request reached."""
    data = event.data if isinstance(event.data, dict) else {}
    if event.status == S.CONSENTED:
        return _consented(request, str(data.get("from", "")))
    wording = _WORDING.get(event.status)
    if wording is None:
        # A note without a state change has only the member's words; they are still true.
        return event.message
    text = wording(request)
    reason = str(data.get("reason", ""))
    if reason and event.status not in (S.REVOKED, S.CANCELLED):
        text += f": {reason_label(reason)}"
    return text


def admin_timeline(
    events: Iterable[ExchangeEvent], request: ExchangeRequest
) -> list[TimelineEntry]:
    """Return the request's events as timeline entries for the detail page."""
    entries = []
    for event in events:
        data = event.data if isinstance(event.data, dict) else {}
        reason = str(data.get("reason", ""))
        entries.append(
            TimelineEntry(
                at=event.created_at,
                text=timeline_text(event, request),
                status=event.status,
                status_label=status_label(event.status) if event.status else "",
                tone=status_tone(event.status),
                reason_code=reason,
                reason_label=reason_label(reason),
            )
        )
    return entries

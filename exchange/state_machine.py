"""The one state machine of exchange requests (ARCHITECTURE.md "Request states").

A transition is a conditional UPDATE on the state the caller expects, so two
workers racing on one request — or a task Celery delivers twice — cannot both
move it: the second finds zero rows and stops (STYLE.md #4). Each successful move
writes, in the same transaction, its timeline event (what the member and the
administrators read), its audit event (who moved it, for the append-only log that
HIPAA §164.312(b) asks for; STYLE.md #7) and the webhook messages the payer's systems
subscribed to (exchange/webhooks/), sent once the move commits.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from exchange.models import ExchangeEvent, ExchangeRequest, ExchangeStatus
from exchange.webhooks.events import request_moves_notify
from hub.audit import audit_record_many
from hub.models import Payer, User

S = ExchangeStatus

# Every request can be cancelled by its payer, revoked by its member, or fail,
# until it has reached an end.
_ABORTS = {S.CANCELLED, S.REVOKED, S.FAILED}

TRANSITIONS: dict[str, set[str]] = {
    S.CONSENTED: {S.AWAITING_AUTHORIZATION, S.MATCHING, *_ABORTS},
    S.AWAITING_AUTHORIZATION: {S.AUTHORIZED, S.AUTHORIZATION_DENIED, *_ABORTS},
    S.AUTHORIZED: {S.RETRIEVING, *_ABORTS},
    S.MATCHING: {S.MATCHED, S.NO_MATCH, S.CONSENT_CONSTRAINED, *_ABORTS},
    S.MATCHED: {S.RETRIEVING, *_ABORTS},
    S.RETRIEVING: {S.SCREENING, *_ABORTS},
    S.SCREENING: {S.PACKAGING, *_ABORTS},
    S.PACKAGING: {S.DELIVERING, *_ABORTS},
    S.DELIVERING: {S.DELIVERED, *_ABORTS},
    # A plan administrator's *retry* starts a failed request over from its consent.
    S.FAILED: {S.CONSENTED, S.CANCELLED, S.REVOKED},
    S.DELIVERED: set(),
    S.NO_MATCH: set(),
    S.CONSENT_CONSTRAINED: set(),
    S.AUTHORIZATION_DENIED: set(),
    S.CANCELLED: set(),
    S.REVOKED: set(),
}

ENDED = frozenset(status for status, targets in TRANSITIONS.items() if not targets)
IN_PROGRESS = frozenset(TRANSITIONS) - ENDED - {S.FAILED}
# The states a request can be stuck in: waiting for the member to sign in at the former
# payer is not being stuck.
STUCK_CAN_BE = IN_PROGRESS - {S.AWAITING_AUTHORIZATION}


def exchange_requests_stuck_filter(*, not_moved_since: datetime) -> Q:
    """Return the condition of a stuck request: in flight, its work not moved since
    ``not_moved_since`` (a worker died mid-step). The reaper resumes these; the operations
    view counts them."""
    return Q(
        status__in=STUCK_CAN_BE,
        last_progress_at__lt=not_moved_since,
        # A bulk job drives these; the job reaper resumes it (exchange/bulk/pipeline.py).
        awaits_bulk_job=False,
    )


# A timeline line is a CharField; the message may quote a former payer's own words
# (OperationOutcome diagnostics, an OAuth error_description) of any length.
_MESSAGE_LIMIT = ExchangeEvent._meta.get_field("message").max_length or 500


def _timeline_line(message: str) -> str:
    if len(message) <= _MESSAGE_LIMIT:
        return message
    return message[: _MESSAGE_LIMIT - 1] + "…"


class IllegalTransition(Exception):
    """The state machine has no arrow from one state to the other."""


@dataclass(frozen=True)
class Move:
    """One request of a batch move: its timeline line and its audit details."""

    exchange_request_id: int
    message: str
    details: dict[str, Any] = field(default_factory=dict)


def exchange_request_transition(
    *,
    payer: Payer | int,
    exchange_request_id: int,
    from_status: str,
    to_status: str,
    message: str,
    actor: User | None,
    actor_label: str = "",
    action: str = "exchange_request.transition",
    details: dict[str, Any] | None = None,
    client_address: str | None = None,
    reason_code: str = "",
    reason_message: str = "",
) -> bool:
    """Move the request from ``from_status`` to ``to_status``; return whether it moved.

    Returns False (and changes nothing) when the request is no longer in
    ``from_status`` — someone else moved it, or this very move already happened.
    ``message`` longer than a timeline line is cut short there; ``reason_message`` is kept whole.
    The move is audited as ``action`` by ``actor`` (a person) or ``actor_label`` (a system,
    e.g. hub.audit.ENGINE), with ``details`` — counts and checksums, never record content.
    Raises IllegalTransition for a move the state machine does not have.
    """
    return bool(
        exchange_requests_transition(
            payer=payer,
            moves=[Move(exchange_request_id, message, details or {})],
            from_status=from_status,
            to_status=to_status,
            actor=actor,
            actor_label=actor_label,
            action=action,
            client_address=client_address,
            reason_code=reason_code,
            reason_message=reason_message,
        )
    )


def exchange_requests_transition(
    *,
    payer: Payer | int,
    moves: Sequence[Move],
    from_status: str,
    to_status: str,
    actor: User | None,
    actor_label: str = "",
    action: str = "exchange_request.transition",
    client_address: str | None = None,
    reason_code: str = "",
    reason_message: str = "",
) -> set[int]:
    """Move many requests of one payer from ``from_status`` to ``to_status`` at once (a
    cohort's chunk); return the ids that moved.

    The same move as ``exchange_request_transition`` for each request — the same guard,
    timeline and audit events — in one transaction and a handful of statements instead of
    three per request: the rows still in ``from_status`` are locked first, so exactly
    those move, and a request another worker moved meanwhile is left out.
    """
    if to_status not in TRANSITIONS.get(from_status, set()):
        raise IllegalTransition(f"an exchange request cannot go from {from_status} to {to_status}")
    payer_id = payer.pk if isinstance(payer, Payer) else payer
    by_id = {move.exchange_request_id: move for move in moves}
    if not by_id:
        return set()
    with transaction.atomic():
        still_there = set(
            ExchangeRequest.objects.for_payer(payer_id)
            .filter(pk__in=by_id, status=from_status)
            .select_for_update()
            .values_list("pk", flat=True)
        )
        if not still_there:
            return set()
        now = timezone.now()
        ExchangeRequest.objects.for_payer(payer_id).filter(pk__in=still_there).update(
            status=to_status,
            status_changed_at=now,
            last_progress_at=now,
            reason_code=reason_code,
            reason_message=reason_message,
        )
        _record_moves(
            payer_id,
            [by_id[pk] for pk in sorted(still_there)],
            from_status=from_status,
            to_status=to_status,
            actor=actor,
            actor_label=actor_label,
            action=action,
            client_address=client_address,
            reason_code=reason_code,
            at=now,
        )
    return still_there


def _record_moves(
    payer_id: int,
    moves: Sequence[Move],
    *,
    from_status: str,
    to_status: str,
    actor: User | None,
    actor_label: str,
    action: str,
    client_address: str | None,
    reason_code: str,
    at: datetime,
) -> None:
    """Write the timeline and audit events and owe the webhook messages of moves that
    happened (in the caller's transaction)."""
    reason = {"reason": reason_code} if reason_code else {}
    ExchangeEvent.objects.bulk_create(
        [
            ExchangeEvent(
                payer_id=payer_id,
                exchange_request_id=move.exchange_request_id,
                status=to_status,
                message=_timeline_line(move.message),
                data={"from": from_status, **reason},
            )
            for move in moves
        ],
        batch_size=1000,
    )
    audit_record_many(
        action=action,
        changes_by_object=[
            (
                ExchangeRequest(pk=move.exchange_request_id),
                {"status": {"before": from_status, "after": to_status}, **reason, **move.details},
            )
            for move in moves
        ],
        payer=payer_id,
        actor=actor,
        actor_label=actor_label,
        client_address=client_address,
    )
    request_moves_notify(
        payer_id=payer_id,
        moves=[(move.exchange_request_id, move.details) for move in moves],
        from_status=from_status,
        to_status=to_status,
        reason_code=reason_code,
        at=at,
    )

"""Request states move only along the state machine's arrows, once (ARCHITECTURE.md)."""

import pytest

from exchange.models import ExchangeEvent, ExchangeRequest, ExchangeStatus
from exchange.state_machine import (
    ENDED,
    TRANSITIONS,
    IllegalTransition,
    Move,
    exchange_request_transition,
    exchange_requests_transition,
)
from hub.models import AuditEvent
from tests.conftest import Tenant
from tests.factories import ConsentFactory, ExchangeRequestFactory


@pytest.fixture
def request_at_north(north: Tenant, south: Tenant) -> ExchangeRequest:
    return ExchangeRequestFactory(
        consent=ConsentFactory(member=north.member, former_payer=south.payer)
    )


def test_an_illegal_transition_is_refused_and_changes_nothing(
    request_at_north: ExchangeRequest,
) -> None:
    with pytest.raises(IllegalTransition, match="consented to delivered"):
        exchange_request_transition(
            payer=request_at_north.payer,
            exchange_request_id=request_at_north.pk,
            from_status=ExchangeStatus.CONSENTED,
            to_status=ExchangeStatus.DELIVERED,
            message="skipping ahead",
            actor=None,
        )
    request_at_north.refresh_from_db()
    assert request_at_north.status == ExchangeStatus.CONSENTED
    assert not request_at_north.events.exists()


def test_a_repeated_legal_transition_is_a_no_op(request_at_north: ExchangeRequest) -> None:
    move = {
        "payer": request_at_north.payer,
        "exchange_request_id": request_at_north.pk,
        "from_status": ExchangeStatus.CONSENTED,
        "to_status": ExchangeStatus.MATCHING,
        "message": "Looking for you at Southern Cross Health.",
        "actor": None,
    }
    assert exchange_request_transition(**move) is True
    assert exchange_request_transition(**move) is False  # a duplicated task finds nothing to do

    request_at_north.refresh_from_db()
    assert request_at_north.status == ExchangeStatus.MATCHING
    events = request_at_north.events.all()
    assert [e.status for e in events] == [ExchangeStatus.MATCHING]


def test_another_payer_cannot_move_the_request(
    request_at_north: ExchangeRequest, south: Tenant
) -> None:
    moved = exchange_request_transition(
        payer=south.payer,
        exchange_request_id=request_at_north.pk,
        from_status=ExchangeStatus.CONSENTED,
        to_status=ExchangeStatus.CANCELLED,
        message="not yours",
        actor=None,
    )
    assert moved is False
    request_at_north.refresh_from_db()
    assert request_at_north.status == ExchangeStatus.CONSENTED


def test_every_state_is_reachable_and_ended_states_are_final() -> None:
    reachable = {ExchangeStatus.CONSENTED.value}
    for targets in TRANSITIONS.values():
        reachable |= targets
    assert reachable == set(ExchangeStatus.values)
    assert {
        "delivered",
        "no_match",
        "consent_constrained",
        "authorization_denied",
        "cancelled",
        "revoked",
    } == ENDED


def test_a_message_longer_than_a_timeline_line_is_shortened_not_lost(
    request_at_north: ExchangeRequest,
) -> None:
    # A former payer's OperationOutcome text (or an authorization server's error_description)
    # ends up in these sentences, and it can be of any length.
    their_words = "The member could not be matched. " * 40
    moved = exchange_request_transition(
        payer=request_at_north.payer,
        exchange_request_id=request_at_north.pk,
        from_status=ExchangeStatus.CONSENTED,
        to_status=ExchangeStatus.FAILED,
        message=f"Stopped: {their_words}",
        actor=None,
        reason_code="rejected",
        reason_message=their_words,
    )

    assert moved is True
    request_at_north.refresh_from_db()
    assert request_at_north.status == ExchangeStatus.FAILED
    assert request_at_north.reason_message == their_words  # kept whole where it fits
    event = request_at_north.events.get()
    limit = ExchangeEvent._meta.get_field("message").max_length
    assert len(event.message) == limit
    assert event.message.startswith("Stopped: The member could not be matched.")
    assert event.message.endswith("…")


def test_a_batch_moves_only_the_requests_still_in_the_state_and_records_each(
    north: Tenant, south: Tenant
) -> None:
    requests = [
        ExchangeRequestFactory(
            consent=ConsentFactory(member=north.member, former_payer=south.payer)
        )
        for _ in range(3)
    ]
    # One of them was withdrawn meanwhile: the batch leaves it where it is.
    withdrawn = requests[1]
    ExchangeRequest.objects.for_payer(north.payer).filter(pk=withdrawn.pk).update(
        status=ExchangeStatus.REVOKED
    )

    moved = exchange_requests_transition(
        payer=north.payer,
        moves=[Move(r.pk, f"Looking for member {r.pk}.", {"chunk": 1}) for r in requests],
        from_status=ExchangeStatus.CONSENTED,
        to_status=ExchangeStatus.MATCHING,
        actor=None,
        actor_label="engine",
    )

    assert moved == {requests[0].pk, requests[2].pk}
    for exchange_request in (requests[0], requests[2]):
        exchange_request.refresh_from_db()
        assert exchange_request.status == ExchangeStatus.MATCHING
        (event,) = exchange_request.events.all()
        assert event.message == f"Looking for member {exchange_request.pk}."
        (audit,) = AuditEvent.objects.for_payer(north.payer).filter(
            object_type="exchange.ExchangeRequest", object_id=str(exchange_request.pk)
        )
        assert audit.changes == {
            "status": {"before": "consented", "after": "matching"},
            "chunk": 1,
        }
        assert audit.actor_label == "engine"
    withdrawn.refresh_from_db()
    assert withdrawn.status == ExchangeStatus.REVOKED
    assert not withdrawn.events.exists()
    # Run again (a task delivered twice): nothing more moves, nothing more is written.
    again = exchange_requests_transition(
        payer=north.payer,
        moves=[Move(r.pk, "again") for r in requests],
        from_status=ExchangeStatus.CONSENTED,
        to_status=ExchangeStatus.MATCHING,
        actor=None,
    )
    assert again == set()
    assert (
        ExchangeEvent.objects.for_payer(north.payer).filter(exchange_request__in=requests).count()
        == 2
    )


def test_a_batch_cannot_move_another_payers_requests_nor_an_illegal_arrow(
    north: Tenant, south: Tenant
) -> None:
    exchange_request = ExchangeRequestFactory(
        consent=ConsentFactory(member=north.member, former_payer=south.payer)
    )
    moves = [Move(exchange_request.pk, "Looking for you.")]
    with pytest.raises(IllegalTransition):
        exchange_requests_transition(
            payer=north.payer,
            moves=moves,
            from_status=ExchangeStatus.CONSENTED,
            to_status=ExchangeStatus.DELIVERED,
            actor=None,
        )
    moved = exchange_requests_transition(
        payer=south.payer,
        moves=moves,
        from_status=ExchangeStatus.CONSENTED,
        to_status=ExchangeStatus.MATCHING,
        actor=None,
    )
    assert moved == set()
    exchange_request.refresh_from_db()
    assert exchange_request.status == ExchangeStatus.CONSENTED

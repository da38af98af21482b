"""Request states move only along the state machine's arrows, once (ARCHITECTURE.md)."""

import pytest

from exchange.models import ExchangeEvent, ExchangeRequest, ExchangeStatus
from exchange.state_machine import (
    ENDED,
    TRANSITIONS,
    IllegalTransition,
    exchange_request_transition,
)
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

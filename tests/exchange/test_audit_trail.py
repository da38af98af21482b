"""Every move of a request, by whoever makes it, is in the append-only audit log, written in
the same transaction as the move (STYLE.md #7; HIPAA §164.312(b) audit controls)."""

import pytest
from django.db import transaction

from exchange.models import ExchangeEvent, ExchangeRequest, ExchangeStatus
from exchange.pipeline import exchange_request_fail
from exchange.services import exchange_request_cancel, exchange_request_retry
from exchange.state_machine import TRANSITIONS, exchange_request_transition
from hub.audit import ENGINE
from hub.models import AuditEvent
from tests.conftest import Tenant
from tests.factories import ConsentFactory, ExchangeRequestFactory

ARROWS = sorted((source, target) for source, targets in TRANSITIONS.items() for target in targets)


class AfterTheMove(Exception):
    """Something that goes wrong in the same transaction, after the request moved."""


def _request_in(status: str, north: Tenant, south: Tenant) -> ExchangeRequest:
    return ExchangeRequestFactory(
        consent=ConsentFactory(member=north.member, former_payer=south.payer), status=status
    )


def _audit_of(exchange_request: ExchangeRequest) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.for_payer(exchange_request.payer_id).filter(
            object_type="exchange.ExchangeRequest", object_id=str(exchange_request.pk)
        )
    )


@pytest.mark.parametrize(("source", "target"), ARROWS)
def test_every_transition_writes_its_audit_row_with_actor_and_payer(
    source: str, target: str, north: Tenant, south: Tenant
) -> None:
    exchange_request = _request_in(source, north, south)

    moved = exchange_request_transition(
        payer=north.payer, exchange_request_id=exchange_request.pk, from_status=source,
        to_status=target, message="Moved.", actor=north.admin, action="exchange_request.test",
        details={"files": 2}, client_address="192.0.2.7", reason_code="because",
    )  # fmt: skip

    assert moved
    [event] = _audit_of(exchange_request)
    assert event.action == "exchange_request.test"
    assert event.payer_id == north.payer.pk
    assert event.actor == north.admin
    assert event.client_address == "192.0.2.7"
    assert event.changes == {
        "status": {"before": source, "after": target},
        "reason": "because",
        "files": 2,
    }


@pytest.mark.parametrize(("source", "target"), ARROWS)
def test_a_failure_after_the_move_leaves_neither_the_move_nor_its_audit_row(
    source: str, target: str, north: Tenant, south: Tenant
) -> None:
    exchange_request = _request_in(source, north, south)

    with pytest.raises(AfterTheMove), transaction.atomic():
        assert exchange_request_transition(
            payer=north.payer, exchange_request_id=exchange_request.pk, from_status=source,
            to_status=target, message="Moved.", actor=None, actor_label=ENGINE,
        )  # fmt: skip
        raise AfterTheMove

    exchange_request.refresh_from_db()
    assert exchange_request.status == source
    assert not _audit_of(exchange_request)
    assert not ExchangeEvent.objects.for_payer(north.payer).filter(
        exchange_request=exchange_request
    )


def test_a_move_that_does_not_happen_is_not_audited(north: Tenant, south: Tenant) -> None:
    exchange_request = _request_in(ExchangeStatus.DELIVERED, north, south)

    assert not exchange_request_transition(
        payer=north.payer, exchange_request_id=exchange_request.pk,
        from_status=ExchangeStatus.RETRIEVING, to_status=ExchangeStatus.SCREENING,
        message="Moved.", actor=None, actor_label=ENGINE,
    )  # fmt: skip

    assert not _audit_of(exchange_request)


def test_the_engine_and_each_administrator_action_are_audited_once_under_their_own_names(
    north: Tenant, south: Tenant
) -> None:
    exchange_request = _request_in(ExchangeStatus.RETRIEVING, north, south)

    exchange_request_fail(
        request_id=exchange_request.pk, payer_id=north.payer.pk, code="x", message="it broke"
    )
    exchange_request_retry(payer=north.payer, request_id=exchange_request.pk, actor=north.admin)
    exchange_request_cancel(payer=north.payer, request_id=exchange_request.pk, actor=north.admin)

    trail = sorted(_audit_of(exchange_request), key=lambda event: event.pk)
    assert [(e.action, e.actor, e.actor_label, e.changes["status"]["after"]) for e in trail] == [
        ("exchange_request.transition", None, ENGINE, ExchangeStatus.FAILED),
        ("exchange_request.retry", north.admin, north.admin.username, ExchangeStatus.CONSENTED),
        ("exchange_request.cancel", north.admin, north.admin.username, ExchangeStatus.CANCELLED),
    ]
    assert trail[0].changes["reason"] == "x"
    # The former payer's log holds nothing of North's own decisions.
    assert not AuditEvent.objects.for_payer(south.payer).exists()

"""The services that move a request for its member: withdrawal, the answer from the former payer."""

import threading
import time
from collections.abc import Callable

import pytest
from django.db import connection, transaction

from exchange.models import (
    AuthorizationMode,
    ConsentStatus,
    ExchangeRequest,
    ExchangeStatus,
)
from exchange.services import exchange_request_deny, exchange_request_withdraw
from exchange.state_machine import exchange_request_transition
from hub.models import AuditEvent
from tests.conftest import Tenant
from tests.factories import ConsentFactory, ExchangeRequestFactory, MemberLaunchFactory


def _in_own_connection(work: Callable[[], None], failures: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            work()
        except BaseException as exc:  # handed to the test thread, which fails on it
            failures.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _wait_until_a_query_waits_on_a_lock(timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            (waiting,) = cursor.fetchone()
        if waiting:
            return
        time.sleep(0.02)
    raise TimeoutError("the withdrawal never waited for the worker's transaction")


@pytest.mark.django_db(transaction=True)
def test_a_withdrawal_during_a_step_transition_still_revokes_the_request(
    north: Tenant, south: Tenant
) -> None:
    exchange_request = ExchangeRequestFactory(
        consent=ConsentFactory(member=north.member, former_payer=south.payer),
        status=ExchangeStatus.RETRIEVING,
    )
    failures: list[BaseException] = []
    worker_moved, release_worker = threading.Event(), threading.Event()

    def worker_finishes_retrieval() -> None:
        with transaction.atomic():
            exchange_request_transition(
                payer=exchange_request.payer_id,
                exchange_request_id=exchange_request.pk,
                from_status=ExchangeStatus.RETRIEVING,
                to_status=ExchangeStatus.SCREENING,
                message="Received 12 records.",
                actor=None,
            )
            worker_moved.set()
            release_worker.wait(timeout=10)

    def member_withdraws() -> None:
        exchange_request_withdraw(
            actor=north.member,
            exchange_request=ExchangeRequest.objects.for_payer(north.payer).get(
                pk=exchange_request.pk
            ),
        )

    worker = _in_own_connection(worker_finishes_retrieval, failures)
    assert worker_moved.wait(timeout=10)
    # The member withdraws while the worker's move is not yet committed ...
    withdrawal = _in_own_connection(member_withdraws, failures)
    _wait_until_a_query_waits_on_a_lock()
    # ... and the worker commits while the withdrawal is under way.
    release_worker.set()
    worker.join(timeout=10)
    withdrawal.join(timeout=10)

    assert not failures
    exchange_request.refresh_from_db()
    exchange_request.consent.refresh_from_db()
    assert exchange_request.consent.status == ConsentStatus.INACTIVE
    # Not left running under a withdrawn consent: nothing more may be fetched or delivered.
    assert exchange_request.status == ExchangeStatus.REVOKED
    assert exchange_request.reason_code == "consent_withdrawn"


def test_a_refusal_arriving_after_the_request_ended_is_not_audited_as_a_denial(
    north: Tenant, south: Tenant
) -> None:
    exchange_request: ExchangeRequest = ExchangeRequestFactory(
        consent=ConsentFactory(member=north.member, former_payer=south.payer),
        authorization_mode=AuthorizationMode.MEMBER_AUTHORIZED,
        status=ExchangeStatus.REVOKED,
    )

    launch = MemberLaunchFactory(exchange_request=exchange_request, state="late-state")

    exchange_request_deny(
        payer=north.payer, member=north.member, state="late-state",
        redirect_uri=launch.redirect_uri, said="no",
    )  # fmt: skip

    exchange_request.refresh_from_db()
    assert exchange_request.status == ExchangeStatus.REVOKED
    assert not AuditEvent.objects.for_payer(north.payer).filter(
        action="exchange_request.authorization_denied"
    )

"""Recurring pulls (exchange/schedules.py): which requests open a schedule, when each run is
due, what a run asks for, what ends or holds a schedule, and that two schedulers at once
start each run once (CMS-0057-F: concurrent payers at least quarterly; PDex §pdex-180: the
requester's own watermark as ``_since``)."""

import threading
from datetime import date, datetime, time, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from exchange.models import (
    AuthorizationMode,
    ConsentStatus,
    ExchangeEvent,
    ExchangeRequest,
    ExchangeStatus,
    PullKind,
    PullSchedule,
    PullScheduleEnd,
)
from exchange.schedules import (
    PullScheduleActionRefused,
    pull_schedule_pause,
    pull_schedule_resume,
    pull_schedules_delivered,
    pull_schedules_open,
    pull_schedules_run,
)
from exchange.services import exchange_request_withdraw
from hub.models import AuditEvent, PayerStatus
from tests.conftest import Tenant
from tests.factories import ConsentFactory, ExchangeRequestFactory

S = ExchangeStatus
QUARTER = timedelta(days=92)


def _request(
    tenant: Tenant, former: Tenant, *, coverage_end: date | None, **fields: object
) -> ExchangeRequest:
    consent = ConsentFactory(member=tenant.member, former_payer=former.payer)
    return ExchangeRequestFactory(consent=consent, coverage_end=coverage_end, **fields)


def _opened(tenant: Tenant, former: Tenant, *, coverage_end: date | None) -> PullSchedule:
    exchange_request = _request(tenant, former, coverage_end=coverage_end)
    (schedule,) = pull_schedules_open(requests=[exchange_request])
    return schedule


def _delivered(exchange_request: ExchangeRequest, as_of: datetime) -> None:
    ExchangeRequest.objects.for_payer(exchange_request.payer).filter(pk=exchange_request.pk).update(
        status=S.DELIVERED, records_as_of=as_of
    )
    exchange_request.refresh_from_db()
    pull_schedules_delivered(requests=[exchange_request])


def test_concurrent_coverage_is_refreshed_each_period_and_a_lately_ended_one_gets_a_run_off(
    north: Tenant, south: Tenant
) -> None:
    today = timezone.localdate()
    north.payer.concurrent_refresh_days, north.payer.run_off_days = 80, 45
    north.payer.save()
    concurrent = _request(north, south, coverage_end=None)
    ended = _request(north, south, coverage_end=today - timedelta(days=10), card_member_id="B")
    long_ended = _request(north, south, coverage_end=today - timedelta(days=400))
    authorized = _request(
        north, south, coverage_end=None, authorization_mode=AuthorizationMode.MEMBER_AUTHORIZED
    )
    before = timezone.now()

    schedules = pull_schedules_open(requests=[concurrent, ended, long_ended, authorized])

    refresh, run_off = schedules
    assert (refresh.kind, run_off.kind) == (PullKind.REFRESH, PullKind.RUN_OFF)
    assert refresh.next_run_at is not None
    assert before + timedelta(days=80) <= refresh.next_run_at <= timezone.now() + timedelta(days=80)
    assert run_off.next_run_at == timezone.make_aware(
        datetime.combine(today + timedelta(days=35), time.min)
    )
    for exchange_request, schedule in ((concurrent, refresh), (ended, run_off)):
        exchange_request.refresh_from_db()
        assert (exchange_request.schedule_id, exchange_request.schedule_run) == (schedule.pk, 0)
    # Long ended: no run-off left; member-authorized: the member would sign in every quarter.
    for exchange_request in (long_ended, authorized):
        exchange_request.refresh_from_db()
        assert exchange_request.schedule_id is None
    # A second opening of the same member and payer keeps the one live schedule.
    assert pull_schedules_open(requests=[_request(north, south, coverage_end=None)]) == []


def test_a_run_asks_for_what_changed_since_the_last_pull_delivered(
    north: Tenant, south: Tenant
) -> None:
    schedule = _opened(north, south, coverage_end=None)
    first = schedule.pulls.get()
    as_of = timezone.now() - timedelta(hours=1)
    _delivered(first, as_of)
    schedule.refresh_from_db()
    assert schedule.watermark == as_of and schedule.last_delivered_at is not None

    assert pull_schedules_run() == []  # nothing due yet on the hub's clock
    later = timezone.now() + QUARTER
    (started,) = pull_schedules_run(now=later)

    pull = ExchangeRequest.objects.for_payer(north.payer).get(pk=started.request_id)
    assert (pull.schedule_id, pull.schedule_run, pull.records_since) == (schedule.pk, 1, as_of)
    assert (pull.status, pull.consent_id, pull.card_member_id) == (
        S.CONSENTED,
        first.consent_id,
        first.card_member_id,
    )
    assert pull.due_by == later + timedelta(days=7)
    event = ExchangeEvent.objects.for_payer(north.payer).get(exchange_request=pull)
    assert "again" in event.message and "what changed since" in event.message
    audit = AuditEvent.objects.for_payer(north.payer).get(
        action="exchange_request.create", object_id=str(pull.pk)
    )
    assert audit.changes["since"] == as_of.isoformat() and audit.changes["run"] == 1
    schedule.refresh_from_db()
    assert schedule.runs == 1 and schedule.next_run_at == later + timedelta(days=90)

    # A failed pull leaves the watermark: the next one asks for everything since `as_of`.
    ExchangeRequest.objects.for_payer(north.payer).filter(pk=pull.pk).update(status=S.FAILED)
    (again,) = pull_schedules_run(now=later + QUARTER)
    assert (
        ExchangeRequest.objects.for_payer(north.payer).get(pk=again.request_id).records_since
        == as_of
    )


def test_a_run_waits_a_day_while_the_last_pull_is_under_way(north: Tenant, south: Tenant) -> None:
    schedule = _opened(north, south, coverage_end=None)
    later = timezone.now() + QUARTER

    assert pull_schedules_run(now=later) == []

    schedule.refresh_from_db()
    assert schedule.next_run_at == later + timedelta(days=1) and schedule.runs == 0


def test_the_run_off_is_the_last_run(north: Tenant, south: Tenant) -> None:
    schedule = _opened(north, south, coverage_end=timezone.localdate() - timedelta(days=1))
    _delivered(schedule.pulls.get(), timezone.now())

    (started,) = pull_schedules_run(now=timezone.now() + timedelta(days=61))

    schedule.refresh_from_db()
    assert (schedule.ended_at is not None, schedule.end_reason, schedule.next_run_at) == (
        True,
        PullScheduleEnd.RUN_OFF_DONE,
        None,
    )
    assert (
        ExchangeRequest.objects.for_payer(north.payer).get(pk=started.request_id).schedule_run == 1
    )


def test_a_refresh_turns_into_the_run_off_once_the_concurrent_coverage_ends(
    north: Tenant, south: Tenant
) -> None:
    ends = timezone.localdate() + timedelta(days=30)
    schedule = _opened(north, south, coverage_end=ends)
    # The next refresh would fall after the end: the run-off 60 days after it comes instead.
    assert schedule.next_run_at == timezone.make_aware(
        datetime.combine(ends + timedelta(days=60), time.min)
    )
    _delivered(schedule.pulls.get(), timezone.now())

    assert len(pull_schedules_run(now=timezone.now() + timedelta(days=91))) == 1

    schedule.refresh_from_db()
    assert schedule.end_reason == PullScheduleEnd.RUN_OFF_DONE


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("withdrawn", PullScheduleEnd.CONSENT_WITHDRAWN),
        ("expired", PullScheduleEnd.CONSENT_ENDED),
        ("holder_gone", PullScheduleEnd.HOLDER_GONE),
    ],
)
def test_a_schedule_ends_rather_than_run_without_consent_or_holder(
    north: Tenant, south: Tenant, change: str, reason: str
) -> None:
    schedule = _opened(north, south, coverage_end=None)
    _delivered(schedule.pulls.get(), timezone.now())
    if change == "withdrawn":
        schedule.consent.status = ConsentStatus.INACTIVE
        schedule.consent.revoked_at = timezone.now()
        schedule.consent.save()
    elif change == "expired":
        schedule.consent.period_end = timezone.localdate() + timedelta(days=30)
        schedule.consent.save()
    else:
        south.payer.status = PayerStatus.ONBOARDING
        south.payer.save()

    assert pull_schedules_run(now=timezone.now() + QUARTER) == []

    schedule.refresh_from_db()
    assert (schedule.end_reason, schedule.next_run_at) == (reason, None)
    assert AuditEvent.objects.for_payer(north.payer).filter(action="pull_schedule.end").exists()


def test_the_member_s_withdrawal_ends_the_schedule(north: Tenant, south: Tenant) -> None:
    schedule = _opened(north, south, coverage_end=None)

    exchange_request_withdraw(exchange_request=schedule.pulls.get(), actor=north.member)

    schedule.refresh_from_db()
    assert schedule.end_reason == PullScheduleEnd.CONSENT_WITHDRAWN
    assert pull_schedules_run(now=timezone.now() + 4 * QUARTER) == []


def test_a_paused_schedule_starts_nothing_until_resumed(north: Tenant, south: Tenant) -> None:
    schedule = _opened(north, south, coverage_end=None)
    _delivered(schedule.pulls.get(), timezone.now())

    pull_schedule_pause(payer=north.payer, schedule_id=schedule.pk, actor=north.admin)
    assert pull_schedules_run(now=timezone.now() + QUARTER) == []
    resumed = pull_schedule_resume(payer=north.payer, schedule_id=schedule.pk, actor=north.admin)

    assert resumed.paused_at is None
    assert len(pull_schedules_run(now=timezone.now() + QUARTER)) == 1
    actions = set(
        AuditEvent.objects.for_payer(north.payer).values_list("action", flat=True).distinct()
    )
    assert {"pull_schedule.pause", "pull_schedule.resume"} <= actions


def test_another_payer_cannot_pause_a_schedule_and_an_ended_one_cannot_be_resumed(
    north: Tenant, south: Tenant
) -> None:
    from django.http import Http404

    schedule = _opened(north, south, coverage_end=None)
    with pytest.raises(Http404):
        pull_schedule_pause(payer=south.payer, schedule_id=schedule.pk, actor=south.admin)
    exchange_request_withdraw(exchange_request=schedule.pulls.get(), actor=north.member)
    with pytest.raises(PullScheduleActionRefused, match="ended"):
        pull_schedule_resume(payer=north.payer, schedule_id=schedule.pk, actor=north.admin)


@pytest.mark.django_db(transaction=True)
def test_two_schedulers_at_once_start_each_run_once(north: Tenant, south: Tenant) -> None:
    schedules = []
    for number in range(6):
        consent = ConsentFactory(member=north.member, former_payer=south.payer)
        exchange_request: ExchangeRequest = ExchangeRequestFactory(
            consent=consent, coverage_end=None, card_member_id=f"C{number}"
        )
        # One live schedule per member and payer: each its own member.
        member = type(north.member).objects.create(
            username=f"n-member-{number}", payer=north.payer, role=north.member.role
        )
        ExchangeRequest.objects.for_payer(north.payer).filter(pk=exchange_request.pk).update(
            member=member
        )
        consent.member = member
        consent.save()
        exchange_request.refresh_from_db()
        (schedule,) = pull_schedules_open(requests=[exchange_request])
        _delivered(exchange_request, timezone.now())
        schedules.append(schedule)
    later = timezone.now() + QUARTER
    started: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def scheduler() -> None:
        try:
            barrier.wait()
            started.extend(pull.request_id for pull in pull_schedules_run(now=later))
        except BaseException as error:  # e.g. the (schedule, run) constraint: a run made twice
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=scheduler) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(started) == len(set(started)) == 6
    runs = ExchangeRequest.objects.for_payer(north.payer).filter(schedule_run=1)
    assert sorted(runs.values_list("schedule_id", flat=True)) == sorted(s.pk for s in schedules)
    assert pull_schedules_run(now=later) == []  # and a restarted beat finds nothing more

"""Recurring pulls: concurrent coverage at least quarterly, and a run-off after coverage ends.

CMS-0057-F (42 CFR 422.121(b)) has the new payer request a concurrent payer's data within a
week of the opt-in "and at least quarterly thereafter" while both coverages last; claims for
care given before a coverage ended keep arriving for a while (run-off), so one more pull a
payer-chosen number of days after a previous coverage ends gets them. Each run is a request
of its own on the one spine (match, retrieve, screen, package, deliver), asked with
``_since`` = the schedule's watermark: the ``records_as_of`` of the last pull delivered. PDex
STU 2.2 §pdex-180 has the requester keep that watermark itself (2.2 removed the holder's
``lastTransmitted``, FHIR-55987) and never use a coverage date as ``_since``; a pull that
fails leaves the watermark where it was, so the next one asks for everything since the last
pull that arrived.

Idempotent (STYLE.md #4): the scheduler claims due schedules with ``SELECT ... FOR UPDATE
SKIP LOCKED`` and moves ``next_run_at`` on in the same transaction that creates the run, so
a second beat process, or a beat restarted mid-way, finds nothing left to do; a unique
constraint on (schedule, run) is the last guard.

Only payer-to-payer requests (SMART Backend Services) are scheduled: a member-authorized
pull would need the member to sign in at the former payer every quarter.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateformat import format as date_format

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
from exchange.state_machine import IN_PROGRESS
from hub.audit import audit_record, audit_record_many
from hub.models import Payer, PayerStatus, User
from hub.tenancy import get_for_payer_or_404

ENGINE = "engine"
# Schedules claimed per transaction by one run of the scheduler; the rest wait for the next.
RUN_BATCH = 500
# A schedule whose last pull is still under way is looked at again this much later.
_BUSY_POSTPONE = timedelta(days=1)


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


def _next_run_at(
    *, kind: str, coverage_end: date | None, after: datetime, payer: Payer
) -> datetime:
    """Return when the run after ``after`` is due.

    A refresh repeats every ``concurrent_refresh_days`` while the coverage lasts; once the
    next one would fall after its end, the run-off ``run_off_days`` after the end comes next.
    """
    if kind == PullKind.REFRESH:
        refresh = after + timedelta(days=payer.concurrent_refresh_days)
        if coverage_end is None or timezone.localdate(refresh) <= coverage_end:
            return refresh
    if coverage_end is None:
        raise ValueError("a run-off is due only after a coverage that has an end")
    return max(after, _day_start(coverage_end + timedelta(days=payer.run_off_days)))


def _kind_for(exchange_request: ExchangeRequest, *, today: date) -> str | None:
    """Return which recurring pull the request's coverage calls for, if any."""
    if exchange_request.authorization_mode != AuthorizationMode.BACKEND_SERVICES:
        return None
    end = exchange_request.coverage_end
    if end is None or end >= today:
        return PullKind.REFRESH
    if end + timedelta(days=exchange_request.payer.run_off_days) >= today:
        return PullKind.RUN_OFF
    return None


def pull_schedules_open(*, requests: Sequence[ExchangeRequest]) -> list[PullSchedule]:
    """Open the schedule each newly created request's coverage calls for, the request its
    run 0; return those opened. A member who already has a live schedule with that former
    payer keeps it (the new request stays apart from it)."""
    now = timezone.now()
    today = timezone.localdate(now)
    wanted = [(r, kind) for r in requests if (kind := _kind_for(r, today=today)) is not None]
    if not wanted:
        return []
    payer = wanted[0][0].payer
    live = set(
        PullSchedule.objects.for_payer(payer)
        .filter(
            ended_at__isnull=True,
            member__in={r.member_id for r, _ in wanted},
            former_payer__in={r.former_payer_id for r, _ in wanted},
        )
        .values_list("member_id", "former_payer_id", "kind")
    )
    opened: list[tuple[ExchangeRequest, PullSchedule]] = []
    for exchange_request, kind in wanted:
        key = (exchange_request.member_id, exchange_request.former_payer_id, kind)
        if key in live:
            continue
        live.add(key)
        next_run_at = _next_run_at(
            kind=kind, coverage_end=exchange_request.coverage_end, after=now, payer=payer
        )
        schedule = PullSchedule(
            payer=payer,
            member_id=exchange_request.member_id,
            former_payer_id=exchange_request.former_payer_id,
            consent_id=exchange_request.consent_id,
            kind=kind,
            coverage_end=exchange_request.coverage_end,
            next_run_at=next_run_at,
        )
        opened.append((exchange_request, schedule))
    schedules = PullSchedule.objects.bulk_create([schedule for _, schedule in opened])
    for (exchange_request, _), schedule in zip(opened, schedules, strict=True):
        exchange_request.schedule = schedule
        exchange_request.schedule_run = 0
    ExchangeRequest.objects.for_payer(payer).bulk_update(
        [exchange_request for exchange_request, _ in opened],
        ["schedule", "schedule_run"],
        batch_size=1000,
    )
    return schedules


# --- The scheduler ------------------------------------------------------------------------


def pull_schedules_due(*, now: datetime, limit: int) -> QuerySet[PullSchedule]:
    """Return the live schedules (not paused, not ended) whose next run is due at ``now``,
    the longest waiting first (index ``schedule_due``)."""
    return (
        PullSchedule.objects.across_payers(reason="the scheduler finds due pulls of every payer")
        .filter(ended_at__isnull=True, paused_at__isnull=True, next_run_at__lte=now)
        .order_by("next_run_at")[:limit]
    )


@dataclass(frozen=True)
class PullStarted:
    request_id: int
    payer_id: int


def pull_schedules_run(*, now: datetime | None = None, limit: int = RUN_BATCH) -> list[PullStarted]:
    """Start the run of every schedule due at ``now`` (the hub's clock unless given); return
    the requests opened, committed, for the caller to enqueue.

    A schedule whose consent was withdrawn or has ended, or whose former payer left the hub,
    ends instead; one whose last pull is still under way waits a day (a failed one is not:
    the watermark stayed, so this run asks for what it missed too).
    """
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            pull_schedules_due(now=now, limit=limit)
            .select_for_update(skip_locked=True, of=("self",))
            .select_related("payer", "former_payer", "consent")
            # The consent's FHIR resource is not read here: parsing 500 of them would be
            # most of a run's time (bench/pull_schedules.py).
            .defer("consent__fhir_resource")
        )
        if not due:
            return []
        latest = _latest_pulls(due)
        started: list[ExchangeRequest] = []
        for schedule in due:
            end = _end_reason(schedule, today=timezone.localdate(now))
            last = latest.get(schedule.pk)
            if end is not None:
                _schedule_end(schedule, reason=end, now=now)
            elif PayerStatus.SUSPENDED in (schedule.payer.status, schedule.former_payer.status):
                # Suspended by the hub's team (operator console): no new pull starts; the
                # schedule waits a day at a time, so lifting the suspension resumes it.
                schedule.next_run_at = now + _BUSY_POSTPONE
                schedule.save(update_fields=["next_run_at"])
            elif last is None:
                # Its run 0 was removed with its member's data: nothing left to repeat.
                _schedule_end(schedule, reason=PullScheduleEnd.CONSENT_ENDED, now=now)
            elif last.status in IN_PROGRESS:
                schedule.next_run_at = now + _BUSY_POSTPONE
                schedule.save(update_fields=["next_run_at"])
            else:
                started.append(_pull_start(schedule, last=last, now=now))
    return [PullStarted(r.pk, r.payer_id) for r in started]


def _latest_pulls(schedules: Sequence[PullSchedule]) -> dict[int, ExchangeRequest]:
    """Return each schedule's latest run (a handful a year each, so read them all)."""
    latest: dict[int, ExchangeRequest] = {}
    for payer_id in {s.payer_id for s in schedules}:
        for pull in (
            ExchangeRequest.objects.for_payer(payer_id)
            .filter(schedule__in=[s for s in schedules if s.payer_id == payer_id])
            .order_by("schedule_run")
        ):
            if pull.schedule_id is not None:
                latest[pull.schedule_id] = pull
    return latest


def _end_reason(schedule: PullSchedule, *, today: date) -> str | None:
    consent = schedule.consent
    if consent.status != ConsentStatus.ACTIVE:
        return PullScheduleEnd.CONSENT_WITHDRAWN
    if consent.period_end < today:
        return PullScheduleEnd.CONSENT_ENDED
    # A suspended holder has not left the hub: its schedules wait (pull_schedules_run).
    if schedule.former_payer.status not in (PayerStatus.PARTICIPATING, PayerStatus.SUSPENDED):
        return PullScheduleEnd.HOLDER_GONE
    return None


def _schedule_end(schedule: PullSchedule, *, reason: str, now: datetime) -> None:
    schedule.ended_at, schedule.end_reason, schedule.next_run_at = now, reason, None
    schedule.save(update_fields=["ended_at", "end_reason", "next_run_at"])
    audit_record(
        action="pull_schedule.end",
        obj=schedule,
        payer=schedule.payer_id,
        actor_label=ENGINE,
        changes={"reason": reason},
    )


def _pull_start(schedule: PullSchedule, *, last: ExchangeRequest, now: datetime) -> ExchangeRequest:
    """Open the schedule's next run: a request like its last, asked for what changed since
    the watermark, due a week from now (CMS-0057-F's week, counted from this run)."""
    run = schedule.runs + 1
    pull = ExchangeRequest.objects.create(
        payer=schedule.payer,
        member_id=schedule.member_id,
        former_payer=schedule.former_payer,
        consent=schedule.consent,
        opt_in_record_id=last.opt_in_record_id,
        authorization_mode=AuthorizationMode.BACKEND_SERVICES,
        status=ExchangeStatus.CONSENTED,
        status_changed_at=now,
        opted_in_at=last.opted_in_at,
        due_by=now + timedelta(days=settings.EXCHANGE_DUE_DAYS),
        card_member_id=last.card_member_id,
        coverage_start=last.coverage_start,
        coverage_end=last.coverage_end,
        is_concurrent=last.is_concurrent,
        schedule=schedule,
        schedule_run=run,
        records_since=schedule.watermark,
    )
    since = (
        f"what changed since {date_format(timezone.localtime(schedule.watermark), 'F j, Y')}"
        if schedule.watermark
        else "your records"
    )
    why = "again, as it does every quarter" if schedule.kind == PullKind.REFRESH else "again"
    ExchangeEvent.objects.create(
        payer=schedule.payer,
        exchange_request=pull,
        status=ExchangeStatus.CONSENTED,
        message=f"Your plan asked {schedule.former_payer.name} {why} for {since}.",
    )
    # The run-off (of a previous coverage, or of a concurrent one that has since ended) is
    # the last run.
    final = schedule.kind == PullKind.RUN_OFF or (
        schedule.coverage_end is not None and timezone.localdate(now) > schedule.coverage_end
    )
    schedule.runs = run
    if final:
        schedule.ended_at, schedule.end_reason = now, PullScheduleEnd.RUN_OFF_DONE
        schedule.next_run_at = None
    else:
        schedule.next_run_at = _next_run_at(
            kind=schedule.kind, coverage_end=schedule.coverage_end, after=now, payer=schedule.payer
        )
    schedule.save(update_fields=["runs", "next_run_at", "ended_at", "end_reason"])
    audit_record_many(
        action="exchange_request.create",
        changes_by_object=[
            (
                pull,
                {
                    "former_payer": schedule.former_payer.slug,
                    "schedule": schedule.pk,
                    "run": run,
                    "since": schedule.watermark.isoformat() if schedule.watermark else None,
                },
            )
        ],
        payer=schedule.payer,
        actor_label=ENGINE,
        client_address=None,
    )
    return pull


# --- What moves a schedule ------------------------------------------------------------------


def pull_schedules_delivered(*, requests: Sequence[ExchangeRequest]) -> None:
    """Move the watermark of the schedules whose runs were just delivered to the time their
    records were read as of (never back: runs may be delivered out of order)."""
    now = timezone.now()
    for exchange_request in requests:
        if exchange_request.schedule_id is None or exchange_request.records_as_of is None:
            continue
        PullSchedule.objects.for_payer(exchange_request.payer_id).filter(
            Q(watermark__isnull=True) | Q(watermark__lt=exchange_request.records_as_of),
            pk=exchange_request.schedule_id,
        ).update(watermark=exchange_request.records_as_of, last_delivered_at=now)


def pull_schedules_end_for_consent(*, consent_id: int, payer_id: int) -> int:
    """End the live schedules of a consent the member withdrew; return how many ended."""
    now = timezone.now()
    schedules = list(
        PullSchedule.objects.for_payer(payer_id).filter(
            consent_id=consent_id, ended_at__isnull=True
        )
    )
    for schedule in schedules:
        _schedule_end(schedule, reason=PullScheduleEnd.CONSENT_WITHDRAWN, now=now)
    return len(schedules)


class PullScheduleActionRefused(ValueError):
    """The schedule cannot be paused or resumed as asked; the message says why."""


def pull_schedule_pause(*, payer: Payer, schedule_id: int, actor: User) -> PullSchedule:
    """Pause a live schedule: no run starts until it is resumed."""
    return _pull_schedule_hold(payer=payer, schedule_id=schedule_id, actor=actor, paused=True)


def pull_schedule_resume(*, payer: Payer, schedule_id: int, actor: User) -> PullSchedule:
    """Resume a paused schedule; a run that fell due meanwhile starts at the next beat."""
    return _pull_schedule_hold(payer=payer, schedule_id=schedule_id, actor=actor, paused=False)


def _pull_schedule_hold(
    *, payer: Payer, schedule_id: int, actor: User, paused: bool
) -> PullSchedule:
    """Pause or resume the schedule, claimed by a conditional UPDATE (doing it twice changes
    nothing); audit the change."""
    schedule = get_for_payer_or_404(PullSchedule.objects.all(), payer, pk=schedule_id)
    if schedule.ended_at is not None:
        raise PullScheduleActionRefused("This schedule has ended; it cannot be paused or resumed.")
    changed = (
        PullSchedule.objects.for_payer(payer)
        .filter(pk=schedule.pk, ended_at__isnull=True, paused_at__isnull=paused)
        .update(
            paused_at=timezone.now() if paused else None,
            paused_by=actor.get_username() if paused else "",
        )
    )
    if changed:
        action = "pull_schedule.pause" if paused else "pull_schedule.resume"
        audit_record(action=action, obj=schedule, payer=payer, actor=actor)
    schedule.refresh_from_db()
    return schedule


def pull_settings_update(
    *, payer: Payer, concurrent_refresh_days: int, run_off_days: int, actor: User
) -> None:
    """Set how often a payer's concurrent coverage is pulled again and when the run-off
    comes; each schedule follows them from its next run on."""
    before = {
        "concurrent_refresh_days": payer.concurrent_refresh_days,
        "run_off_days": payer.run_off_days,
    }
    payer.concurrent_refresh_days, payer.run_off_days = concurrent_refresh_days, run_off_days
    payer.full_clean(exclude=["slug", "npi", "payer_identifier"])
    with transaction.atomic():
        payer.save(update_fields=["concurrent_refresh_days", "run_off_days"])
        audit_record(
            action="payer.pull_settings",
            obj=payer,
            payer=payer,
            actor=actor,
            changes={
                "before": before,
                "after": {
                    "concurrent_refresh_days": concurrent_refresh_days,
                    "run_off_days": run_off_days,
                },
            },
        )

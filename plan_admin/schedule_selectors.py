"""What the *Recurring pulls* page reads: the payer's pull schedules, filtered
(exchange/schedules.py keeps them)."""

from collections.abc import Iterator
from dataclasses import dataclass

from django.db.models import QuerySet

from exchange.models import PullSchedule
from hub.models import Payer
from plan_admin.selectors import member_search

SCHEDULE_STATES = [
    ("", "Any state"),
    ("live", "Scheduled"),
    ("paused", "Paused"),
    ("ended", "Ended"),
]


@dataclass(frozen=True)
class ScheduleFilters:
    state: str = ""
    former_payer_id: int | None = None
    member: str = ""


def pull_schedules_filtered(*, payer: Payer, filters: ScheduleFilters) -> QuerySet[PullSchedule]:
    """Return the payer's schedules matching ``filters``: the live ones first, the next due
    first, then the ended ones, the latest ended first."""
    queryset = PullSchedule.objects.for_payer(payer)
    if filters.state == "live":
        queryset = queryset.filter(ended_at__isnull=True, paused_at__isnull=True)
    elif filters.state == "paused":
        queryset = queryset.filter(ended_at__isnull=True, paused_at__isnull=False)
    elif filters.state == "ended":
        queryset = queryset.filter(ended_at__isnull=False)
    if filters.former_payer_id is not None:
        queryset = queryset.filter(former_payer_id=filters.former_payer_id)
    if filters.member:
        queryset = queryset.filter(member_search(filters.member))
    return queryset.select_related("member", "former_payer").order_by(
        "ended_at", "next_run_at", "-pk"
    )


CSV_HEADER = (
    "schedule", "kind", "state", "member username", "member first name", "member last name",
    "former payer", "next pull", "pulls made", "changed since (watermark)", "last delivered",
    "paused at", "paused by", "ended at", "end reason",
)  # fmt: skip


def pull_schedule_state(schedule: PullSchedule) -> str:
    if schedule.ended_at is not None:
        return "ended"
    return "paused" if schedule.paused_at is not None else "live"


def pull_schedules_csv_rows(*, queryset: QuerySet[PullSchedule]) -> Iterator[tuple[object, ...]]:
    """Yield the CSV header, then one row per schedule, reading the database in chunks."""
    yield CSV_HEADER
    for schedule in queryset.iterator(chunk_size=2000):
        member = schedule.member
        yield (
            schedule.pk, schedule.kind, pull_schedule_state(schedule), member.username,
            member.first_name, member.last_name, schedule.former_payer.name, schedule.next_run_at,
            schedule.runs, schedule.watermark, schedule.last_delivered_at, schedule.paused_at,
            schedule.paused_by, schedule.ended_at, schedule.end_reason,
        )  # fmt: skip

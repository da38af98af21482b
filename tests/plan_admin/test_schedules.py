"""The *Recurring pulls* page: North's administrator sees each member's schedules, filters
them by member, payer and state, exports them, pauses and resumes one, and sets how often
concurrent coverage is pulled; South's administrator gets 404 for North's schedules, and a
member gets nothing."""

from collections.abc import Callable
from datetime import timedelta

from django.test import Client
from django.utils import timezone

from exchange.models import ExchangeRequest, PullSchedule
from exchange.schedules import pull_schedules_open
from hub.models import AuditEvent, Payer, User
from tests.conftest import Tenant
from tests.factories import ConsentFactory, ExchangeRequestFactory, PayerFactory
from tests.plan_admin.conftest import admin_url


def _schedule(tenant: Tenant, former: Payer, *, coverage_end: object = None) -> PullSchedule:
    consent = ConsentFactory(member=tenant.member, former_payer=former)
    exchange_request: ExchangeRequest = ExchangeRequestFactory(
        consent=consent, coverage_end=coverage_end
    )
    (schedule,) = pull_schedules_open(requests=[exchange_request])
    return schedule


def test_the_administrator_sees_filters_and_exports_the_schedules(
    north: Tenant, south: Tenant, signed_in: Callable[[User], Client]
) -> None:
    west = PayerFactory(slug="west", name="Western Peaks Health")
    refresh = _schedule(north, south.payer)
    _schedule(north, west, coverage_end=timezone.localdate() - timedelta(days=5))
    client = signed_in(north.admin)

    page = client.get(admin_url("schedule-list")).content.decode()
    by_payer = client.get(admin_url("schedule-list"), {"former_payer": west.pk})
    by_state = client.get(admin_url("schedule-list"), {"state": "paused"})
    wrong = client.get(admin_url("schedule-list"), {"former_payer": "nope"})
    csv = b"".join(client.get(admin_url("schedule-export")).streaming_content).decode()

    assert "2 schedules" in page and "Concurrent coverage, at least quarterly" in page
    assert "Run-off after coverage ended" in page
    assert refresh.next_run_at is not None and refresh.next_run_at.strftime("%Y-%m-%d") in page
    assert "The whole record (nothing delivered yet)" in page
    assert (
        "1 schedule<" in by_payer.content.decode() and "Western Peaks" in by_payer.content.decode()
    )
    assert "0 schedules" in by_state.content.decode()
    assert wrong.status_code == 400 and "no schedule is listed" in wrong.content.decode()
    assert csv.splitlines()[0].startswith("schedule,kind,state")
    assert len(csv.strip().splitlines()) == 3


def test_pause_and_resume_are_audited_and_shown(
    north: Tenant, south: Tenant, signed_in: Callable[[User], Client]
) -> None:
    schedule = _schedule(north, south.payer)
    client = signed_in(north.admin)

    paused = client.post(admin_url("schedule-action", schedule_id=schedule.pk, action="pause"))
    page = client.get(admin_url("schedule-list")).content.decode()
    schedule.refresh_from_db()
    assert paused.status_code == 302 and schedule.paused_by == north.admin.username
    assert "Paused: no pull starts until you resume it." in page and "Resume" in page

    client.post(admin_url("schedule-action", schedule_id=schedule.pk, action="resume"))
    schedule.refresh_from_db()
    assert schedule.paused_at is None
    assert (
        AuditEvent.objects.for_payer(north.payer)
        .filter(action__in=["pull_schedule.pause", "pull_schedule.resume"], actor=north.admin)
        .count()
        == 2
    )
    unknown = client.post(admin_url("schedule-action", schedule_id=schedule.pk, action="delete"))
    assert unknown.status_code == 404


def test_the_refresh_and_run_off_days_are_set_within_the_rule(
    north: Tenant, signed_in: Callable[[User], Client]
) -> None:
    client = signed_in(north.admin)

    too_rare = client.post(
        admin_url("pull-settings-save"), {"concurrent_refresh_days": 120, "run_off_days": 30}
    )
    saved = client.post(
        admin_url("pull-settings-save"), {"concurrent_refresh_days": 60, "run_off_days": 30}
    )

    assert too_rare.status_code == 400
    assert "less than or equal to 92" in too_rare.content.decode()
    assert saved.status_code == 302
    north.payer.refresh_from_db()
    assert (north.payer.concurrent_refresh_days, north.payer.run_off_days) == (60, 30)
    audit = AuditEvent.objects.for_payer(north.payer).get(action="payer.pull_settings")
    assert audit.changes["before"]["concurrent_refresh_days"] == 90


def test_another_payer_s_administrator_and_a_member_get_nothing(
    north: Tenant, south: Tenant, signed_in: Callable[[User], Client]
) -> None:
    schedule = _schedule(north, south.payer)
    south_admin = signed_in(south.admin)
    member = signed_in(north.member)

    assert (
        "0 schedules" in south_admin.get(admin_url("schedule-list", slug="south")).content.decode()
    )
    for client, slug in ((south_admin, "south"), (south_admin, "north"), (member, "north")):
        pause = admin_url("schedule-action", slug=slug, schedule_id=schedule.pk, action="pause")
        assert client.post(pause).status_code in (403, 404)
    assert member.get(admin_url("schedule-list")).status_code in (403, 404)
    schedule.refresh_from_db()
    assert schedule.paused_at is None

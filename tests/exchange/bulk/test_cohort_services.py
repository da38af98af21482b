"""A roster becomes one cohort per former payer, each member with a consent and a request of
their own, all in one transaction; a roster the hub cannot ask in bulk creates nothing."""

import hashlib
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.hashers import is_password_usable
from django.test import Client
from django.utils import timezone

from exchange.bulk import services
from exchange.bulk.roster import Roster, RosterMember, roster_read
from exchange.bulk.services import CohortRefused, cohorts_create
from exchange.consents.resource import POLICY_URI
from exchange.models import (
    AuthorizationMode,
    BulkJobKind,
    Cohort,
    CohortMember,
    Consent,
    ConsentPolicy,
    ExchangeEvent,
    ExchangeRequest,
    ExchangeStatus,
)
from hub.models import AuditEvent, FhirEndpoint, Payer, PayerStatus, Role, User
from tests.conftest import Tenant
from tests.factories import BulkJobFactory, FhirEndpointFactory, PayerFactory, UserFactory

EXAMPLE_CSV = (
    Path(__file__).resolve().parents[3] / "exchange/bulk/roster_example.csv"
).read_bytes()
NAME = "January enrollees"


@pytest.fixture
def south_endpoint(south: Tenant) -> FhirEndpoint:
    return FhirEndpointFactory(payer=south.payer, bulk_match_chunk_size=250)


@pytest.fixture
def west(db: None) -> Payer:
    """A third participating payer, with a FHIR endpoint that takes 100 members at a time."""
    payer = PayerFactory(slug="west", name="Western Peaks Health", npi="1367902453")
    FhirEndpointFactory(payer=payer, bulk_match_chunk_size=100)
    return payer


def _example(north: Tenant) -> Roster:
    return roster_read(
        data=EXAMPLE_CSV, filename="january.csv", new_payer=north.payer, now=timezone.now()
    )


def _create(north: Tenant, roster: Roster) -> list[Cohort]:
    return cohorts_create(
        new_payer=north.payer,
        created_by=north.admin,
        roster=roster,
        name=NAME,
        roster_name="january.csv",
        client_address="192.0.2.7",
    )


def _member(line: int, former_payer: Payer, **changes: Any) -> RosterMember:
    """Return a roster member of North who left ``former_payer`` when North's coverage began."""
    today = timezone.localdate()
    values: dict[str, Any] = {
        "line": line,
        "member_id": f"NSH-{line:06d}",
        "family": "Person",
        "given": ("Pat", "Lee"),
        "birth_date": date(1970, 1, 1) + timedelta(days=line),
        "gender": "female",
        "former_payer": former_payer,
        "former_member_id": f"OLD-{line}",
        "former_coverage_start": date(2020, 1, 1),
        "former_coverage_end": today - timedelta(days=31),
        "new_coverage_start": today - timedelta(days=30),
        "policy": ConsentPolicy.SENSITIVE,
        "opted_in_at": timezone.now() - timedelta(days=40),
    }
    return RosterMember(**{**values, **changes})


def _counts(payer: Payer) -> dict[str, int]:
    return {
        "users": User.objects.filter(payer=payer).count(),
        "consents": Consent.objects.for_payer(payer).count(),
        "requests": ExchangeRequest.objects.for_payer(payer).count(),
        "events": ExchangeEvent.objects.for_payer(payer).count(),
        "cohorts": Cohort.objects.for_payer(payer).count(),
        "cohort members": CohortMember.objects.for_payer(payer).count(),
        "audit events": AuditEvent.objects.for_payer(payer).count(),
    }


def test_the_example_roster_becomes_a_cohort_of_members_new_to_the_hub(
    north: Tenant,
    south: Tenant,
    south_endpoint: FhirEndpoint,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        (cohort,) = _create(north, _example(north))
    assert len(callbacks) == 1  # the engine is handed the cohort only once it is committed
    assert (cohort.payer, cohort.former_payer, cohort.name) == (north.payer, south.payer, NAME)
    assert (cohort.created_by, cohort.roster_name, cohort.roster_format) == (
        north.admin,
        "january.csv",
        "csv",
    )
    assert (cohort.member_count, cohort.chunk_size) == (3, 250)
    members = list(cohort.members.select_related("exchange_request__member"))
    assert [member.line for member in members] == [2, 3, 4]

    patricia = members[0].exchange_request.member
    assert patricia.username == "north-roster-" + hashlib.sha256(b"NSH-100201").hexdigest()[:16]
    assert (patricia.payer, patricia.role, patricia.oidc_subject) == (north.payer, Role.MEMBER, "")
    assert (patricia.first_name, patricia.last_name, patricia.plan_member_id) == (
        "Patricia Ann",
        "Person",
        "NSH-100201",
    )
    assert (patricia.birth_date, patricia.gender) == (date(1974, 12, 25), "female")
    assert not is_password_usable(patricia.password)

    request = members[0].exchange_request
    assert request.status == ExchangeStatus.CONSENTED
    assert request.authorization_mode == AuthorizationMode.BACKEND_SERVICES
    assert request.opted_in_at == datetime(2026, 11, 20, 19, 3, tzinfo=UTC)
    assert (request.card_member_id, request.coverage_start, request.coverage_end) == (
        "SCH-55678",
        date(2021, 1, 1),
        date(2026, 12, 31),
    )
    assert request.consent.member == patricia
    (event,) = request.events.all()
    assert event.status == ExchangeStatus.CONSENTED
    assert event.message == (
        "Your plan asked Southern Cross Health for your records with 2 other members, as you "
        "agreed on November 20, 2026."
    )
    audit = AuditEvent.objects.for_payer(north.payer).get(
        action="exchange_request.create", object_id=str(request.pk)
    )
    assert (audit.actor, audit.client_address) == (north.admin, "192.0.2.7")
    assert audit.changes == {
        "former_payer": "south",
        "policy": "sensitive",
        "cohort": cohort.pk,
        "line": 2,
    }
    cohort_audit = AuditEvent.objects.for_payer(north.payer).get(action="cohort.create")
    assert (cohort_audit.object_id, cohort_audit.actor) == (str(cohort.pk), north.admin)
    assert cohort_audit.changes == {
        "former_payer": "south",
        "members": 3,
        "members_new_to_the_hub": 3,
        "roster_format": "csv",
        "chunk_size": 250,
    }


def test_each_consent_is_published_as_hrex_with_its_own_id(
    north: Tenant, south: Tenant, south_endpoint: FhirEndpoint
) -> None:
    (cohort,) = _create(north, _example(north))
    for member in cohort.members.select_related("exchange_request__consent"):
        consent = member.exchange_request.consent
        resource = consent.fhir_resource
        assert (resource["resourceType"], resource["id"]) == ("Consent", str(consent.pk))
        assert resource["sourceReference"]["reference"].endswith(
            f"/p/north/fhir/Consent/{consent.pk}"
        )
        assert resource["policy"] == [{"uri": POLICY_URI.format(policy=consent.policy)}]
        assert resource["provision"]["period"] == {
            "start": consent.period_start.isoformat(),
            "end": consent.period_end.isoformat(),
        }
        recipient = resource["provision"]["actor"][1]["reference"]["identifier"]
        assert recipient["value"] == north.payer.npi
    policies = [m.exchange_request.consent.policy for m in cohort.members.all()]
    assert policies == ["sensitive", "regular", "sensitive"]


def test_due_dates_and_consent_periods_follow_the_rule(
    north: Tenant, south: Tenant, south_endpoint: FhirEndpoint
) -> None:
    today = timezone.localdate()
    now = timezone.now()
    starts_later = _member(2, south.payer, new_coverage_start=today + timedelta(days=20))
    opted_in_later = _member(3, south.payer, opted_in_at=now - timedelta(days=2))
    concurrent = _member(4, south.payer, former_coverage_end=None)
    long_ago = _member(
        5,
        south.payer,
        new_coverage_start=today - timedelta(days=200),
        opted_in_at=now - timedelta(days=300),
    )
    roster = Roster(format="csv", members=[starts_later, opted_in_later, concurrent, long_ago])
    (cohort,) = _create(north, roster)
    requests = {
        m.line: m.exchange_request
        for m in cohort.members.select_related("exchange_request__consent")
    }
    week = timedelta(days=settings.EXCHANGE_DUE_DAYS)

    def day_starts(day: date) -> datetime:
        return datetime.combine(day, datetime.min.time(), tzinfo=timezone.get_current_timezone())

    # CMS-0057-F: one week after the later of the coverage start and the opt-in.
    assert requests[2].due_by == day_starts(today + timedelta(days=20)) + week
    assert requests[3].due_by == opted_in_later.opted_in_at + week
    assert requests[5].due_by == day_starts(today - timedelta(days=200)) + week
    assert all(request.due_by > request.opted_in_at for request in requests.values())
    # PDex §pdex-208: 90 days after the new plan starts (at least 30 from today), or a year
    # for concurrent coverage.
    periods = {line: (r.consent.period_start, r.consent.period_end) for line, r in requests.items()}
    assert periods == {
        2: (today, today + timedelta(days=110)),
        3: (today, today + timedelta(days=60)),
        4: (today, today + timedelta(days=365)),
        5: (today, today + timedelta(days=30)),
    }
    assert [r.is_concurrent for _, r in sorted(requests.items())] == [False, False, True, False]


def test_two_former_payers_make_two_cohorts_in_one_go(
    north: Tenant, south: Tenant, south_endpoint: FhirEndpoint, west: Payer, monkeypatch: Any,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:  # fmt: skip
    handed: list[tuple[int, int]] = []
    monkeypatch.setattr(
        services, "cohort_advance", SimpleNamespace(delay=lambda *ids: handed.append(ids))
    )
    roster = Roster(
        format="ndjson",
        members=[
            _member(1, south.payer),
            _member(2, west),
            # The same person asked of both former payers is one User.
            _member(3, south.payer, member_id="NSH-000002", birth_date=date(1970, 1, 3)),
        ],
    )
    with django_capture_on_commit_callbacks(execute=True):
        cohorts = _create(north, roster)
    assert [(c.name, c.former_payer, c.member_count, c.chunk_size) for c in cohorts] == [
        (f"{NAME} — Southern Cross Health", south.payer, 2, 250),
        (f"{NAME} — Western Peaks Health", west, 1, 100),
    ]
    assert handed == [(cohorts[0].pk, north.payer.pk), (cohorts[1].pk, north.payer.pk)]
    assert [m.line for m in cohorts[0].members.all()] == [1, 3]
    assert User.objects.filter(payer=north.payer, plan_member_id="NSH-000002").count() == 1
    events = ExchangeEvent.objects.for_payer(north.payer).filter(
        exchange_request__former_payer=west
    )
    (event,) = events
    assert event.message.startswith(
        "Your plan asked Western Peaks Health for your records, as you agreed on "
    )


def test_a_member_the_hub_knows_is_found_by_member_id_and_updated(
    north: Tenant, south: Tenant, south_endpoint: FhirEndpoint
) -> None:
    signed_in = north.member
    signed_in.plan_member_id = "NSH-000001"
    signed_in.save()
    from_a_roster = UserFactory(
        payer=north.payer, role=Role.MEMBER, oidc_subject="", plan_member_id="NSH-000001"
    )
    # The same member id at another payer, or of an administrator, is someone else.
    UserFactory(payer=north.payer, role=Role.PLAN_ADMIN, plan_member_id="NSH-000002")
    users_before = User.objects.count()
    (cohort,) = _create(north, Roster(format="csv", members=[_member(1, south.payer)]))
    assert User.objects.count() == users_before
    signed_in.refresh_from_db()
    assert cohort.members.get().exchange_request.member == signed_in  # who signed in, first
    assert (signed_in.first_name, signed_in.birth_date) == ("Pat Lee", date(1970, 1, 2))
    assert signed_in.oidc_subject and from_a_roster.pk != signed_in.pk
    changes = AuditEvent.objects.for_payer(north.payer).get(action="cohort.create").changes
    assert changes["members_new_to_the_hub"] == 0
    # The same roster again finds the members it created the first time.
    (again,) = _create(north, Roster(format="csv", members=[_member(2, south.payer)]))
    (second,) = _create(north, Roster(format="csv", members=[_member(2, south.payer)]))
    assert (
        again.members.get().exchange_request.member == second.members.get().exchange_request.member
    )


@pytest.mark.parametrize(
    ("arrange", "refusal"),
    [
        (
            lambda south: FhirEndpoint.objects.for_payer(south).delete(),
            "Southern Cross Health has not set up its FHIR endpoint in the hub yet. It is named "
            "on lines 1 and 3.",
        ),
        (
            lambda south: FhirEndpoint.objects.for_payer(south).update(
                offers_backend_services=False, offers_member_authorization=True
            ),
            "Southern Cross Health does not offer payer-to-payer access (SMART Backend Services), "
            "which asking for many members at once needs; it is named on lines 1 and 3.",
        ),
        (
            lambda south: Payer.objects.filter(pk=south.pk).update(status=PayerStatus.ONBOARDING),
            "Southern Cross Health does not take part in the hub yet; it is named on lines 1 "
            "and 3.",
        ),
    ],
)
def test_a_former_payer_the_hub_cannot_ask_in_bulk_refuses_the_roster_and_creates_nothing(
    north: Tenant, south: Tenant, south_endpoint: FhirEndpoint, west: Payer,
    arrange: Callable[[Payer], Any], refusal: str,
) -> None:  # fmt: skip
    roster = Roster(
        format="csv",
        members=[_member(1, south.payer), _member(2, west), _member(3, south.payer)],
    )
    arrange(south.payer)
    south.payer.refresh_from_db()
    before = _counts(north.payer)
    with pytest.raises(CohortRefused) as refused:
        _create(north, roster)
    assert str(refused.value) == refusal
    assert _counts(north.payer) == before


def test_a_failure_part_way_leaves_nothing_behind(
    north: Tenant, south: Tenant, south_endpoint: FhirEndpoint, west: Payer, monkeypatch: Any
) -> None:
    roster = Roster(format="csv", members=[_member(1, south.payer), _member(2, west)])
    real_audit = services.audit_record

    def audit_fails_on_the_second_cohort(**kwargs: Any) -> AuditEvent:
        if kwargs["obj"].former_payer == west:
            raise RuntimeError("the database went away")
        return real_audit(**kwargs)

    monkeypatch.setattr(services, "audit_record", audit_fails_on_the_second_cohort)
    before = _counts(north.payer)
    with pytest.raises(RuntimeError):
        _create(north, roster)
    assert _counts(north.payer) == before


def test_only_an_administrator_of_the_new_payer_makes_its_cohorts(
    north: Tenant, south: Tenant, south_endpoint: FhirEndpoint
) -> None:
    roster = Roster(format="csv", members=[_member(1, south.payer)])
    for someone in (south.admin, north.member):
        with pytest.raises(CohortRefused, match="Only a plan administrator of North Star Health"):
            cohorts_create(
                new_payer=north.payer, created_by=someone, roster=roster, name=NAME, roster_name=""
            )
    with pytest.raises(CohortRefused, match="your own plan"):
        _create(north, Roster(format="csv", members=[_member(1, north.payer)]))
    with pytest.raises(CohortRefused, match="Give the cohort a name"):
        cohorts_create(
            new_payer=north.payer, created_by=None, roster=roster, name=" ", roster_name=""
        )


def test_north_s_cohorts_are_not_south_s(
    north: Tenant, south: Tenant, south_endpoint: FhirEndpoint
) -> None:
    (cohort,) = _create(north, _example(north))
    assert list(Cohort.objects.for_payer(north.payer)) == [cohort]
    assert not Cohort.objects.for_payer(south.payer).exists()
    assert not CohortMember.objects.for_payer(south.payer).exists()
    assert not ExchangeRequest.objects.for_payer(south.payer).exists()
    assert not AuditEvent.objects.for_payer(south.payer).filter(action="cohort.create").exists()


def test_a_thousand_members_take_seconds_and_a_bounded_number_of_queries(
    north: Tenant, south: Tenant, south_endpoint: FhirEndpoint,
    django_assert_max_num_queries: Callable[..., Any],
) -> None:  # fmt: skip
    roster = Roster(format="csv", members=[_member(line, south.payer) for line in range(1, 1001)])
    started = time.perf_counter()
    with django_assert_max_num_queries(40):
        (cohort,) = _create(north, roster)
    elapsed = time.perf_counter() - started
    print(f"cohorts_create: 1,000 members in {elapsed:.2f} s")  # shown with -s
    assert elapsed < 30
    assert cohort.members.count() == 1000
    assert ExchangeEvent.objects.for_payer(north.payer).count() == 1000
    assert (
        AuditEvent.objects.for_payer(north.payer).filter(action="exchange_request.create").count()
        == 1000
    )


def test_a_roster_member_follows_and_withdraws_the_request_in_the_member_portal(
    north: Tenant, south: Tenant, south_endpoint: FhirEndpoint
) -> None:
    """The member's own pages work for a member of a cohort: the request is listed, its page
    tells where it stands, and withdrawing ends it and the consent like any other."""
    (cohort,) = _create(north, _example(north))
    member = CohortMember.objects.for_payer(north.payer).filter(cohort=cohort).first()
    assert member is not None
    request = member.exchange_request
    client = Client()
    client.force_login(request.member)

    listing = client.get("/p/north/me/requests/")
    page = client.get(f"/p/north/me/requests/{request.pk}/")
    withdrawn = client.post(f"/p/north/me/requests/{request.pk}/withdraw/", follow=True)

    assert listing.status_code == 200 and south.payer.name in listing.content.decode()
    assert page.status_code == 200 and south.payer.name in page.content.decode()
    assert withdrawn.status_code == 200
    request.refresh_from_db()
    assert request.status == ExchangeStatus.REVOKED
    assert request.consent.status == "inactive"
    # Another member of the cohort cannot see it.
    other = CohortMember.objects.for_payer(north.payer).filter(cohort=cohort).last()
    assert other is not None and other.exchange_request.member != request.member
    snoop = Client()
    snoop.force_login(other.exchange_request.member)
    assert snoop.get(f"/p/north/me/requests/{request.pk}/").status_code == 404


def test_retrying_a_failed_export_runs_its_members_chunk_again_from_the_match(
    north: Tenant, south: Tenant, south_endpoint: FhirEndpoint
) -> None:
    (cohort,) = _create(north, _example(north))
    match = BulkJobFactory(cohort=cohort, kind=BulkJobKind.MEMBER_MATCH, sequence=4, state="done")
    export = BulkJobFactory(cohort=cohort, kind=BulkJobKind.DATA_EXPORT, sequence=1, state="failed")
    members = CohortMember.objects.for_payer(north.payer).filter(cohort=cohort)
    members.update(match_job=match, export_job=export)
    first = members.order_by("line").first()
    assert first is not None
    ExchangeRequest.objects.for_payer(north.payer).filter(pk=first.exchange_request_id).update(
        status=ExchangeStatus.FAILED, awaits_bulk_job=True
    )

    services.cohort_chunk_retry(
        payer=north.payer, cohort_id=cohort.pk, job_id=export.pk, actor=north.admin
    )

    first.refresh_from_db()
    match.refresh_from_db()
    assert first.exchange_request.status == ExchangeStatus.CONSENTED
    assert first.export_job is None and first.match_outcome == ""
    assert match.state == "waiting" and match.kick_offs == 0
    # Until its match has run again, the chunk cannot be retried a second time.
    with pytest.raises(services.CohortActionRefused, match="Chunk 4 is still running"):
        services.cohort_chunk_retry(
            payer=north.payer, cohort_id=cohort.pk, job_id=match.pk, actor=north.admin
        )

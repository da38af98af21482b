"""Payers in the console: search, detail with identifiers and listing, the lifecycle, and a
suspension that stops new work and says so to the payer's members, administrators and systems."""

import html
from datetime import date, timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from exchange.bulk.roster import Roster
from exchange.bulk.services import CohortRefused, cohorts_create
from exchange.education import HUB_DEFAULT_VERSION
from exchange.enrollment import (
    Enrollee,
    OptInAttestation,
    OptInRefused,
    OtherCoverage,
    opt_in_create,
)
from exchange.models import Cohort, ConsentPolicy, ExchangeRequest, OptInMethod
from exchange.schedules import pull_schedules_open, pull_schedules_run
from hub.models import AuditEvent, FhirEndpoint, Payer, PayerStatus, User
from tests.api.conftest import opt_in_body, south_holds_records, systems, west  # noqa: F401
from tests.api.payer_systems import PayerSystems
from tests.conftest import Tenant
from tests.factories import ConsentFactory, ExchangeRequestFactory
from tests.support.every_payer import rows_of_every_payer
from tests.support.sessions import signed_in

PAYERS = "/operator/hub/payer/"
SUSPENDED = "North Star Health's exchange through the hub is suspended"


def _text(response: Any) -> str:
    return html.unescape(response.content.decode())


def _act(console: Client, action: str, *payers: Payer) -> Any:
    return console.post(
        PAYERS, {"action": action, "_selected_action": [p.pk for p in payers]}, follow=True
    )


def test_payers_are_searched_filtered_and_shown_with_identifiers_and_listing(
    console: Client, olga: User, north: Tenant, south: Tenant
) -> None:
    FhirEndpoint.objects.create(payer=south.payer, base_url="http://127.0.0.1:9/fhir")
    found = console.get(PAYERS, {"q": "1245319599"}).content.decode()
    assert "Southern Cross Health" in found and "North Star Health" not in found
    participating = console.get(PAYERS, {"status__exact": "participating"}).content.decode()
    assert "North Star Health" in participating
    assert (
        "Southern Cross Health"
        not in console.get(PAYERS, {"status__exact": "suspended"}).content.decode()
    )

    detail = console.get(f"{PAYERS}{south.payer.pk}/change/").content.decode()
    assert "1245319599" in detail
    assert (
        "Listed in the directory; FHIR endpoint http://127.0.0.1:9/fhir (waiting for its first probe)."
        in detail
    )
    # Opening a payer's page is a look at its data, recorded in its own audit trail.
    look = AuditEvent.objects.for_payer(south.payer).get(action="operator.look")
    assert look.actor == olga and look.object_type == "hub.Payer"


def test_the_lifecycle_moves_one_step_at_a_time_each_audited(
    console: Client, olga: User, north: Tenant
) -> None:
    newcomer = Payer.objects.create(name="Prairie", slug="prairie", status=PayerStatus.INVITED)
    refused = _act(console, "make_participating", newcomer).content.decode()
    assert "Prairie is invited: it can move to onboarding, not to participating." in refused
    _act(console, "make_onboarding", newcomer)
    _act(console, "make_participating", newcomer)
    newcomer.refresh_from_db()
    assert newcomer.status == PayerStatus.PARTICIPATING
    steps = AuditEvent.objects.for_payer(newcomer).order_by("id")
    assert [(e.action, e.actor) for e in steps] == [
        ("payer.onboarding", olga),
        ("payer.participating", olga),
    ]


def test_a_suspension_stops_a_members_new_request_and_says_why(
    console: Client, olga: User, north: Tenant, south: Tenant
) -> None:
    FhirEndpoint.objects.create(
        payer=south.payer, base_url="http://127.0.0.1:9/fhir", offers_backend_services=True
    )
    _act(console, "suspend", north.payer)
    north.payer.refresh_from_db()
    assert north.payer.status == PayerStatus.SUSPENDED
    event = AuditEvent.objects.for_payer(north.payer).get(action="payer.suspended")
    assert event.actor == olga and event.changes == {"status": ["participating", "suspended"]}

    member = signed_in(north.member)
    assert SUSPENDED in _text(member.get("/p/north/me/"))
    assert SUSPENDED in _text(signed_in(north.admin).get("/p/north/admin/directory/"))
    response = member.post(
        "/p/north/me/requests/new/",
        {
            "former": [south.payer.pk], "policy": "regular", "agree": "on",
            "education_version": HUB_DEFAULT_VERSION,
            f"p{south.payer.pk}-card_member_id": "DH10001235",
            f"p{south.payer.pk}-coverage_start": "2021-01-01",
            f"p{south.payer.pk}-coverage_end": "2025-06-30",
        },
    )  # fmt: skip
    assert response.status_code == 400
    assert SUSPENDED in _text(response)
    assert not rows_of_every_payer(ExchangeRequest).exists()
    # South's member is not told about North.
    assert "suspended" not in _text(signed_in(south.member).get("/p/south/me/"))

    _act(console, "lift_suspension", north.payer)
    north.payer.refresh_from_db()
    assert north.payer.status == PayerStatus.PARTICIPATING
    assert SUSPENDED not in _text(member.get("/p/north/me/"))


@pytest.mark.usefixtures("south_holds_records", "west")
def test_a_suspended_payers_system_cannot_open_an_opt_in(
    console: Client,
    north: Tenant,
    systems: PayerSystems,  # noqa: F811
) -> None:
    client = systems.client(north.payer)  # a token taken before the suspension
    _act(console, "suspend", north.payer)
    response = client.post("/api/v1/opt-ins", opt_in_body())
    assert response.status_code == 401
    assert SUSPENDED in response.json()["detail"]
    assert not rows_of_every_payer(ExchangeRequest).exists()
    # No new token is issued either, with the same sentence.
    with pytest.raises(AssertionError, match="exchange through the hub is suspended"):
        systems.client(north.payer)


def test_the_opt_in_service_itself_refuses_a_suspended_payer(north: Tenant, south: Tenant) -> None:
    """Whatever path reaches it, the enrollment service refuses, naming the suspension,
    and writes nothing."""
    north.payer.status = PayerStatus.SUSPENDED
    north.payer.save()
    with pytest.raises(OptInRefused) as refused:
        opt_in_create(
            new_payer=north.payer,
            enrollee=Enrollee(
                member_id="NSH-1", family="Person", given=("Pat",), birth_date=date(1974, 12, 25),
                gender="female", new_coverage_start=timezone.localdate(),
            ),
            coverages=[
                OtherCoverage(
                    where="previous_payers[0]", former_payer=south.payer, card_member_id="DH1",
                    coverage_start=date(2020, 1, 1), coverage_end=date(2024, 12, 31), concurrent=False,
                )
            ],
            policy=ConsentPolicy.SENSITIVE,
            consent_ends_on=None,
            attestation=OptInAttestation(
                obtained_at=timezone.now(), method=OptInMethod.ENROLLMENT_FORM,
                education_text_version=HUB_DEFAULT_VERSION,
            ),
            actor_label="test",
        )  # fmt: skip
    assert refused.value.problems[0].message.startswith(SUSPENDED)
    assert not rows_of_every_payer(ExchangeRequest).exists()


@pytest.mark.parametrize("suspended", ["north", "south"])
def test_a_suspension_holds_recurring_pulls_and_lifting_it_resumes_them(
    north: Tenant, south: Tenant, suspended: str
) -> None:
    exchange_request: ExchangeRequest = ExchangeRequestFactory(
        consent=ConsentFactory(member=north.member, former_payer=south.payer), coverage_end=None
    )
    (schedule,) = pull_schedules_open(requests=[exchange_request])
    ExchangeRequest.objects.for_payer(north.payer).filter(pk=exchange_request.pk).update(
        status="delivered", records_as_of=timezone.now()
    )
    payer = north.payer if suspended == "north" else south.payer
    payer.status = PayerStatus.SUSPENDED
    payer.save()
    later = timezone.now() + timedelta(days=92)

    assert pull_schedules_run(now=later) == []
    schedule.refresh_from_db()
    assert schedule.ended_at is None and schedule.next_run_at == later + timedelta(days=1)

    payer.status = PayerStatus.PARTICIPATING
    payer.save()
    assert len(pull_schedules_run(now=later + timedelta(days=1))) == 1


def test_a_suspended_payer_s_roster_is_refused_with_the_sentence(north: Tenant) -> None:
    north.payer.status = PayerStatus.SUSPENDED
    north.payer.save()
    with pytest.raises(CohortRefused, match="exchange through the hub is suspended"):
        cohorts_create(
            new_payer=north.payer, created_by=north.admin, roster=Roster(format="csv", members=[]),
            name="January", roster_name="january.csv",
        )  # fmt: skip
    assert not rows_of_every_payer(Cohort).exists()


def test_an_operator_adds_and_edits_a_payer_each_audited(console: Client, olga: User) -> None:
    assert console.get("/operator/").status_code == 200
    added = console.post(
        f"{PAYERS}add/",
        {
            "name": "Lakes Health", "slug": "lakes", "npi": "1558367656", "payer_identifier": "LK1",
            "states": '["MN"]', "plan_types": "[]", "contact_name": "", "contact_email": "",
        },
    )  # fmt: skip
    assert added.status_code == 302, added.content.decode()[:2000]
    lakes = Payer.objects.get(slug="lakes")
    assert lakes.status == PayerStatus.ONBOARDING
    console.post(
        f"{PAYERS}{lakes.pk}/change/",
        {
            "name": "Lakes Health Plan", "slug": "lakes", "npi": "1558367656",
            "payer_identifier": "LK1", "states": '["MN"]', "plan_types": "[]",
            "contact_name": "Lee", "contact_email": "lee@lakes.example",
        },
    )  # fmt: skip
    actions = list(
        AuditEvent.objects.for_payer(lakes).filter(actor=olga).values_list("action", "changes")
    )
    assert any(a == "payer.create" and c["name"] == "Lakes Health" for a, c in actions)
    assert any(a == "payer.update" and c.get("name") == "Lakes Health Plan" for a, c in actions)

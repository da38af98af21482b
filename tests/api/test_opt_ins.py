"""North's enrollment system posts opt-ins: the member, consents, requests on the rule's
clock, the opt-in record and its audit, all or nothing; and withdraws them as the portal does."""

from datetime import date, datetime, time, timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from exchange.education import HUB_DEFAULT_VERSION, member_education_text_publish
from exchange.models import (
    Consent,
    ConsentPolicy,
    ConsentStatus,
    ExchangeEvent,
    ExchangeRequest,
    ExchangeStatus,
    MemberEducationText,
    OptInRecord,
)
from exchange.services import FormerCoverage, exchange_requests_create
from hub.models import AuditEvent, Payer, PayerStatus, Role, User
from tests.api.conftest import opt_in_body
from tests.api.payer_systems import PayerSystems
from tests.conftest import Tenant
from tests.factories import ExchangeRequestFactory, FhirEndpointFactory, PayerFactory

pytestmark = pytest.mark.usefixtures("south_holds_records", "west")
S = ExchangeStatus


def _counts(payer: Payer) -> dict[str, int]:
    return {
        "opt_ins": OptInRecord.objects.for_payer(payer).count(),
        "requests": ExchangeRequest.objects.for_payer(payer).count(),
        "consents": Consent.objects.for_payer(payer).count(),
        "members": User.objects.filter(payer=payer, role=Role.MEMBER).count(),
        "audit": AuditEvent.objects.for_payer(payer).count(),
    }


def test_an_opt_in_opens_one_request_per_other_payer_due_a_week_after_coverage_starts(
    north: Tenant,
    south: Tenant,
    west: Payer,
    systems: PayerSystems,
    django_capture_on_commit_callbacks: Any,
) -> None:
    body = opt_in_body()
    with django_capture_on_commit_callbacks() as enqueued:
        response = systems.client(north.payer).post("/api/v1/opt-ins", body)

    assert response.status_code == 201, response.json()
    answer = response.json()
    opt_in = OptInRecord.objects.for_payer(north.payer).get(pk=answer["id"])
    member = opt_in.member
    # A member new to the hub, to be claimed at the first sign-in (members/sign_in.py).
    assert (member.plan_member_id, member.oidc_subject, member.last_name) == (
        "NSH-000042",
        "",
        "Person",
    )
    assert member.first_name == "Patricia Ann"
    assert not member.has_usable_password()
    assert (opt_in.method, opt_in.education_text_version, opt_in.attested_by) == (
        "enrollment_form", "2026-01", "payer-system:north",
    )  # fmt: skip
    obtained_at = datetime.fromisoformat(body["attestation"]["obtained_at"])
    assert opt_in.obtained_at == obtained_at

    requests = list(ExchangeRequest.objects.for_payer(north.payer).order_by("pk"))
    assert [(r.former_payer, r.is_concurrent, r.status) for r in requests] == [
        (south.payer, False, S.CONSENTED),
        (west, True, S.CONSENTED),
    ]
    # CMS-0057-F: one week after the later of coverage start and opt-in (here: the opt-in).
    coverage_starts = datetime.combine(
        timezone.localdate() - timedelta(days=3), time.min, tzinfo=timezone.get_current_timezone()
    )
    due = max(obtained_at, coverage_starts) + timedelta(days=settings.EXCHANGE_DUE_DAYS)
    assert {r.due_by for r in requests} == {due}
    assert all(r.opt_in_record == opt_in and r.member == member for r in requests)
    assert [r.card_member_id for r in requests] == ["DH10001235", "WP-77"]
    for request in requests:
        consent = request.consent
        assert (consent.policy, consent.status) == (ConsentPolicy.SENSITIVE, ConsentStatus.ACTIVE)
        assert consent.fhir_resource["resourceType"] == "Consent"
        assert (
            ExchangeEvent.objects.for_payer(north.payer).filter(exchange_request=request).count()
            == 1
        )
    assert len(enqueued) == 2  # each request handed to a worker once the opt-in commits

    audit = AuditEvent.objects.for_payer(north.payer)
    created = audit.get(action="opt_in.create")
    assert (created.actor_id, created.actor_label, created.object_id) == (
        None, "payer-system:north", str(opt_in.pk),
    )  # fmt: skip
    assert created.changes["requests"] == [r.pk for r in requests]
    assert created.changes["method"] == "enrollment_form"
    assert [e.actor_label for e in audit.filter(action="exchange_request.create")] == [
        "payer-system:north"
    ] * 2

    assert answer["member_id"] == "NSH-000042"
    assert answer["consent"] == "everything"
    assert [
        (r["id"], r["former_payer"]["slug"], r["status"], r["concurrent"])
        for r in answer["requests"]
    ] == [
        (requests[0].pk, "south", "consented", False),
        (requests[1].pk, "west", "consented", True),
    ]
    assert datetime.fromisoformat(answer["requests"][0]["due_by"]) == due
    assert answer["requests"][0]["links"]["self"].endswith(f"/api/v1/requests/{requests[0].pk}")
    assert answer["links"]["withdraw"].endswith(f"/api/v1/opt-ins/{opt_in.pk}/withdraw")


def test_a_member_known_at_the_plan_is_found_not_made_again(
    north: Tenant, systems: PayerSystems
) -> None:
    north.member.plan_member_id = "NSH-000042"
    north.member.save()
    response = systems.client(north.payer).post("/api/v1/opt-ins", opt_in_body())
    assert response.status_code == 201, response.json()
    assert OptInRecord.objects.for_payer(north.payer).get().member == north.member
    assert User.objects.filter(payer=north.payer, plan_member_id="NSH-000042").count() == 1


def test_the_coverage_start_sets_the_due_date_when_it_comes_after_the_opt_in(
    north: Tenant, systems: PayerSystems
) -> None:
    starts = timezone.localdate() + timedelta(days=20)
    body = opt_in_body(new_coverage={"start": starts.isoformat()})
    response = systems.client(north.payer).post("/api/v1/opt-ins", body)
    assert response.status_code == 201, response.json()
    due = datetime.combine(starts, time.min, tzinfo=timezone.get_current_timezone()) + timedelta(
        days=7
    )
    assert {r.due_by for r in ExchangeRequest.objects.for_payer(north.payer)} == {due}


def _with(path: str, value: Any) -> dict[str, Any]:
    """Return the opt-in body with the value at ``path`` (dots and [index]) replaced, or
    removed when ``value`` is ``...``."""
    body = opt_in_body()
    *parents, last = path.replace("[", ".").replace("]", "").split(".")
    node: Any = body
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    key: Any = int(last) if last.isdigit() else last
    if value is ...:
        del node[key]
    else:
        node[key] = value
    return body


def _days(n: int) -> str:
    return (timezone.localdate() + timedelta(days=n)).isoformat()


BAD_INPUT = [
    ("member.birth_date", ..., "member.birth_date", "required"),
    ("member.gender", "f", "member.gender", "not a valid choice"),
    ("member.given_names", [], "member.given_names", "at least 1"),
    ("previous_payers[0].payer", "9999999995", "previous_payers[0].payer", "No payer with the NPI"),
    ("concurrent_payers[0].payer", "nowhere", "concurrent_payers[0].payer", "No payer with the slug"),
    ("previous_payers[0].coverage_start", _days(10), "previous_payers[0].coverage_start", "starts in the future"),
    ("previous_payers[0].coverage_end", None, "previous_payers[0].coverage_end", "concurrent_payers"),
    ("concurrent_payers[0].coverage_end", _days(-2), "concurrent_payers[0].coverage_end", "previous_payers"),
    ("previous_payers[0].coverage_end", "2018-01-01", "previous_payers[0].coverage_end", "ends before it starts"),
    ("consent.ends_on", _days(-1), "consent.ends_on", "The consent ended on"),
    ("consent.choice", "some", "consent.choice", "not a valid choice"),
    ("attestation.obtained_at", "2026-11-20T14:03:00", "attestation.obtained_at", "UTC offset"),
    pytest.param("attestation.obtained_at", (timezone.now() + timedelta(hours=2)).isoformat(),
                 "attestation.obtained_at", "future", id="attestation.obtained_at-two hours ahead"),
    ("attestation.method", "telepathy", "attestation.method", "not a valid choice"),
    ("concurrent_payers[0].payer", "north", "concurrent_payers[0].payer", "your own plan"),
    ("concurrent_payers[0].payer", "south", "concurrent_payers[0].payer", "named twice"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "value", "field", "says"), BAD_INPUT)
def test_bad_input_gets_a_problem_naming_the_field_and_nothing_is_created(
    north: Tenant, systems: PayerSystems, path: str, value: Any, field: str, says: str
) -> None:
    before = _counts(north.payer)
    response = systems.client(north.payer).post("/api/v1/opt-ins", _with(path, value))
    assert response.status_code == 422, response.json()
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422 and problem["type"].startswith("tag:payer-hub")
    assert problem["title"] and problem["detail"]
    named = [e for e in problem["errors"] if e["field"] == field]
    assert named, problem
    assert says.lower() in named[0]["message"].lower(), problem
    assert _counts(north.payer) == before


def test_no_other_payer_at_all_is_refused(north: Tenant, systems: PayerSystems) -> None:
    response = systems.client(north.payer).post(
        "/api/v1/opt-ins", opt_in_body(previous_payers=[], concurrent_payers=[])
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "previous_payers"


def test_a_payer_outside_the_hub_or_without_payer_to_payer_access_is_refused(
    north: Tenant, systems: PayerSystems
) -> None:
    PayerFactory(slug="east", name="East Health", npi="1558367656", status=PayerStatus.ONBOARDING)
    member_only = PayerFactory(slug="bay", name="Bay Health", status=PayerStatus.PARTICIPATING)
    FhirEndpointFactory(
        payer=member_only, offers_backend_services=False, offers_member_authorization=True
    )
    body = opt_in_body()
    body["concurrent_payers"] = [
        {"payer": "east", "member_id": "E-1", "coverage_start": "2024-01-01"},
        {"payer": "bay", "member_id": "B-1", "coverage_start": "2024-01-01"},
    ]
    before = _counts(north.payer)
    response = systems.client(north.payer).post("/api/v1/opt-ins", body)
    assert response.status_code == 422
    errors = {e["field"]: e["message"] for e in response.json()["errors"]}
    assert "does not take part in the hub yet" in errors["concurrent_payers[0].payer"]
    # Bay asks the member to sign in there: the hub would mail them the link, to no address.
    assert "Bay Health shares records only once the member signs in" in errors["member.email"]
    assert _counts(north.payer) == before


def test_a_duplicate_opt_in_is_refused_while_the_first_is_open(
    north: Tenant, south: Tenant, systems: PayerSystems
) -> None:
    client = systems.client(north.payer)
    first = client.post("/api/v1/opt-ins", opt_in_body())
    assert first.status_code == 201
    before = _counts(north.payer)
    again = client.post("/api/v1/opt-ins", opt_in_body())
    assert again.status_code == 409
    errors = {e["field"]: e["message"] for e in again.json()["errors"]}
    assert set(errors) == {"previous_payers[0].payer", "concurrent_payers[0].payer"}
    assert "already open" in errors["previous_payers[0].payer"]
    assert _counts(north.payer) == before
    # Once withdrawn, the member may opt in again.
    assert client.post(first.json()["links"]["withdraw"]).status_code == 200
    assert client.post("/api/v1/opt-ins", opt_in_body()).status_code == 201


def test_a_body_that_is_not_json_is_a_400_problem(north: Tenant, systems: PayerSystems) -> None:
    response = systems.client(north.payer).post("/api/v1/opt-ins", "{not json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert "JSON" in response.json()["detail"]


def test_withdrawal_moves_the_requests_as_the_members_own_withdrawal_does(
    north: Tenant, systems: PayerSystems
) -> None:
    client = systems.client(north.payer)
    created = client.post("/api/v1/opt-ins", opt_in_body()).json()
    first = ExchangeRequest.objects.for_payer(north.payer).order_by("pk").first()
    # One of them got further: withdrawal ends it wherever it is.
    ExchangeRequest.objects.for_payer(north.payer).filter(pk=first.pk).update(status=S.RETRIEVING)

    response = client.post(created["links"]["withdraw"])

    assert response.status_code == 200, response.json()
    assert response.json()["withdrawn_at"]
    assert [r["status"] for r in response.json()["requests"]] == ["revoked", "revoked"]
    for request in ExchangeRequest.objects.for_payer(north.payer):
        assert (request.status, request.reason_code) == (S.REVOKED, "consent_withdrawn")
        assert request.consent.status == ConsentStatus.INACTIVE
        # The member's timeline reads as when they withdraw in the portal.
        assert request.events.last().message == (
            "You withdrew your consent. Nothing more will be fetched."
        )
    audit = AuditEvent.objects.for_payer(north.payer)
    assert audit.filter(action="consent.withdraw", actor_label="payer-system:north").count() == 2
    assert (
        audit.filter(action="exchange_request.revoke", actor_label="payer-system:north").count()
        == 2
    )
    assert audit.filter(action="opt_in.withdraw").count() == 1
    # Withdrawing again changes nothing.
    again = client.post(created["links"]["withdraw"])
    assert again.status_code == 200
    assert audit.filter(action="opt_in.withdraw").count() == 1


def test_an_opt_in_is_read_back_with_its_requests(north: Tenant, systems: PayerSystems) -> None:
    client = systems.client(north.payer)
    created = client.post("/api/v1/opt-ins", opt_in_body()).json()
    response = client.get(created["links"]["self"])
    assert response.status_code == 200
    assert response.json() == created


def test_another_payers_system_gets_404_for_every_opt_in_read_and_action(
    north: Tenant, south: Tenant, systems: PayerSystems
) -> None:
    created = systems.client(north.payer).post("/api/v1/opt-ins", opt_in_body()).json()
    opt_in_id = created["id"]
    before = _counts(north.payer)
    south_system = systems.client(south.payer)
    for response in (
        south_system.get(f"/api/v1/opt-ins/{opt_in_id}"),
        south_system.post(f"/api/v1/opt-ins/{opt_in_id}/withdraw"),
    ):
        assert response.status_code == 404
        assert response["Content-Type"] == "application/problem+json"
        assert "NSH-000042" not in response.content.decode()
    assert _counts(north.payer) == before
    assert OptInRecord.objects.for_payer(north.payer).get().withdrawn_at is None


def test_an_open_portal_request_of_the_member_counts_as_a_duplicate(
    north: Tenant, south: Tenant, systems: PayerSystems
) -> None:
    north.member.plan_member_id = "NSH-000042"
    north.member.save()
    ExchangeRequestFactory(consent__member=north.member, consent__former_payer=south.payer)
    response = systems.client(north.payer).post("/api/v1/opt-ins", opt_in_body())
    assert response.status_code == 409
    assert [e["field"] for e in response.json()["errors"]] == ["previous_payers[0].payer"]


def test_more_other_payers_than_one_member_can_have_are_refused(
    north: Tenant, systems: PayerSystems
) -> None:
    body = opt_in_body()
    body["previous_payers"] = body["previous_payers"] * 21
    response = systems.client(north.payer).post("/api/v1/opt-ins", body)
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["previous_payers"]


# --- Member education (CMS-0057-F, 42 CFR 422.121(b)) ---------------------------------------


def _publish(tenant: Tenant, version: str = "", *, days_ago: int = 0) -> str:
    text = member_education_text_publish(
        payer=tenant.payer, actor=tenant.admin, title="Your records", body="Why, how.",
        version=version,
    )  # fmt: skip
    if days_ago:
        MemberEducationText.objects.for_payer(tenant.payer).filter(pk=text.pk).update(
            published_at=timezone.now() - timedelta(days=days_ago)
        )
    return text.version


def _without_version() -> dict[str, Any]:
    body = opt_in_body()
    del body["attestation"]["education_text_version"]
    return body


def test_an_opt_in_without_a_version_records_the_text_current_when_it_was_obtained(
    north: Tenant, systems: PayerSystems
) -> None:
    _publish(north, days_ago=3)
    _publish(north)  # after the opt-in was obtained (yesterday): not what the member read
    response = systems.client(north.payer).post("/api/v1/opt-ins", _without_version())
    assert response.status_code == 201, response.json()
    assert response.json()["attestation"]["education_text_version"] == "1"
    assert OptInRecord.objects.for_payer(north.payer).get().education_text_version == "1"
    audit = AuditEvent.objects.for_payer(north.payer).get(action="opt_in.create")
    assert audit.changes["education_text_version"] == "1"


def test_an_opt_in_without_a_version_at_a_payer_that_published_none_records_the_hub_s(
    north: Tenant, systems: PayerSystems
) -> None:
    response = systems.client(north.payer).post("/api/v1/opt-ins", _without_version())
    assert response.status_code == 201, response.json()
    assert response.json()["attestation"]["education_text_version"] == HUB_DEFAULT_VERSION


def test_a_published_version_named_by_the_payer_system_is_recorded(
    north: Tenant, systems: PayerSystems
) -> None:
    _publish(north, "2026-01", days_ago=30)
    _publish(north)
    response = systems.client(north.payer).post("/api/v1/opt-ins", opt_in_body())
    assert response.status_code == 201, response.json()
    assert OptInRecord.objects.for_payer(north.payer).get().education_text_version == "2026-01"


@pytest.mark.parametrize("version", ["2026-02", "S-1"])
def test_a_version_the_payer_never_published_is_a_problem_naming_the_field(
    north: Tenant, south: Tenant, systems: PayerSystems, version: str
) -> None:
    _publish(north, "2026-01")
    _publish(south, "S-1")  # another payer's version is no more North's than an invented one
    before = _counts(north.payer)
    response = systems.client(north.payer).post(
        "/api/v1/opt-ins", _with("attestation.education_text_version", version)
    )
    assert response.status_code == 422, response.json()
    assert response["Content-Type"] == "application/problem+json"
    (error,) = response.json()["errors"]
    assert error["field"] == "attestation.education_text_version"
    assert f"no member-education text of version {version!r}" in error["message"]
    assert "2026-01" in error["message"]
    assert _counts(north.payer) == before


def test_the_api_s_withdrawal_records_the_opt_out_with_the_version_current_then(
    north: Tenant, systems: PayerSystems
) -> None:
    _publish(north, "2026-01", days_ago=30)
    client = systems.client(north.payer)
    created = client.post("/api/v1/opt-ins", opt_in_body()).json()
    assert created["withdrawn_at"] is None
    assert created["withdrawal_education_text_version"] == ""
    _publish(north, "2026-06")

    response = client.post(created["links"]["withdraw"])

    assert response.status_code == 200, response.json()
    answer = response.json()
    assert answer["withdrawn_at"]
    assert answer["attestation"]["education_text_version"] == "2026-01"
    assert answer["withdrawal_education_text_version"] == "2026-06"
    record = OptInRecord.objects.for_payer(north.payer).get()
    assert (record.education_text_version, record.withdrawal_education_text_version) == (
        "2026-01",
        "2026-06",
    )
    # Each consent's withdrawal names it too.
    withdrawals = AuditEvent.objects.for_payer(north.payer).filter(action="consent.withdraw")
    assert [e.changes for e in withdrawals] == [{"education_text_version": "2026-06"}] * 2
    # Withdrawing again changes nothing, the version included.
    _publish(north, "2026-07")
    assert client.post(created["links"]["withdraw"]).json() == answer


def test_a_portal_opt_in_is_read_and_withdrawn_through_the_api_as_well(
    north: Tenant, south: Tenant, systems: PayerSystems
) -> None:
    (exchange_request,) = exchange_requests_create(
        member=north.member,
        coverages=[
            FormerCoverage(
                former_payer=south.payer,
                card_member_id="DH10001235",
                coverage_start=date(2021, 1, 1),
                coverage_end=date(2025, 6, 30),
            )
        ],
        policy=ConsentPolicy.REGULAR,
        education_text_version=HUB_DEFAULT_VERSION,
    )
    opt_in_id = exchange_request.opt_in_record_id
    client = systems.client(north.payer)
    read = client.get(f"/api/v1/opt-ins/{opt_in_id}").json()
    assert read["attestation"]["method"] == "portal"
    assert read["attestation"]["education_text_version"] == HUB_DEFAULT_VERSION
    assert read["attestation"]["attested_by"] == north.member.username
    assert read["new_coverage_start"] is None
    assert [r["id"] for r in read["requests"]] == [exchange_request.pk]
    withdrawn = client.post(f"/api/v1/opt-ins/{opt_in_id}/withdraw").json()
    assert withdrawn["withdrawal_education_text_version"] == HUB_DEFAULT_VERSION
    assert systems.client(south.payer).get(f"/api/v1/opt-ins/{opt_in_id}").status_code == 404

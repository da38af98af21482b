"""North's enrollment system posts cohorts, as JSON or NDJSON: the cohort the portal's roster
upload would make, every member at fault named with nothing recorded, replays creating
nothing, and South's system seeing none of it."""

import json
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from api import views
from api.models import IdempotencyKey
from exchange.bulk.roster import CSV_COLUMNS
from exchange.models import (
    BulkJobKind,
    BulkJobState,
    Cohort,
    CohortMember,
    Consent,
    ExchangeRequest,
)
from exchange.models import ExchangeStatus as S
from hub.models import AuditEvent, FhirEndpoint, Payer, Role, User
from plan_admin.views.cohorts import ROSTER_EXAMPLE
from tests.api.payer_systems import PayerSystemClient, PayerSystems
from tests.conftest import Tenant
from tests.factories import BulkJobFactory, CohortMemberFactory

pytestmark = pytest.mark.usefixtures("south_holds_records")
SOUTH_NPI = "1245319599"


def _example_members() -> list[dict[str, Any]]:
    """The documented example roster's three members (exchange/bulk/roster_example.csv), as
    the API takes them: the former payer named once, not on every member."""
    header, *rows = [line.split(",") for line in ROSTER_EXAMPLE.read_text().splitlines()]
    assert tuple(header) == CSV_COLUMNS
    members = []
    for row in rows:
        member = dict(zip(header, row, strict=True))
        assert member.pop("former_payer_npi") == SOUTH_NPI
        member["former_coverage_end"] = member["former_coverage_end"] or None
        members.append(member)
    return members


def _ndjson(members: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(member) + "\n" for member in members)


def _post_ndjson(client: PayerSystemClient, text: str, query: str, **headers: str) -> Any:
    return Client().post(
        f"/api/v1/cohorts?{query}",
        text,
        content_type="application/x-ndjson",
        **client._headers(headers),
    )


def _what_was_made(cohort: Cohort) -> list[tuple[Any, ...]]:
    """Each member's request and consent, as the engine will act on them, in roster order."""
    return [
        (
            member.exchange_request.member.plan_member_id,
            member.exchange_request.member.first_name,
            member.exchange_request.member.birth_date,
            member.exchange_request.former_payer_id,
            member.exchange_request.card_member_id,
            member.exchange_request.coverage_start,
            member.exchange_request.coverage_end,
            member.exchange_request.is_concurrent,
            member.exchange_request.status,
            member.exchange_request.due_by,
            member.exchange_request.opted_in_at,
            member.exchange_request.consent.policy,
            member.exchange_request.consent.period_end,
        )
        for member in CohortMember.objects.for_payer(cohort.payer)
        .filter(cohort=cohort)
        .select_related("exchange_request__member", "exchange_request__consent")
        .order_by("line")
    ]


def _counts(payer: Payer) -> dict[str, int]:
    return {
        "cohorts": Cohort.objects.for_payer(payer).count(),
        "requests": ExchangeRequest.objects.for_payer(payer).count(),
        "consents": Consent.objects.for_payer(payer).count(),
        "members": User.objects.filter(payer=payer, role=Role.MEMBER).count(),
        "audit": AuditEvent.objects.for_payer(payer).count(),
    }


@pytest.mark.parametrize("posted_as", ["json", "ndjson"])
def test_a_posted_cohort_is_the_one_the_portal_s_upload_makes(
    north: Tenant, south: Tenant, systems: PayerSystems, posted_as: str
) -> None:
    client = systems.client(north.payer)
    if posted_as == "json":
        body = {
            "former_payer": SOUTH_NPI,
            "name": "January enrollees",
            "members": _example_members(),
        }
        response = client.post("/api/v1/cohorts", body)
    else:
        response = _post_ndjson(
            client, _ndjson(_example_members()), "former_payer=south&name=January+enrollees"
        )
    assert response.status_code == 201, response.json()
    answer = response.json()
    posted = Cohort.objects.for_payer(north.payer).get(pk=answer["id"])

    admin = Client()
    admin.force_login(north.admin)
    upload = admin.post(
        reverse("plan_admin:cohort-upload", kwargs={"payer_slug": "north"}),
        {"name": "January enrollees", "roster": SimpleUploadedFile("r.csv", ROSTER_EXAMPLE.read_bytes())},
    )  # fmt: skip
    assert upload.status_code == 302
    uploaded = Cohort.objects.for_payer(north.payer).exclude(pk=posted.pk).get()

    assert _what_was_made(posted) == _what_was_made(uploaded)
    assert len(_what_was_made(posted)) == 3
    # Members are numbered as they were posted: from 1 (a CSV's header is its line 1).
    lines = (
        CohortMember.objects.for_payer(north.payer).order_by("line").values_list("line", flat=True)
    )
    assert list(lines.filter(cohort=posted)) == [1, 2, 3]
    assert list(lines.filter(cohort=uploaded)) == [2, 3, 4]
    same = ("former_payer_id", "name", "status", "member_count", "chunk_size")
    assert [getattr(posted, f) for f in same] == [getattr(uploaded, f) for f in same]
    assert (posted.roster_format, posted.created_by) == (posted_as, None)
    audit = AuditEvent.objects.for_payer(north.payer).get(
        action="cohort.create", object_id=str(posted.pk)
    )
    assert audit.actor_label == "payer-system:north"
    assert answer["former_payer"]["slug"] == "south"
    assert answer["member_count"] == 3
    assert answer["members_by_status"] == {"consented": 3}
    assert answer["jobs"] == []
    assert answer["links"]["self"].endswith(f"/api/v1/cohorts/{posted.pk}")


def test_a_member_at_fault_in_json_is_named_and_nothing_is_recorded(
    north: Tenant, systems: PayerSystems
) -> None:
    before = _counts(north.payer)
    members = _example_members()
    members[1]["birth_date"] = "1988-14-03"
    members[2]["consent"] = "most"
    members[2]["shoe_size"] = "9"
    response = systems.client(north.payer).post(
        "/api/v1/cohorts", {"former_payer": "south", "members": members}
    )
    assert response.status_code == 422
    assert response["Content-Type"] == "application/problem+json"
    errors = {e["field"]: e["message"] for e in response.json()["errors"]}
    assert set(errors) == {"members[1].birth_date", "members[2].consent", "members[2].shoe_size"}
    assert "'1988-14-03' is not a date" in errors["members[1].birth_date"]
    assert _counts(north.payer) == before


def test_a_bad_line_of_ndjson_is_named_by_line_and_field_and_nothing_is_recorded(
    north: Tenant, systems: PayerSystems
) -> None:
    before = _counts(north.payer)
    members = _example_members()
    members[2]["opted_in_at"] = "2026-09-28T16:45:00"
    text = _ndjson(members[:1]) + "\n" + "{not json\n" + _ndjson(members[1:])
    response = _post_ndjson(systems.client(north.payer), text, "former_payer=" + SOUTH_NPI)
    assert response.status_code == 422
    errors = [(e.get("line"), e["field"], e["message"]) for e in response.json()["errors"]]
    assert [(line, field) for line, field, _ in errors] == [(3, "body"), (5, "opted_in_at")]
    assert "Line 3 is not valid JSON" in errors[0][2]
    assert "has no UTC offset" in errors[1][2]
    assert _counts(north.payer) == before


@pytest.mark.parametrize(
    ("former_payer", "field", "words"),
    [
        ("north", "former_payer", "your own plan"),
        ("nobody", "former_payer", "No payer with the slug 'nobody'"),
        ("west", "former_payer", "does not offer payer-to-payer access"),
    ],
)
def test_a_former_payer_the_hub_cannot_ask_in_bulk_is_a_422_naming_it(
    north: Tenant, west: Payer, systems: PayerSystems, former_payer: str, field: str, words: str
) -> None:
    FhirEndpoint.objects.filter(payer=west).update(offers_backend_services=False)
    before = _counts(north.payer)
    response = systems.client(north.payer).post(
        "/api/v1/cohorts", {"former_payer": former_payer, "members": _example_members()}
    )
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["field"] == field
    assert words in error["message"]
    assert _counts(north.payer) == before


def test_a_cohort_posted_again_with_its_key_creates_nothing_new(
    north: Tenant, systems: PayerSystems
) -> None:
    client = systems.client(north.payer)
    text = _ndjson(_example_members())
    first = _post_ndjson(client, text, "former_payer=south", **{"Idempotency-Key": "roster-1"})
    assert first.status_code == 201
    before = _counts(north.payer)
    again = _post_ndjson(client, text, "former_payer=south", **{"Idempotency-Key": "roster-1"})
    assert again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert _counts(north.payer) == before
    # The same lines for another former payer are another request: the key is refused.
    other = _post_ndjson(client, text, "former_payer=north", **{"Idempotency-Key": "roster-1"})
    assert other.status_code == 422
    assert other.json()["errors"][0]["field"] == "Idempotency-Key"
    assert IdempotencyKey.objects.for_payer(north.payer).count() == 1


def test_cohorts_are_listed_newest_first_by_cursor_and_read_with_their_jobs(
    north: Tenant, systems: PayerSystems
) -> None:
    client = systems.client(north.payer)
    ids = []
    for name in ("first", "second", "third"):
        body = {"former_payer": "south", "name": name, "members": _example_members()}
        ids.append(client.post("/api/v1/cohorts", body).json()["id"])
    page = client.get("/api/v1/cohorts", page_size=2).json()
    assert [c["id"] for c in page["results"]] == ids[:0:-1]
    rest = Client().get(page["next"], **client._headers({})).json()
    assert [c["id"] for c in rest["results"]] == ids[:1]
    detail = client.get(f"/api/v1/cohorts/{ids[0]}").json()
    assert (detail["name"], detail["status"], detail["members_by_status"]) == (
        "first", "preparing", {"consented": 3},
    )  # fmt: skip


def test_south_s_system_gets_404_for_north_s_cohorts_and_lists_none(
    north: Tenant, south: Tenant, systems: PayerSystems
) -> None:
    created = systems.client(north.payer).post(
        "/api/v1/cohorts", {"former_payer": "south", "members": _example_members()}
    )
    other = systems.client(south.payer)
    assert other.get(f"/api/v1/cohorts/{created.json()['id']}").status_code == 404
    assert other.get("/api/v1/cohorts").json()["results"] == []


@pytest.mark.parametrize(
    ("method", "scope_missing"), [("GET", "hub/cohorts.read"), ("POST", "hub/cohorts.write")]
)
def test_each_cohort_operation_needs_its_scope(
    north: Tenant, systems: PayerSystems, method: str, scope_missing: str
) -> None:
    others = tuple(
        s
        for s in ("hub/cohorts.read", "hub/cohorts.write", "hub/opt-ins.write")
        if s != scope_missing
    )
    client = systems.client(north.payer, others)
    response = (
        client.get("/api/v1/cohorts") if method == "GET" else client.post("/api/v1/cohorts", {})
    )
    assert response.status_code == 403
    assert scope_missing in response.json()["detail"]
    anonymous = PayerSystemClient(token="")
    assert anonymous.get("/api/v1/cohorts").status_code == 401


def test_a_cohort_tells_its_members_states_and_jobs_and_links_to_its_requests(
    north: Tenant, south: Tenant, systems: PayerSystems
) -> None:
    client = systems.client(north.payer)
    created = client.post(
        "/api/v1/cohorts", {"former_payer": "south", "members": _example_members()}
    ).json()
    cohort = Cohort.objects.for_payer(north.payer).get(pk=created["id"])
    first, *_ = (
        ExchangeRequest.objects.for_payer(north.payer)
        .filter(cohort_member__cohort=cohort)
        .order_by("pk")
    )
    ExchangeRequest.objects.for_payer(north.payer).filter(pk=first.pk).update(status=S.NO_MATCH)
    BulkJobFactory(cohort=cohort, sequence=1, state=BulkJobState.DONE, finished_at=timezone.now())
    BulkJobFactory(
        cohort=cohort,
        kind=BulkJobKind.DATA_EXPORT,
        sequence=1,
        state=BulkJobState.FAILED,
        reason_code="holder_error",
        reason_message="The former payer's export failed.",
    )
    # Another cohort's request, not to be listed with this one's.
    CohortMemberFactory(cohort__payer=north.payer, cohort__former_payer=south.payer)

    detail = client.get(created["links"]["self"]).json()

    assert detail["members_by_status"] == {"consented": 2, "no_match": 1}
    assert [(j["kind"], j["sequence"], j["state"], j["reason"]) for j in detail["jobs"]] == [
        ("data_export", 1, "failed", {"code": "holder_error", "message": "The former payer's export failed."}),
        ("member_match", 1, "done", None),
    ]  # fmt: skip
    listed = Client().get(detail["links"]["requests"], **client._headers({})).json()
    members = CohortMember.objects.for_payer(north.payer).filter(cohort=cohort)
    assert {r["id"] for r in listed["results"]} == {m.exchange_request_id for m in members}
    assert (
        systems.client(south.payer).get(f"/api/v1/requests?cohort={cohort.pk}").json()["results"]
        == []
    )


def test_a_body_too_large_is_a_413_read_no_further(
    north: Tenant, systems: PayerSystems, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "COHORT_MAX_BYTES", 1000)
    before = _counts(north.payer)
    response = systems.client(north.payer).post(
        "/api/v1/cohorts", {"former_payer": "south", "members": _example_members()}
    )
    assert response.status_code == 413
    assert response["Content-Type"] == "application/problem+json"
    assert "post at most 20,000 members at once" in response.json()["detail"]
    assert _counts(north.payer) == before

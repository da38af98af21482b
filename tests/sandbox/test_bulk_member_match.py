"""$bulk-member-match (PDex STU 2.2): the IG's example, result Groups, STU 2.1 output, Group search."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.group import Group

from tests.sandbox.harness import (
    BULK_MEMBER_MATCH_SCOPE,
    BULK_SCOPES,
    MATCH_RESULT_SYSTEM,
    NPI,
    BackendClient,
    RunningSandbox,
    bulk_match_body,
    bulk_result,
    completed,
    current_consent,
    fixture,
    kick_off,
    manifest_resources,
    matched_group,
    member_bundle,
    ndjson_lines,
)

IG_NEW_PLAN_NPI = "0123456789"  # the recipient (IRCP) of the PDex example's consent
OTHER_PAYER_NPI = "1333333336"
MATCH_PARAMETERS = (
    "http://hl7.org/fhir/us/davinci-pdex/StructureDefinition/base-ext-match-parameters"
)
BULK_MATCH = "/Group/$bulk-member-match"


@pytest.fixture(scope="module")
def new_plan(former_payer: RunningSandbox) -> Iterator[httpx.Client]:
    """Act as the PDex example's New Health Plan (NPI 0123456789) with the bulk-match scope."""
    with BackendClient(former_payer, IG_NEW_PLAN_NPI).register().http(BULK_SCOPES) as client:
        yield client


@pytest.fixture(scope="module")
def other_payer(former_payer: RunningSandbox) -> Iterator[httpx.Client]:
    with BackendClient(former_payer, OTHER_PAYER_NPI).register().http(BULK_SCOPES) as client:
        yield client


def ig_request(*, current: bool) -> dict[str, Any]:
    """Return the PDex example request; with current=True its consent period is around today."""
    body = fixture("pdex-multi-member-match-in.json")
    if current:
        consent = next(p for p in body["parameter"][0]["part"] if p["name"] == "Consent")
        today = dt.datetime.now(dt.UTC).date()
        consent["resource"]["provision"]["period"] = {
            "start": (today - dt.timedelta(days=1)).isoformat(),
            "end": (today + dt.timedelta(days=90)).isoformat(),
        }
    return body


def consent_for(npi: str, policy: str = "sensitive") -> dict[str, Any]:
    return current_consent(recipient_npi=npi, policy=policy)


def outcome(response: httpx.Response) -> str:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return " ".join(i.get("diagnostics", "") for i in body["issue"])


def contained_of(group: dict[str, Any], member: dict[str, Any]) -> dict[str, Any]:
    """Return the contained Patient a member's match-parameters extension points to."""
    (extension,) = [e for e in member["entity"]["extension"] if e["url"] == MATCH_PARAMETERS]
    local = extension["valueReference"]["reference"]
    assert local.startswith("#")
    return next(c for c in group["contained"] if c["id"] == local[1:])


def match_one(
    client: httpx.Client, member: dict[str, Any]
) -> tuple[httpx.Response, dict[str, Any]]:
    """Bulk-match one member for the New Health Plan; return the kick-off and the manifest."""
    accepted = kick_off(
        client,
        BULK_MATCH,
        body=bulk_match_body([member_bundle(member, consent=consent_for(IG_NEW_PLAN_NPI))]),
    )
    return accepted, bulk_result(client, accepted)


def test_ig_example_matches_into_a_match_group_shaped_like_the_ig_group(
    former_payer: RunningSandbox, new_plan: httpx.Client
) -> None:
    accepted = kick_off(new_plan, BULK_MATCH, body=ig_request(current=True))
    assert accepted.status_code == 202, accepted.text
    status_url = accepted.headers["Content-Location"]
    assert status_url.startswith(f"{former_payer.fhir}/bulkstatus/")

    manifest = bulk_result(new_plan, accepted)

    assert manifest["requiresAccessToken"] is True
    assert [entry["type"] for entry in manifest["output"]] == ["Group"]
    assert manifest["error"] == []
    assert manifest["output"][0]["count"] == len(
        ndjson_lines(new_plan, manifest["output"][0]["url"])
    )
    (group,) = manifest_resources(new_plan, manifest)
    Group.model_validate(group)
    ig_group = fixture("pdex-group-match.json")
    assert group["code"] == ig_group["code"]
    assert group["type"] == "person" and group["actual"] is True
    (characteristic,) = group["characteristic"]
    assert characteristic["code"] == ig_group["characteristic"][0]["code"]
    assert characteristic["valueReference"]["identifier"] == {
        "system": NPI,
        "value": IG_NEW_PLAN_NPI,
    }
    assert characteristic["exclude"] is False
    assert characteristic["period"]["start"] == dt.datetime.now(dt.UTC).date().isoformat()
    payer = former_payer.member_list()["payer"]
    assert group["managingEntity"]["identifier"] in payer["identifiers"]
    (member,) = group["member"]
    assert member["entity"]["reference"] == "Patient/pat1"
    submitted = ig_request(current=True)["parameter"][0]["part"][0]["resource"]
    assert contained_of(group, member) == submitted  # contained unaltered


def test_ig_example_as_published_is_consent_constrained_because_its_consent_ended(
    new_plan: httpx.Client,
) -> None:
    groups = matched_group(new_plan, fixture("pdex-multi-member-match-in.json")["parameter"])

    assert set(groups) == {"match", "consentconstraint"}
    assert groups["match"]["member"] == []
    (member,) = groups["consentconstraint"]["member"]
    # A constrained member is not named: the entity stays the submitted Patient.
    assert member["entity"]["reference"].startswith("#")
    assert contained_of(groups["consentconstraint"], member)["birthDate"] == "1974-12-25"
    ig_group = fixture("pdex-group-consent-constraint.json")
    assert groups["consentconstraint"]["code"] == ig_group["code"]
    assert groups["consentconstraint"]["meta"]["profile"] == ig_group["meta"]["profile"]


def test_stu_2_1_output_is_one_parameters_and_each_member_lands_in_exactly_one_group(
    former_payer: RunningSandbox, new_plan: httpx.Client
) -> None:
    members = former_payer.member_list()["members"]
    matched, refused_consent = members[3:6], members[6]
    unknown = copy.deepcopy(members[7]) | {"card_number": "NOSUCHCARD"}
    twin = former_payer.member("dup1a")  # duplicate enrollment: two records share the card
    bundles = [member_bundle(m, consent=consent_for(IG_NEW_PLAN_NPI)) for m in matched]
    bundles += [
        member_bundle(refused_consent, consent=consent_for(OTHER_PAYER_NPI)),
        member_bundle(unknown, consent=consent_for(IG_NEW_PLAN_NPI)),
        member_bundle(twin, consent=consent_for(IG_NEW_PLAN_NPI)),
    ]

    accepted = kick_off(
        new_plan,
        BULK_MATCH,
        body=bulk_match_body(bundles),
        params={"_outputFormat": "application/fhir+json"},
    )
    result = bulk_result(new_plan, accepted)

    ig_out = fixture("pdex-multi-member-match-out.json")
    assert result["resourceType"] == "Parameters"
    assert [p["name"] for p in result["parameter"]] == [p["name"] for p in ig_out["parameter"]]
    groups = {p["name"]: p["resource"] for p in result["parameter"]}
    for parameter in ig_out["parameter"]:
        Group.model_validate(groups[parameter["name"]])
        assert groups[parameter["name"]]["code"] == parameter["resource"]["code"]
    references = {
        name: sorted(m["entity"]["reference"] for m in group["member"])
        for name, group in groups.items()
    }
    assert references["MatchedMembers"] == sorted(f"Patient/{m['patient_id']}" for m in matched)
    births = {
        name: sorted(contained_of(group, m)["birthDate"] for m in group["member"])
        for name, group in groups.items()
    }
    assert births["NonMatchedMembers"] == sorted([unknown["birth_date"], twin["birth_date"]])
    assert births["ConsentConstrainedMembers"] == [refused_consent["birth_date"]]
    assert sum(len(g["member"]) for g in groups.values()) == len(bundles)


def test_matched_members_consents_are_kept_for_later_reads(
    former_payer: RunningSandbox, new_plan: httpx.Client
) -> None:
    member = former_payer.member_list()["members"][9]
    groups = matched_group(new_plan, [member_bundle(member, consent=consent_for(IG_NEW_PLAN_NPI))])

    assert groups["match"]["member"][0]["entity"]["reference"] == f"Patient/{member['patient_id']}"
    read = new_plan.get(f"/Patient/{member['patient_id']}")
    assert read.status_code == 200, read.text


def test_group_search_by_each_parameter_finds_only_the_callers_groups(
    former_payer: RunningSandbox, new_plan: httpx.Client, other_payer: httpx.Client
) -> None:
    members = former_payer.member_list()["members"]
    mine = matched_group(
        new_plan,
        [
            member_bundle(members[10], consent=consent_for(IG_NEW_PLAN_NPI)),
            member_bundle(members[11], consent=consent_for(OTHER_PAYER_NPI)),
        ],
    )
    theirs = matched_group(
        other_payer, [member_bundle(members[12], consent=consent_for(OTHER_PAYER_NPI))]
    )
    request_identifier = mine["match"]["identifier"][1]

    def found(client: httpx.Client, **params: str) -> set[str]:
        response = client.get("/Group", params=params)
        assert response.status_code == 200, response.text
        return {e["resource"]["id"] for e in response.json().get("entry", [])}

    by_request = found(
        new_plan, identifier=f"{request_identifier['system']}|{request_identifier['value']}"
    )
    assert by_request == {mine["match"]["id"], mine["consentconstraint"]["id"]}
    assert theirs["match"]["id"] not in found(new_plan, identifier=f"{NPI}|{IG_NEW_PLAN_NPI}")
    assert mine["match"]["id"] in found(new_plan, identifier=f"{NPI}|{IG_NEW_PLAN_NPI}")
    matches = found(new_plan, code=f"{MATCH_RESULT_SYSTEM}|match")
    assert mine["match"]["id"] in matches and mine["consentconstraint"]["id"] not in matches
    constrained = found(new_plan, characteristic="consentconstraint")
    assert mine["consentconstraint"]["id"] in constrained and mine["match"]["id"] not in constrained
    by_requester = found(
        new_plan, **{"characteristic-value-reference:identifier": f"{NPI}|{IG_NEW_PLAN_NPI}"}
    )
    assert {mine["match"]["id"], mine["consentconstraint"]["id"]} <= by_requester
    assert (
        found(new_plan, **{"characteristic-value-reference": f"{NPI}|{OTHER_PAYER_NPI}"}) == set()
    )
    assert found(other_payer) == found(other_payer, code="match") == {theirs["match"]["id"]}


def test_another_clients_token_cannot_read_a_group_or_its_match_job(
    new_plan: httpx.Client, other_payer: httpx.Client, former_payer: RunningSandbox
) -> None:
    member = former_payer.member_list()["members"][13]
    accepted, manifest = match_one(new_plan, member)
    (group,) = manifest_resources(new_plan, manifest)

    assert new_plan.get(f"/Group/{group['id']}").status_code == 200
    assert other_payer.get(f"/Group/{group['id']}").status_code == 404
    assert other_payer.get(accepted.headers["Content-Location"]).status_code == 404
    assert other_payer.get(manifest["output"][0]["url"]).status_code == 404
    assert other_payer.delete(accepted.headers["Content-Location"]).status_code == 404
    assert httpx.get(manifest["output"][0]["url"]).status_code == 401


def test_delete_removes_the_match_job_and_its_files(
    former_payer: RunningSandbox, new_plan: httpx.Client
) -> None:
    member = former_payer.member_list()["members"][14]
    accepted, manifest = match_one(new_plan, member)

    deleted = new_plan.delete(accepted.headers["Content-Location"])

    assert deleted.status_code == 202
    assert new_plan.get(accepted.headers["Content-Location"]).status_code == 404
    assert new_plan.get(manifest["output"][0]["url"]).status_code == 404


def test_scope_is_required_and_the_granular_group_update_scope_suffices(
    former_payer: RunningSandbox,
) -> None:
    client = BackendClient(former_payer, IG_NEW_PLAN_NPI).register()
    with client.http("system/*.rs") as reader:
        refused = kick_off(reader, BULK_MATCH, body=ig_request(current=True))
    assert refused.status_code == 403
    assert BULK_MEMBER_MATCH_SCOPE in outcome(refused)
    granular = f"system/Group.u?code={MATCH_RESULT_SYSTEM}|match"
    granted = client.token_response(f"system/*.rs {granular}").json()
    assert granular in granted["scope"].split()
    with client.http(f"system/*.rs {granular}") as updater:
        accepted = kick_off(updater, BULK_MATCH, body=ig_request(current=True))
        assert accepted.status_code == 202, accepted.text
        assert completed(updater, accepted.headers["Content-Location"]).status_code == 200


def _without_consent() -> dict[str, Any]:
    body = ig_request(current=True)
    body["parameter"][0]["part"] = [
        p for p in body["parameter"][0]["part"] if p["name"] != "Consent"
    ]
    return body


def _twice() -> dict[str, Any]:
    body = ig_request(current=True)
    body["parameter"].append(copy.deepcopy(body["parameter"][0]))
    return body


def _no_birth_date() -> dict[str, Any]:
    body = ig_request(current=True)
    del body["parameter"][0]["part"][0]["resource"]["birthDate"]
    return body


def _coverage_as_patient() -> dict[str, Any]:
    body = ig_request(current=True)
    body["parameter"][0]["part"][1]["resource"]["resourceType"] = "Patient"
    return body


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [
        ({"resourceType": "Patient", "id": "1"}, 400, "must be a Parameters resource, not Patient"),
        ({"resourceType": "Parameters"}, 400, "at least one MemberBundle"),
        (
            {"resourceType": "Parameters", "parameter": [{"name": "MemberPatient"}]},
            400,
            "only MemberBundle",
        ),
        (
            _without_consent(),
            400,
            "MemberBundle 1: $bulk-member-match parameter Consent is required",
        ),
        (_no_birth_date(), 400, "MemberBundle 1: MemberPatient lacks birthDate"),
        (_coverage_as_patient(), 400, "CoverageToMatch must carry a Coverage resource"),
        (_twice(), 422, "MemberBundle 2 submits the same member as MemberBundle 1"),
    ],
)
def test_bad_bodies_get_an_operation_outcome_naming_the_problem(
    new_plan: httpx.Client, body: dict[str, Any], status: int, named: str
) -> None:
    response = kick_off(new_plan, BULK_MATCH, body=body)

    assert response.status_code == status, response.text
    assert named in outcome(response)


def test_malformed_json_missing_prefer_and_unknown_operations_are_refused(
    new_plan: httpx.Client,
) -> None:
    not_json = new_plan.post(
        BULK_MATCH,
        content=b"{not json",
        headers={"Prefer": "respond-async", "Content-Type": "application/fhir+json"},
    )
    assert not_json.status_code == 400 and "not valid JSON" in outcome(not_json)
    synchronous = new_plan.post(
        BULK_MATCH,
        content=json.dumps(ig_request(current=True)),
        headers={"Content-Type": "application/fhir+json"},
    )
    assert synchronous.status_code == 400 and "respond-async" in outcome(synchronous)
    unknown = kick_off(new_plan, "/Group/$member-merge", body=ig_request(current=True))
    assert unknown.status_code == 400 and "$member-merge" in outcome(unknown)
    bad_format = kick_off(
        new_plan, BULK_MATCH, body=ig_request(current=True), params={"_outputFormat": "text/csv"}
    )
    assert bad_format.status_code == 400 and "_outputFormat" in outcome(bad_format)
    search = new_plan.get("/Group", params={"member": "Patient/pat1"})
    assert search.status_code == 400 and "'member'" in outcome(search)


def test_a_member_bundle_that_is_not_valid_fhir_fails_the_job_with_400_and_matches_nobody(
    former_payer: RunningSandbox, new_plan: httpx.Client
) -> None:
    member = former_payer.member_list()["members"][15]
    good = member_bundle(member, consent=consent_for(IG_NEW_PLAN_NPI))
    bad = ig_request(current=True)["parameter"][0]
    bad["part"][0]["resource"]["gender"] = 7

    accepted = kick_off(new_plan, BULK_MATCH, body=bulk_match_body([good, bad]))
    assert accepted.status_code == 202, accepted.text
    answer = completed(new_plan, accepted.headers["Content-Location"])

    assert answer.status_code == 400
    assert "MemberBundle 2: invalid Parameters" in outcome(answer)
    # Checked before any match: the valid member's consent was not kept either.
    assert new_plan.get(f"/Patient/{member['patient_id']}").status_code == 404

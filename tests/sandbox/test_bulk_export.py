"""Group export ($davinci-data-export and $export, Bulk Data STU2): manifest, limits, consent, access."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.sandbox.harness import (
    BULK_SCOPES,
    PAYER_TO_PAYER,
    BackendClient,
    RunningSandbox,
    bulk_result,
    current_consent,
    is_sensitive,
    kick_off,
    manifest_resources,
    matched_group,
    member_bundle,
    ndjson_lines,
)

REGULAR_NPI = "1555555558"
OTHER_NPI = "1666666663"
SHOWCASE = "pat1"  # the HRex example member: sensitive data and prior authorizations of every kind
X12_NOT_CERTIFIED = "A3"


@dataclass
class Matched:
    """A payer whose matched Group holds the showcase member and others under #regular consents."""

    client: httpx.Client
    group: dict[str, Any]
    constrained_group: dict[str, Any]
    revoked_patient: str
    today: dt.date


@pytest.fixture(scope="module")
def matched(former_payer: RunningSandbox) -> Iterator[Matched]:
    members = former_payer.member_list()["members"]
    chosen = [former_payer.member(SHOWCASE), *members[20:25]]
    regular = current_consent(recipient_npi=REGULAR_NPI, policy="regular")
    bundles = [member_bundle(m, consent=regular) for m in chosen]
    bundles.append(member_bundle(members[25], consent=current_consent(recipient_npi="1999999992")))
    with BackendClient(former_payer, REGULAR_NPI).register().http(BULK_SCOPES) as client:
        groups = matched_group(client, bundles)
        assert len(groups["match"]["member"]) == len(chosen)
        # Revoke one member's consent after the match: the export must leave them out.
        revoked = chosen[-1]["patient_id"]
        (consent,) = [
            e["resource"]
            for e in client.get("/Consent", params={"patient": f"Patient/{revoked}"}).json()[
                "entry"
            ]
        ]
        revoke = client.put(
            f"/Consent/{consent['id']}",
            content=json.dumps(consent | {"status": "inactive"}),
            headers={"Content-Type": "application/fhir+json"},
        )
        assert revoke.status_code == 200, revoke.text
        yield Matched(
            client=client,
            group=groups["match"],
            constrained_group=groups["consentconstraint"],
            revoked_patient=revoked,
            today=dt.date.fromisoformat(former_payer.member_list()["payer"]["as_of"]),
        )


def export(
    matched: Matched, operation: str = "$davinci-data-export", **params: str
) -> dict[str, Any]:
    if operation == "$davinci-data-export":
        params.setdefault("exportType", PAYER_TO_PAYER)
    return bulk_result(
        matched.client,
        kick_off(matched.client, f"/Group/{matched.group['id']}/{operation}", params=params),
    )


@pytest.fixture(scope="module")
def payer_to_payer(matched: Matched) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    manifest = export(matched)
    return manifest, manifest_resources(matched.client, manifest)


@pytest.fixture(scope="module")
def everything_export(matched: Matched) -> list[dict[str, Any]]:
    """The same Group through a standard $export: no payer-to-payer limits."""
    return manifest_resources(matched.client, export(matched, "$export"))


def patient_of(resource: dict[str, Any]) -> str | None:
    if resource["resourceType"] == "Patient":
        return str(resource["id"])
    for key in ("patient", "subject", "beneficiary"):
        reference = resource.get(key, {}).get("reference", "")
        if reference.startswith("Patient/"):
            return str(reference.removeprefix("Patient/"))
    return None


def last_service_date(resource: dict[str, Any]) -> str | None:
    """Return the last date of service the test knows how to read, independently of the sandbox."""
    kind = resource["resourceType"]
    if kind == "ExplanationOfBenefit" and resource.get("use") == "claim":
        return str(resource["billablePeriod"]["end"])
    if kind == "Encounter":
        period = resource["period"]
        return str(period.get("end", period["start"]))[:10]
    field = {
        "Observation": "effectiveDateTime",
        "Procedure": "performedDateTime",
        "Immunization": "occurrenceDateTime",
        "MedicationRequest": "authoredOn",
    }.get(kind)
    return str(resource[field])[:10] if field and field in resource else None


def review_codes(prior_authorization: dict[str, Any]) -> set[str]:
    return {
        coding["code"]
        for item in prior_authorization.get("item", [])
        for adjudication in item.get("adjudication", [])
        for extension in adjudication.get("extension", [])
        for part in extension.get("extension", [])
        for coding in part.get("valueCodeableConcept", {}).get("coding", [])
    }


def prior_authorizations(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in resources if r.get("use") == "preauthorization"]


def is_denied_or_drug(prior_authorization: dict[str, Any]) -> bool:
    return prior_authorization["type"]["coding"][0][
        "code"
    ] == "pharmacy" or X12_NOT_CERTIFIED in review_codes(prior_authorization)


def outcome(response: httpx.Response) -> str:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return " ".join(i.get("diagnostics", "") for i in body["issue"])


def test_manifest_follows_bulk_data_and_counts_equal_ndjson_lines(
    matched: Matched, payer_to_payer: tuple[dict[str, Any], list[dict[str, Any]]]
) -> None:
    manifest, _ = payer_to_payer

    assert manifest["requiresAccessToken"] is True
    assert manifest["request"].endswith(
        f"/Group/{matched.group['id']}/$davinci-data-export?exportType=hl7.fhir.us.davinci-pdex%23payertopayer"
    )
    dt.datetime.fromisoformat(manifest["transactionTime"])
    assert {"Patient", "ExplanationOfBenefit", "Condition"} <= {
        o["type"] for o in manifest["output"]
    }
    for entry in manifest["output"] + manifest["error"]:
        lines = ndjson_lines(matched.client, entry["url"])
        assert entry["count"] == len(lines) > 0
        assert {json.loads(line)["resourceType"] for line in lines} == {entry["type"]}


def test_a_member_whose_consent_was_revoked_goes_to_the_error_file_not_the_output(
    matched: Matched, payer_to_payer: tuple[dict[str, Any], list[dict[str, Any]]]
) -> None:
    manifest, resources = payer_to_payer

    (error,) = manifest["error"]
    assert error["type"] == "OperationOutcome"
    (line,) = ndjson_lines(matched.client, error["url"])
    assert f"Patient/{matched.revoked_patient}" in line and "inactive" in line
    exported_patients = {patient_of(r) for r in resources} - {None}
    assert matched.revoked_patient not in exported_patients
    assert SHOWCASE in exported_patients
    assert len(exported_patients) == len(matched.group["member"]) - 1


def test_a_regular_consent_never_yields_a_sensitive_labelled_resource(
    payer_to_payer: tuple[dict[str, Any], list[dict[str, Any]]],
    everything_export: list[dict[str, Any]],
) -> None:
    _, resources = payer_to_payer

    assert any(patient_of(r) == SHOWCASE and r["resourceType"] == "Condition" for r in resources)
    assert [r["id"] for r in resources + everything_export if is_sensitive(r)] == []


def test_payer_to_payer_export_holds_nothing_older_than_five_years(
    matched: Matched,
    payer_to_payer: tuple[dict[str, Any], list[dict[str, Any]]],
    everything_export: list[dict[str, Any]],
) -> None:
    _, resources = payer_to_payer
    cutoff = matched.today.replace(year=matched.today.year - 5).isoformat()

    dated = [(r["id"], d) for r in resources if (d := last_service_date(r)) is not None]
    assert dated, "the export holds dated clinical data"
    assert [(rid, day) for rid, day in dated if day < cutoff] == []
    older = [r["id"] for r in everything_export if (d := last_service_date(r)) and d < cutoff]
    assert older, "a standard $export of the same Group does reach back further"


def test_payer_to_payer_export_holds_no_denied_or_drug_prior_authorization(
    payer_to_payer: tuple[dict[str, Any], list[dict[str, Any]]],
    everything_export: list[dict[str, Any]],
) -> None:
    _, resources = payer_to_payer

    exported = prior_authorizations(resources)
    assert exported, "active and recently changed prior authorizations are exported"
    assert [pa["id"] for pa in exported if is_denied_or_drug(pa)] == []
    assert any(is_denied_or_drug(pa) for pa in prior_authorizations(everything_export))


def test_type_filter_on_service_date_narrows_the_claims(
    matched: Matched, everything_export: list[dict[str, Any]]
) -> None:
    since = (matched.today - dt.timedelta(days=2 * 365)).isoformat()
    manifest = export(
        matched,
        "$export",
        _type="ExplanationOfBenefit",
        _typeFilter=f"ExplanationOfBenefit?service-date=ge{since}",
    )
    claims = manifest_resources(matched.client, manifest)

    assert {o["type"] for o in manifest["output"]} == {"ExplanationOfBenefit"}
    assert claims and all(c["billablePeriod"]["end"] >= since for c in claims)
    unfiltered = [r for r in everything_export if r["resourceType"] == "ExplanationOfBenefit"]
    assert len(claims) < len(unfiltered)


def test_since_and_a_post_parameters_kick_off_select_recent_resources(matched: Matched) -> None:
    since = f"{(matched.today - dt.timedelta(days=365)).isoformat()}T00:00:00Z"
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "exportType", "valueCode": PAYER_TO_PAYER},
            {"name": "_since", "valueInstant": since},
            {"name": "_type", "valueString": "Observation,Encounter"},
        ],
    }
    manifest = bulk_result(
        matched.client,
        kick_off(matched.client, f"/Group/{matched.group['id']}/$davinci-data-export", body=body),
    )
    resources = manifest_resources(matched.client, manifest)

    assert resources
    assert {r["resourceType"] for r in resources} <= {"Observation", "Encounter"}
    assert all(r["meta"]["lastUpdated"] >= since for r in resources)


@pytest.mark.parametrize(
    ("operation", "params", "named"),
    [
        ("$davinci-data-export", {}, "exportType is required"),
        (
            "$davinci-data-export",
            {"exportType": "hl7.fhir.us.davinci-atr#attribution"},
            "not supported",
        ),
        ("$export", {"exportType": PAYER_TO_PAYER}, "does not support parameter 'exportType'"),
        ("$export", {"_elements": "id"}, "'_elements'"),
        ("$export", {"_typeFilter": "Observation?code=1234-5"}, "criterion 'code' on Observation"),
        ("$export", {"_typeFilter": "ExplanationOfBenefit?service-date=2021"}, "YYYY-MM-DD"),
        (
            "$export",
            {"_type": "Patient", "_typeFilter": "ExplanationOfBenefit?type=pharmacy"},
            "names a type this export does not include",
        ),
        ("$export", {"_type": "Spaceship"}, "types not served: Spaceship"),
        ("$export", {"_since": "yesterday"}, "not a FHIR instant"),
        ("$export", {"_outputFormat": "text/csv"}, "_outputFormat"),
    ],
)
def test_bad_kick_offs_get_an_operation_outcome_never_unfiltered_data(
    matched: Matched, operation: str, params: dict[str, str], named: str
) -> None:
    response = kick_off(matched.client, f"/Group/{matched.group['id']}/{operation}", params=params)

    assert response.status_code == 400, response.text
    assert named in outcome(response)


def test_wrong_body_missing_prefer_and_unmatched_groups_are_refused(matched: Matched) -> None:
    path = f"/Group/{matched.group['id']}/$davinci-data-export"
    patient = kick_off(matched.client, path, body={"resourceType": "Patient"})
    assert patient.status_code == 400 and "Parameters" in outcome(patient)
    synchronous = matched.client.get(path, params={"exportType": PAYER_TO_PAYER})
    assert synchronous.status_code == 400 and "respond-async" in outcome(synchronous)
    constrained = kick_off(
        matched.client,
        f"/Group/{matched.constrained_group['id']}/$export",
    )
    assert constrained.status_code == 422 and "only a 'match' Group" in outcome(constrained)
    unknown_group = kick_off(matched.client, "/Group/no-such-group/$export")
    assert unknown_group.status_code == 404


def test_another_clients_token_cannot_start_or_see_the_export(
    former_payer: RunningSandbox,
    matched: Matched,
    payer_to_payer: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    manifest, _ = payer_to_payer
    status = kick_off(matched.client, f"/Group/{matched.group['id']}/$export")
    assert status.status_code == 202

    with BackendClient(former_payer, OTHER_NPI).register().http(BULK_SCOPES) as other:
        started = kick_off(
            other,
            f"/Group/{matched.group['id']}/$davinci-data-export",
            params={"exportType": PAYER_TO_PAYER},
        )
        assert started.status_code == 404
        assert other.get(status.headers["Content-Location"]).status_code == 404
        assert other.delete(status.headers["Content-Location"]).status_code == 404
        for entry in manifest["output"]:
            assert other.get(entry["url"]).status_code == 404
    assert httpx.get(manifest["output"][0]["url"]).status_code == 401
    assert matched.client.get(manifest["output"][0]["url"]).status_code == 200


def test_delete_cancels_the_export_and_removes_its_files(matched: Matched) -> None:
    accepted = kick_off(matched.client, f"/Group/{matched.group['id']}/$export")
    manifest = bulk_result(matched.client, accepted)
    running = kick_off(matched.client, f"/Group/{matched.group['id']}/$export")

    for status_url in (accepted.headers["Content-Location"], running.headers["Content-Location"]):
        deleted = matched.client.delete(status_url)
        assert deleted.status_code == 202
        assert matched.client.get(status_url).status_code == 404
    assert matched.client.get(manifest["output"][0]["url"]).status_code == 404


def test_a_file_resumes_from_a_byte_with_an_open_range(
    matched: Matched, payer_to_payer: tuple[dict[str, Any], list[dict[str, Any]]]
) -> None:
    manifest, _ = payer_to_payer
    url = manifest["output"][0]["url"]
    whole = matched.client.get(url)
    size = len(whole.content)

    rest = matched.client.get(url, headers={"Range": "bytes=10-"})
    beyond = matched.client.get(url, headers={"Range": f"bytes={size}-"})
    suffix = matched.client.get(url, headers={"Range": "bytes=-10"})

    assert whole.headers["Accept-Ranges"] == "bytes"
    assert rest.status_code == 206
    assert rest.headers["Content-Range"] == f"bytes 10-{size - 1}/{size}"
    assert rest.content == whole.content[10:]
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{size}"
    # Only the open range a resuming client sends is served; others get the whole file.
    assert suffix.status_code == 200
    assert suffix.content == whole.content

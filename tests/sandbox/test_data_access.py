"""Reading a matched member's data: $everything paging, searches, consent segmentation, revocation."""

from __future__ import annotations

import collections
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.sandbox.harness import (
    BackendClient,
    RunningSandbox,
    current_consent,
    everything,
    is_sensitive,
    matched_patient,
)

SENSITIVE_CLIENT_NPI = "1111111112"
REGULAR_CLIENT_NPI = "1222222227"
SHOWCASE = "pat1"  # the HRex example member, who has ETH, HIV and PSY data


def showcase_consent(npi: str, policy: str) -> dict[str, Any]:
    return current_consent(recipient_npi=npi, policy=policy)


@pytest.fixture(scope="module")
def everything_client(former_payer: RunningSandbox) -> Iterator[httpx.Client]:
    """A payer that matched the showcase member under a #sensitive (everything) consent."""
    with BackendClient(former_payer, SENSITIVE_CLIENT_NPI).register().http() as client:
        assert (
            matched_patient(
                client,
                former_payer.member(SHOWCASE),
                showcase_consent(SENSITIVE_CLIENT_NPI, "sensitive"),
            )
            == SHOWCASE
        )
        yield client


@pytest.fixture(scope="module")
def regular_client(former_payer: RunningSandbox) -> Iterator[httpx.Client]:
    """A payer that matched the showcase member under a #regular (non-sensitive) consent."""
    with BackendClient(former_payer, REGULAR_CLIENT_NPI).register().http() as client:
        matched_patient(
            client, former_payer.member(SHOWCASE), showcase_consent(REGULAR_CLIENT_NPI, "regular")
        )
        yield client


def keys(resources: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["resourceType"], r["id"]) for r in resources]


def test_everything_pages_return_every_resource_exactly_once(
    everything_client: httpx.Client,
) -> None:
    in_pages_of_37 = keys(everything(everything_client, SHOWCASE, _count="37"))
    in_one_page = keys(everything(everything_client, SHOWCASE, _count="1000"))

    assert len(in_pages_of_37) == len(set(in_pages_of_37)) > 500
    assert in_pages_of_37 == in_one_page
    first = everything_client.get(
        f"/Patient/{SHOWCASE}/$everything", params={"_count": "37"}
    ).json()
    assert first["total"] == len(in_one_page)
    assert in_pages_of_37[0] == ("Patient", SHOWCASE)
    types = {t for t, _ in in_pages_of_37}
    assert {
        "Coverage",
        "ExplanationOfBenefit",
        "Practitioner",
        "Organization",
        "Provenance",
    } <= types


def test_everything_equals_the_union_of_per_type_searches(everything_client: httpx.Client) -> None:
    via_everything = collections.Counter(
        t for t, _ in keys(everything(everything_client, SHOWCASE))
    )
    for resource_type, count in via_everything.items():
        if resource_type in ("Patient", "Practitioner", "Organization"):
            continue
        bundle = everything_client.get(
            f"/{resource_type}", params={"patient": SHOWCASE, "_count": "1000"}
        ).json()
        assert bundle["total"] == count, resource_type


def test_everything_filters_by_type_and_since(everything_client: httpx.Client) -> None:
    all_resources = everything(everything_client, SHOWCASE)
    claims = everything(everything_client, SHOWCASE, _type="ExplanationOfBenefit,Coverage")
    stamps = sorted(r["meta"]["lastUpdated"] for r in all_resources)
    since = stamps[len(stamps) // 2]
    recent = everything(everything_client, SHOWCASE, _since=since)

    assert {r["resourceType"] for r in claims} == {"ExplanationOfBenefit", "Coverage"}
    assert len(claims) == sum(
        r["resourceType"] in ("ExplanationOfBenefit", "Coverage") for r in all_resources
    )
    assert recent and all(r["meta"]["lastUpdated"] >= since for r in recent)
    assert len(recent) == sum(r["meta"]["lastUpdated"] >= since for r in all_resources)


def test_sensitive_consent_includes_labelled_data_and_prior_authorizations(
    everything_client: httpx.Client,
) -> None:
    resources = everything(everything_client, SHOWCASE)
    labels = {s["code"] for r in resources for s in r.get("meta", {}).get("security", [])}
    prior_auths = [r for r in resources if r.get("use") == "preauthorization"]

    assert {"ETH", "HIV", "PSY"} <= labels
    assert {
        r["item"][0]["adjudication"][0]["extension"][0]["extension"][1]["valueCodeableConcept"][
            "coding"
        ][0]["code"]
        for r in prior_auths
    } >= {"A1", "A3", "A4"}
    assert any(r["type"]["coding"][0]["code"] == "pharmacy" for r in prior_auths)


def test_regular_consent_never_yields_a_sensitive_resource(
    everything_client: httpx.Client, regular_client: httpx.Client
) -> None:
    full = everything(everything_client, SHOWCASE)
    regular = everything(regular_client, SHOWCASE, _count="13")
    sensitive_ids = [r for r in full if is_sensitive(r)]

    assert sensitive_ids
    assert not any(is_sensitive(r) for r in regular)
    assert len(regular) < len(full)
    for resource in sensitive_ids[:5]:
        read = regular_client.get(f"/{resource['resourceType']}/{resource['id']}")
        assert read.status_code == 404
    searched = regular_client.get(
        "/Condition", params={"patient": SHOWCASE, "_count": "1000"}
    ).json()
    assert not any(is_sensitive(e["resource"]) for e in searched.get("entry", []))
    text = json.dumps(regular)
    assert "Psychiatry Physician" not in text  # not even the psychiatrist a withheld visit cites


def test_read_and_search_answer_the_matched_member(everything_client: httpx.Client) -> None:
    coverage = everything_client.get("/Coverage", params={"patient": f"Patient/{SHOWCASE}"}).json()
    patient = everything_client.get(f"/Patient/{SHOWCASE}").json()
    labs = everything_client.get(
        "/Observation", params={"patient": SHOWCASE, "category": "laboratory", "_count": "5"}
    ).json()
    by_identifier = everything_client.get(
        "/Patient", params={"identifier": patient["identifier"][0]["value"]}
    ).json()

    assert coverage["entry"][0]["resource"]["subscriberId"] == "DH10001235"
    assert patient["birthDate"] == "1974-12-25"
    assert labs["entry"] and all(
        e["resource"]["category"][0]["coding"][0]["code"] == "laboratory" for e in labs["entry"]
    )
    assert [link["relation"] for link in labs["link"]] == ["self", "next"]
    assert by_identifier["total"] == 1


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        ("/Basic", {}, 404, "not-supported"),
        ("/Condition/pat1-cond-99999", {}, 404, "not-found"),
        ("/Patient/pat1/$export", {}, 400, "not-supported"),
        ("/$graphql", {}, 400, "not-supported"),
        ("/Condition", {"patient": "pat1", "bogus": "1"}, 400, "not-supported"),
        ("/Condition", {}, 400, "required"),
        ("/Patient/pat1/$everything", {"_count": "zero"}, 400, "invalid"),
        ("/Patient/pat1/$everything", {"_type": "Spaceship"}, 400, "not-supported"),
        ("/Patient/pat1/$everything", {"_since": "yesterday"}, 400, "invalid"),
        ("/Patient/pat1/$everything", {"start": "2020-01-01"}, 400, "not-supported"),
    ],
)
def test_bad_requests_get_operation_outcomes(
    everything_client: httpx.Client, path: str, params: dict[str, str], status: int, code: str
) -> None:
    response = everything_client.get(path, params=params)

    assert response.status_code == status
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["code"] == code
    assert body["issue"][0]["diagnostics"]


def test_revoked_consent_is_rechecked_on_the_next_request(former_payer: RunningSandbox) -> None:
    npi = "1333333335"
    member = former_payer.member_list()["members"][8]
    with BackendClient(former_payer, npi).register().http() as client:
        patient_id = matched_patient(client, member, current_consent(recipient_npi=npi))
        assert client.get(f"/Patient/{patient_id}").status_code == 200
        consent_id = _consent_id(client, patient_id)
        consent = client.get(f"/Consent/{consent_id}").json()

        revoked = client.put(
            f"/Consent/{consent_id}",
            json=consent | {"status": "inactive"},
            headers={"Content-Type": "application/fhir+json"},
        )
        after = client.get(f"/Patient/{patient_id}/$everything")

    assert revoked.status_code == 200
    assert after.status_code == 403
    assert "consent was inactive" in after.json()["issue"][0]["diagnostics"]


def _consent_id(client: httpx.Client, patient_id: str) -> str:
    bundle = client.get("/Consent", params={"patient": patient_id}).json()
    assert bundle["total"] == 1
    return str(bundle["entry"][0]["resource"]["id"])


def test_a_visit_added_later_is_all_an_incremental_everything_returns(
    former_payer: RunningSandbox, everything_client: httpx.Client
) -> None:
    before = keys(everything(everything_client, SHOWCASE))
    username = former_payer.member(SHOWCASE)["username"]

    added = httpx.post(f"{former_payer.base}/sandbox/members/{username}/visits")
    unknown = httpx.post(f"{former_payer.base}/sandbox/members/nobody/visits")

    assert added.status_code == 201, added.text
    new = [(r["resourceType"], r["id"]) for r in added.json()["added"]]
    assert {"Encounter", "Observation", "ExplanationOfBenefit"} <= {t for t, _ in new}
    assert not set(new) & set(before)
    since = min(r["lastUpdated"] for r in added.json()["added"])
    assert keys(everything(everything_client, SHOWCASE, _since=since)) == new
    after = keys(everything(everything_client, SHOWCASE))
    assert len(after) == len(before) + len(new)
    assert set(after) == set(before) | set(new)
    assert unknown.status_code == 404
    assert "nobody" in unknown.json()["issue"][0]["diagnostics"]

"""$member-match (HRex STU 1.2): the IG's own examples, 422 cases, brute-force lockout, bad input."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.sandbox.harness import (
    BackendClient,
    RunningSandbox,
    current_consent,
    fixture,
    match_request,
    post_match,
    running_sandbox,
)

HREX_NEW_PLAN_NPI = "0123456789"  # the recipient (IRCP) of the HRex example consent
INFERNO_RECIPIENT_NPI = "0000000001"  # the recipient of the Inferno PDex consent
HREX_TEMP = "http://hl7.org/fhir/us/davinci-hrex/CodeSystem/hrex-temp"


@pytest.fixture(scope="module")
def new_plan(former_payer: RunningSandbox) -> Iterator[httpx.Client]:
    """Act as the HRex example's New Health Plan (NPI 0123456789)."""
    with BackendClient(former_payer, HREX_NEW_PLAN_NPI).register().http() as client:
        yield client


def hrex_request(consent: dict[str, Any] | None = None) -> dict[str, Any]:
    body = fixture("hrex-member-match-in.json")
    if consent is not None:
        for parameter in body["parameter"]:
            if parameter["name"] == "Consent":
                parameter["resource"] = consent
    return body


def outcome_text(response: httpx.Response) -> str:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return " ".join(i.get("diagnostics", "") for i in body["issue"])


def test_hrex_example_with_current_consent_matches_and_answers_like_the_ig(
    new_plan: httpx.Client,
) -> None:
    response = post_match(new_plan, hrex_request(current_consent(recipient_npi=HREX_NEW_PLAN_NPI)))

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    out = {p["name"]: p for p in response.json()["parameter"]}
    ig_out = {p["name"]: p for p in fixture("hrex-member-match-out.json")["parameter"]}
    assert set(out) == set(ig_out) == {"MemberIdentifier", "MemberId"}
    identifier = out["MemberIdentifier"]["valueIdentifier"]
    assert identifier["type"] == ig_out["MemberIdentifier"]["valueIdentifier"]["type"]
    assert identifier["type"]["coding"][0] == {"system": HREX_TEMP, "code": "UMB"}
    assert identifier["value"] == "55678"
    assert out["MemberId"]["valueReference"] == {"reference": "Patient/pat1"}


def test_hrex_example_as_published_is_refused_because_its_consent_period_ended(
    new_plan: httpx.Client,
) -> None:
    response = post_match(new_plan, hrex_request())

    assert response.status_code == 422
    assert "ended 2022-01-31" in outcome_text(response)


def test_inferno_parts_assembled_into_parameters_match_for_the_named_recipient(
    former_payer: RunningSandbox,
) -> None:
    consent = fixture("inferno-consent.json")
    today = dt.datetime.now(dt.UTC).date()
    consent["provision"]["period"] = {
        "start": "2022-01-01",
        "end": (today + dt.timedelta(days=30)).isoformat(),
    }
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "MemberPatient", "resource": fixture("inferno-member_patient.json")},
            {"name": "CoverageToMatch", "resource": fixture("inferno-coverage_to_match.json")},
            {"name": "CoverageToLink", "resource": fixture("inferno-coverage_to_link.json")},
            {"name": "Consent", "resource": consent},
        ],
    }
    with BackendClient(former_payer, INFERNO_RECIPIENT_NPI).register().http() as recipient:
        assert post_match(recipient, body).status_code == 200
    with BackendClient(former_payer, "1999999992").register().http() as bystander:
        refused = post_match(bystander, body)
    assert refused.status_code == 422
    assert "recipient" in outcome_text(refused)


def test_consent_naming_another_payer_as_recipient_is_refused(new_plan: httpx.Client) -> None:
    response = post_match(new_plan, hrex_request(current_consent(recipient_npi="1888888888")))

    assert response.status_code == 422
    assert "recipient (IRCP) is not the requesting client's organization" in outcome_text(response)


def test_consent_whose_period_has_not_started_is_refused(new_plan: httpx.Client) -> None:
    today = dt.datetime.now(dt.UTC).date()
    consent = current_consent(
        recipient_npi=HREX_NEW_PLAN_NPI,
        start=today + dt.timedelta(days=10),
        end=today + dt.timedelta(days=40),
    )
    response = post_match(new_plan, hrex_request(consent))

    assert response.status_code == 422
    assert "in the future" in outcome_text(response)


def test_unknown_member_is_422_not_found(new_plan: httpx.Client) -> None:
    body = hrex_request(current_consent(recipient_npi=HREX_NEW_PLAN_NPI))
    body["parameter"][0]["resource"]["birthDate"] = "1974-12-24"

    response = post_match(new_plan, body)

    assert response.status_code == 422
    assert response.json()["issue"][0]["code"] == "not-found"


def test_duplicate_enrollment_is_422_multiple_matches(
    former_payer: RunningSandbox, new_plan: httpx.Client
) -> None:
    twin = former_payer.member("dup1a")
    response = post_match(
        new_plan, match_request(twin, consent=current_consent(recipient_npi=HREX_NEW_PLAN_NPI))
    )

    assert response.status_code == 422
    assert response.json()["issue"][0]["code"] == "multiple-matches"


def test_guessing_card_numbers_locks_the_demographics_out(
    former_payer: RunningSandbox, new_plan: httpx.Client
) -> None:
    member = former_payer.member_list()["members"][5]
    consent = current_consent(recipient_npi=HREX_NEW_PLAN_NPI)
    for guess in range(5):
        wrong = post_match(new_plan, match_request(member, consent=consent, card=f"GUESS{guess}"))
        assert wrong.status_code == 422

    locked = post_match(new_plan, match_request(member, consent=consent))

    assert locked.status_code == 429
    assert int(locked.headers["Retry-After"]) > 0
    assert locked.json()["issue"][0]["code"] == "throttled"
    other = former_payer.member_list()["members"][6]
    assert post_match(new_plan, match_request(other, consent=consent)).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        (b"{not json", 400, "not valid JSON"),
        (json.dumps({"resourceType": "Patient"}).encode(), 400, "must be a Parameters resource"),
        (
            json.dumps(
                {
                    "resourceType": "Parameters",
                    "parameter": [
                        {
                            "name": "MemberPatient",
                            "resource": {"resourceType": "Patient", "gender": "female"},
                        }
                    ],
                }
            ).encode(),
            400,
            "CoverageToMatch is required",
        ),
        (
            json.dumps(
                {
                    "resourceType": "Parameters",
                    "parameter": [
                        {"name": "MemberPatient", "resource": {"resourceType": "Coverage"}}
                    ],
                }
            ).encode(),
            400,
            "MemberPatient must carry a Patient",
        ),
        (
            json.dumps(
                {
                    "resourceType": "Parameters",
                    "parameter": [
                        {
                            "name": "MemberPatient",
                            "resource": {"resourceType": "Patient", "gender": 7},
                        }
                    ],
                }
            ).encode(),
            400,
            "invalid Parameters",
        ),
    ],
)
def test_bad_requests_get_an_operation_outcome(
    new_plan: httpx.Client, body: bytes, status: int, expected: str
) -> None:
    response = new_plan.post(
        "/Patient/$member-match", content=body, headers={"Content-Type": "application/fhir+json"}
    )

    assert response.status_code == status
    assert expected in outcome_text(response)


def test_demographics_missing_from_member_patient_are_named(new_plan: httpx.Client) -> None:
    body = hrex_request(current_consent(recipient_npi=HREX_NEW_PLAN_NPI))
    del body["parameter"][0]["resource"]["birthDate"]

    response = post_match(new_plan, body)

    assert response.status_code == 400
    assert "birthDate" in outcome_text(response)


def test_member_match_without_a_token_is_401(former_payer: RunningSandbox) -> None:
    response = httpx.post(
        f"{former_payer.fhir}/Patient/$member-match",
        json=hrex_request(),
        headers={"Content-Type": "application/fhir+json"},
    )

    assert response.status_code == 401
    assert response.json()["resourceType"] == "OperationOutcome"


def test_regular_consent_is_refused_by_a_payer_that_cannot_segment() -> None:
    with (
        running_sandbox("Unsegmented Plan", "--members", "5", "--no-segmentation") as payer,
        BackendClient(payer, HREX_NEW_PLAN_NPI).register().http() as client,
    ):
        regular = current_consent(recipient_npi=HREX_NEW_PLAN_NPI, policy="regular")
        sensitive = copy.deepcopy(regular)
        sensitive["policy"][0]["uri"] = sensitive["policy"][0]["uri"].replace(
            "#regular", "#sensitive"
        )
        refused = post_match(client, hrex_request(regular))
        accepted = post_match(client, hrex_request(sensitive))

    assert refused.status_code == 422
    assert "cannot honour a #regular consent" in outcome_text(refused)
    assert accepted.status_code == 200

"""The data generator, in process: valid FHIR R4B, realistic content, deterministic, fast."""

from __future__ import annotations

import collections
import datetime as dt
import time
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from sandbox.data.generator import EOB_PROFILES, PRIOR_AUTH_PROFILE, member_resources
from sandbox.data.population import Population
from sandbox.organizations import NPI_SYSTEM, npi_check_digit, payer_identity

AS_OF = dt.date(2026, 11, 23)
SEED = "generator-tests"


@pytest.fixture(scope="module")
def population() -> Population:
    return Population(identity=payer_identity("Acme Health"), seed=SEED, size=40, as_of=AS_OF)


def history(population: Population, index: int) -> list[dict[str, Any]]:
    return member_resources(
        identity=population.identity, member=population.members[index], seed=SEED, as_of=AS_OF
    )


def test_every_generated_resource_parses_with_fhir_resources_r4b(population: Population) -> None:
    directory_and_members = [history(population, i) for i in range(0, 40, 3)]
    checked = 0
    for resources in directory_and_members:
        for resource in resources:
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
            checked += 1

    assert checked > 1000


def test_histories_span_more_than_five_years_of_claims_and_clinical_data(
    population: Population,
) -> None:
    resources = history(population, 0)  # the showcase member, covered seven years
    claim_dates = sorted(
        r["billablePeriod"]["start"]
        for r in resources
        if r["resourceType"] == "ExplanationOfBenefit" and r["use"] == "claim"
    )
    encounters = [r for r in resources if r["resourceType"] == "Encounter"]

    assert dt.date.fromisoformat(claim_dates[0]) < AS_OF - dt.timedelta(days=5 * 365)
    assert dt.date.fromisoformat(encounters[0]["period"]["start"][:10]) < AS_OF - dt.timedelta(
        days=5 * 365
    )
    assert all(r["meta"]["lastUpdated"][:10] <= AS_OF.isoformat() for r in resources)


def test_claims_cover_the_five_carin_types_with_financial_detail(population: Population) -> None:
    claims = [
        r
        for i in range(10)
        for r in history(population, i)
        if r["resourceType"] == "ExplanationOfBenefit" and r["use"] == "claim"
    ]
    profiles = {r["meta"]["profile"][0] for r in claims}

    assert profiles == set(EOB_PROFILES.values())
    for claim in claims:
        assert claim["payment"]["amount"]["value"] >= 0
        totals = {t["category"]["coding"][0]["code"]: t["amount"]["value"] for t in claim["total"]}
        assert totals["submitted"] >= totals["eligible"] >= totals["benefit"]
        assert round(totals["eligible"] - totals["memberliability"], 2) == pytest.approx(
            totals["benefit"], abs=0.05
        )


def test_prior_authorizations_come_in_every_status_including_denied_and_drug(
    population: Population,
) -> None:
    prior_auths = [
        r
        for r in history(population, 0)
        if r["resourceType"] == "ExplanationOfBenefit" and r["use"] == "preauthorization"
    ]
    actions = collections.Counter(
        r["item"][0]["adjudication"][0]["extension"][0]["extension"][1]["valueCodeableConcept"][
            "coding"
        ][0]["code"]
        for r in prior_auths
    )

    assert all(r["meta"]["profile"] == [PRIOR_AUTH_PROFILE] for r in prior_auths)
    assert {"A1", "A2", "A3", "A4"} <= set(actions)
    assert {r["outcome"] for r in prior_auths} >= {"complete", "queued", "partial"}
    assert "cancelled" in {r["status"] for r in prior_auths}
    assert {r["type"]["coding"][0]["code"] for r in prior_auths} >= {"pharmacy", "professional"}


def test_sensitive_resources_carry_v3_actcode_labels(population: Population) -> None:
    resources = history(population, 0)
    labelled = [r for r in resources if r["meta"].get("security")]
    hiv_condition = next(
        r
        for r in resources
        if r["resourceType"] == "Condition" and r["code"]["coding"][1]["code"] == "B20"
    )

    assert {s["code"] for r in labelled for s in r["meta"]["security"]} >= {
        "ETH",
        "HIV",
        "PSY",
        "R",
    }
    assert {
        "Condition",
        "Encounter",
        "ExplanationOfBenefit",
        "MedicationRequest",
        "DocumentReference",
    } <= {r["resourceType"] for r in labelled}
    assert hiv_condition["meta"]["security"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
        "code": "HIV",
        "display": "HIV/AIDS information sensitivity",
    }


def test_code_systems_are_the_real_ones(population: Population) -> None:
    systems = {c["system"] for i in range(8) for r in history(population, i) for c in _codings(r)}

    assert {
        "http://hl7.org/fhir/sid/icd-10-cm",
        "http://snomed.info/sct",
        "http://loinc.org",
        "http://www.ama-assn.org/go/cpt",
        "http://www.nlm.nih.gov/research/umls/rxnorm",
        "http://hl7.org/fhir/sid/ndc",
        "http://hl7.org/fhir/sid/cvx",
    } <= systems


def _codings(node: Any) -> list[dict[str, Any]]:
    found = []
    if isinstance(node, dict):
        if "system" in node and "code" in node:
            found.append(node)
        for value in node.values():
            found += _codings(value)
    elif isinstance(node, list):
        for item in node:
            found += _codings(item)
    return found


def test_same_seed_gives_identical_data_and_ids_lead_back_to_the_member(
    population: Population,
) -> None:
    again = Population(identity=payer_identity("Acme Health"), seed=SEED, size=40, as_of=AS_OF)

    assert history(population, 7) == member_resources(
        identity=again.identity, member=again.members[7], seed=SEED, as_of=AS_OF
    )
    patient_id = population.members[7].patient_id
    assert all(
        r["id"] == patient_id or r["id"].rsplit("-", 2)[0] == patient_id
        for r in history(population, 7)
    )
    assert len({r["id"] for r in history(population, 7)}) == len(history(population, 7))


def test_coverage_resource_period_is_the_members_coverage(population: Population) -> None:
    for index in range(3, 15):
        member = population.members[index]
        coverage = next(r for r in history(population, index) if r["resourceType"] == "Coverage")
        assert coverage["period"]["start"] == member.coverage_start.isoformat()
        assert coverage["period"].get("end") == (
            member.coverage_end.isoformat() if member.coverage_end else None
        )
        assert coverage["subscriberId"] == member.card_number


def test_organization_identifiers_derive_from_the_name() -> None:
    acme, again, other = (
        payer_identity("Acme Health"),
        payer_identity("Acme Health"),
        payer_identity("Other"),
    )

    assert acme == again and acme.npi != other.npi
    assert acme.npi[-1] == npi_check_digit(acme.npi[:9]) and len(acme.npi) == 10
    assert acme.identifiers()[0] == {"system": NPI_SYSTEM, "value": acme.npi}
    assert npi_check_digit("123456789") == "3"  # CMS's published example NPI 1234567893


def test_ten_thousand_members_are_indexed_in_a_few_seconds() -> None:
    started = time.monotonic()
    big = Population(identity=payer_identity("Big Plan"), seed=SEED, size=10_000, as_of=AS_OF)

    assert len(big.members) == 10_000
    assert time.monotonic() - started < 5
    assert len({m.patient_id for m in big.members}) == 10_000
    assert len({m.username for m in big.members}) == 10_000

"""Claim EOBs of the five CARIN types leave in their non-financial (Basis) view, still whole."""

import json
from typing import Any

import pytest
from fhir.resources.R4B.explanationofbenefit import ExplanationOfBenefit

from exchange.models import ConsentPolicy
from exchange.screening.decision import Kept, resource_screen
from exchange.screening.non_financial_claims import BASIS_PROFILES, claim_reduce_to_non_financial
from exchange.screening.structural_validation import structural_problems
from tests.exchange.screening.support import SAMPLES_AS_OF, sample, sample_names

CLAIM_TYPES = sample_names("EOB-")
CLINICAL_ELEMENTS = (
    "identifier",
    "status",
    "type",
    "use",
    "patient",
    "billablePeriod",
    "created",
    "insurer",
    "provider",
    "outcome",
    "careTeam",
    "supportingInfo",
    "insurance",
)


def _keys_anywhere(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {key for value in node.values() for key in _keys_anywhere(value)}
    if isinstance(node, list):
        return {key for value in node for key in _keys_anywhere(value)}
    return set()


def test_the_samples_cover_the_five_carin_claim_types() -> None:
    assert CLAIM_TYPES == [
        "EOB-inpatient",
        "EOB-oral",
        "EOB-outpatient",
        "EOB-pharmacy",
        "EOB-professional",
    ]


@pytest.mark.parametrize("name", CLAIM_TYPES)
def test_payment_totals_and_every_amount_are_gone(name: str) -> None:
    claim = sample(name)
    assert {"payment", "total", "amount"} <= _keys_anywhere(claim)  # the sandbox sends them

    assert claim_reduce_to_non_financial(claim)

    assert not {"payment", "total", "benefitBalance", "amount", "unitPrice", "net"} & (
        _keys_anywhere(claim)
    )
    assert "USD" not in json.dumps(claim)


@pytest.mark.parametrize("name", CLAIM_TYPES)
def test_the_clinical_and_service_content_stays(name: str) -> None:
    original = sample(name)
    claim = sample(name)
    claim_reduce_to_non_financial(claim)

    for element in CLINICAL_ELEMENTS:
        assert claim[element] == original[element]
    assert claim.get("diagnosis") == original.get("diagnosis")
    for kept, line in zip(claim["item"], original["item"], strict=True):
        assert kept["productOrService"] == line["productOrService"]
        assert kept["servicedDate"] == line["servicedDate"]
        assert kept.get("quantity") == line.get("quantity")
    # The network status is an adjudication without money: it stays.
    assert claim.get("adjudication") == original.get("adjudication")


@pytest.mark.parametrize("name", CLAIM_TYPES)
def test_the_reduced_claim_names_its_basis_profile_and_is_still_valid(name: str) -> None:
    claim = sample(name)
    claim_reduce_to_non_financial(claim)

    assert claim["meta"]["profile"][0] in BASIS_PROFILES.values()
    assert claim["meta"]["profile"][0].endswith("-Basis")
    assert structural_problems(claim) == []
    ExplanationOfBenefit.model_validate(claim)


def test_reason_and_value_adjudications_stay_and_money_categories_lose_their_value() -> None:
    claim = sample("EOB-professional")
    denial = {
        "category": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/adjudication",
                    "code": "denialreason",
                }
            ]
        },
        "reason": {
            "coding": [
                {"system": "https://x12.org/codes/claim-adjustment-reason-codes", "code": "45"}
            ]
        },
        "amount": {"value": 12.5, "currency": "USD"},
    }
    rate = {
        "category": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/adjudication",
                    "code": "eligpercent",
                }
            ]
        },
        "value": 80,
    }
    units = {
        "category": {
            "coding": [
                {
                    "system": "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBAdjudicationDiscriminator",
                    "code": "allowedunits",
                }
            ]
        },
        "value": 2,
    }
    claim["item"][0]["adjudication"] = [denial, rate, units]
    claim["item"][0]["net"] = {"value": 100, "currency": "USD"}

    claim_reduce_to_non_financial(claim)

    assert claim["item"][0]["adjudication"] == [
        {"category": denial["category"], "reason": denial["reason"]},
        units,
    ]
    assert "net" not in claim["item"][0]


def test_a_kept_claim_is_counted_as_reduced_not_removed() -> None:
    claim = sample("EOB-oral")
    claim["billablePeriod"] = {"start": "2026-01-01", "end": "2026-01-01"}

    decision = resource_screen(claim, request_date=SAMPLES_AS_OF, policy=ConsentPolicy.REGULAR)

    assert isinstance(decision, Kept)
    assert decision.reduced
    assert "payment" not in decision.resource


def test_a_claim_without_financial_content_is_not_counted_as_reduced() -> None:
    claim = sample("EOB-oral")
    claim_reduce_to_non_financial(claim)

    assert not claim_reduce_to_non_financial(claim)

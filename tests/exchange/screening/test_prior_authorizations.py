"""Prior authorizations: current ones and recent status changes leave; denied and drug ones never."""

from datetime import date
from typing import Any

import pytest

from exchange.models import ConsentPolicy
from exchange.screening.decision import Kept, Removed, resource_screen
from exchange.screening.prior_authorizations import (
    WHEN_ADJUDICATED_URL,
    prior_authorization_exclusion,
    status_changed_on,
)
from exchange.screening.reasons import RemovalReason
from tests.exchange.screening.support import SAMPLES_AS_OF, sample

REQUEST = SAMPLES_AS_OF


def _adjudication(resource: dict[str, Any]) -> dict[str, Any]:
    adjudication: dict[str, Any] = resource["item"][0]["adjudication"][0]
    return adjudication


def _set_review(
    resource: dict[str, Any], *, code: str | None = None, when: str | None = None
) -> None:
    for extension in _adjudication(resource)["extension"]:
        if extension["url"] == WHEN_ADJUDICATED_URL and when:
            extension["valueDateTime"] = when
        elif code and extension["url"].endswith("extension-reviewAction"):
            extension["extension"][1]["valueCodeableConcept"]["coding"][0]["code"] = code


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("approved", None),
        ("partial", None),
        ("pended", None),
        ("cancelled", None),  # cancelled this year: a status change within 12 months
        ("denied", RemovalReason.PRIOR_AUTHORIZATION_DENIED),
        ("expired", RemovalReason.PRIOR_AUTHORIZATION_NOT_CURRENT),
        ("drug-approved", RemovalReason.PRIOR_AUTHORIZATION_DRUG),
        ("drug-denied", RemovalReason.PRIOR_AUTHORIZATION_DRUG),
        ("pdex-example", None),  # the PDex IG's example: outcome queued (pended)
    ],
)
def test_each_prior_authorization_status_from_the_sandbox(
    kind: str, expected: RemovalReason | None
) -> None:
    resource = sample(f"PA-{kind}")

    assert prior_authorization_exclusion(resource, request_date=REQUEST) == expected
    decision = resource_screen(resource, request_date=REQUEST, policy=ConsentPolicy.SENSITIVE)
    assert decision == (Kept(resource, reduced=False) if expected is None else Removed(expected))


def test_a_status_change_exactly_twelve_months_ago_keeps_it_and_a_day_earlier_does_not() -> None:
    inside, outside = sample("PA-expired"), sample("PA-expired")
    _set_review(inside, when="2025-11-23T15:00:00Z")
    _set_review(outside, when="2025-11-22T15:00:00Z")

    assert status_changed_on(inside) == date(2025, 11, 23)
    assert prior_authorization_exclusion(inside, request_date=REQUEST) is None
    assert (
        prior_authorization_exclusion(outside, request_date=REQUEST)
        == RemovalReason.PRIOR_AUTHORIZATION_NOT_CURRENT
    )


def test_an_approval_in_force_on_the_request_date_is_current_however_old_its_decision() -> None:
    resource = sample("PA-expired")
    resource["preAuthRefPeriod"] = [{"start": "2024-01-01", "end": "2026-11-23"}]

    assert prior_authorization_exclusion(resource, request_date=REQUEST) is None

    resource["preAuthRefPeriod"] = [{"start": "2024-01-01", "end": "2026-11-22"}]
    assert prior_authorization_exclusion(resource, request_date=REQUEST) is not None


def test_a_pended_one_is_current_whenever_it_was_last_touched() -> None:
    resource = sample("PA-pended")
    _set_review(resource, when="2020-01-01T00:00:00Z")
    resource["meta"]["lastUpdated"] = "2020-01-01T00:00:00Z"

    assert prior_authorization_exclusion(resource, request_date=REQUEST) is None


def test_without_the_adjudication_date_the_last_update_is_the_status_change() -> None:
    resource = sample("PA-cancelled")
    extensions = _adjudication(resource)["extension"]
    extensions[:] = [e for e in extensions if e["url"] != WHEN_ADJUDICATED_URL]

    resource["meta"]["lastUpdated"] = "2026-01-05T00:00:00Z"
    assert status_changed_on(resource) == date(2026, 1, 5)
    assert prior_authorization_exclusion(resource, request_date=REQUEST) is None

    resource["meta"]["lastUpdated"] = "2024-01-05T00:00:00Z"
    assert prior_authorization_exclusion(resource, request_date=REQUEST) is not None


def test_denied_then_approved_on_appeal_is_kept() -> None:
    resource = sample("PA-denied")
    denial = _adjudication(resource)
    appeal = {
        **denial,
        "extension": [dict(e) for e in denial["extension"]],
    }
    appeal["extension"][0] = {
        **denial["extension"][0],
        "extension": [
            denial["extension"][0]["extension"][0],
            {
                "url": denial["extension"][0]["extension"][1]["url"],
                "valueCodeableConcept": {
                    "coding": [{"system": "https://codesystem.x12.org/005010/306", "code": "A1"}]
                },
            },
        ],
    }
    appeal["extension"][1] = {"url": WHEN_ADJUDICATED_URL, "valueDateTime": "2026-11-01T10:00:00Z"}
    _set_review(resource, when="2026-10-01T10:00:00Z")
    resource["item"][0]["adjudication"] = [denial, appeal]

    assert prior_authorization_exclusion(resource, request_date=REQUEST) is None

    resource["item"][0]["adjudication"] = [appeal, denial]  # order does not matter, dates do
    assert prior_authorization_exclusion(resource, request_date=REQUEST) is None


def test_a_drug_coded_in_rxnorm_is_a_drug_prior_authorization_whatever_its_claim_type() -> None:
    resource = sample("PA-approved")
    resource["item"][0]["productOrService"] = {
        "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "617310"}]
    }

    assert (
        prior_authorization_exclusion(resource, request_date=REQUEST)
        == RemovalReason.PRIOR_AUTHORIZATION_DRUG
    )


def test_the_five_year_window_does_not_apply_to_prior_authorizations() -> None:
    resource = sample("PA-approved")
    resource["created"] = "2019-01-01T00:00:00Z"

    assert isinstance(
        resource_screen(resource, request_date=REQUEST, policy=ConsentPolicy.SENSITIVE), Kept
    )


def test_prior_authorizations_keep_their_review_amounts() -> None:
    resource = sample("PA-approved")
    decision = resource_screen(resource, request_date=REQUEST, policy=ConsentPolicy.SENSITIVE)

    assert isinstance(decision, Kept)
    assert not decision.reduced
    assert "amount" in decision.resource["item"][0]["adjudication"][0]

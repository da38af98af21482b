"""Correlating a $bulk-member-match answer with the members sent (PDex STU 2.2, 2.1 shapes)."""

import copy
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from exchange.bulk.matching import correlate, groups_of_parameters, member_bundle
from exchange.fhir.errors import FhirPermanentError
from exchange.models import MatchOutcome
from tests.factories import CohortMemberFactory

FIXTURE = Path(__file__).parent.parent / "fixtures" / "pdex_multi_member_match_out.json"
# The IG example's contained Patients are "1".."4"; the hub's CohortMembers 11..14.
SENT = {"1": 11, "2": 12, "3": 13, "4": 14}


def stu21_answer() -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(FIXTURE.read_text())
    return answer


def test_the_ig_example_puts_every_member_in_exactly_one_outcome() -> None:
    groups = groups_of_parameters(stu21_answer(), holder_name="South")

    report = correlate(groups, sent=SENT, holder_name="South")

    assert report.failed == {}
    assert {k: (v.outcome, v.patient_id) for k, v in report.outcomes.items()} == {
        11: (MatchOutcome.MATCH, "1001"),
        12: (MatchOutcome.MATCH, "2002"),
        13: (MatchOutcome.NO_MATCH, ""),
        14: (MatchOutcome.CONSENT_CONSTRAINT, ""),
    }
    assert report.outcomes[11].group_id == "07e72a15407547bf9d03f522aa536a72"


def test_stu22_groups_carry_their_code_themselves() -> None:
    """STU 2.2 sends each Group as an NDJSON line; the code is the Group's own."""
    groups = [p["resource"] for p in stu21_answer()["parameter"]]

    report = correlate(groups, sent=SENT, holder_name="South")

    assert sorted(report.outcomes) == [11, 12, 13, 14]


def test_a_member_left_out_or_listed_twice_fails_alone() -> None:
    groups = [p["resource"] for p in stu21_answer()["parameter"]]
    matched = groups[0]
    # Patient "2" is dropped from the matched Group; "3" is listed in two Groups.
    matched["member"] = [*matched["member"][:1], copy.deepcopy(groups[1]["member"][0])]
    matched["contained"].append(copy.deepcopy(groups[1]["contained"][0]))
    matched["member"][1]["entity"]["reference"] = "Patient/3003"

    report = correlate(groups, sent=SENT, holder_name="South")

    assert sorted(report.outcomes) == [11, 14]
    assert "left this member out of every Group" in report.failed[12]
    assert "more than one Group" in report.failed[13]


def test_a_member_the_hub_never_sent_is_a_remark_not_an_outcome() -> None:
    report = correlate(
        [p["resource"] for p in stu21_answer()["parameter"]],
        sent={"1": 11, "2": 12, "3": 13},
        holder_name="South",
    )

    assert sorted(report.outcomes) == [11, 12, 13]
    assert report.remarks and "did not send (4)" in report.remarks[0]


def test_a_group_without_a_result_code_is_refused_naming_it() -> None:
    group = stu21_answer()["parameter"][0]["resource"]
    del group["code"]

    with pytest.raises(FhirPermanentError, match="07e72a15407547bf9d03f522aa536a72") as caught:
        correlate([group], sent=SENT, holder_name="South")

    assert caught.value.code == "malformed_match_answer"


def test_an_stu21_parameter_without_a_group_is_refused() -> None:
    answer = {"resourceType": "Parameters", "parameter": [{"name": "MatchedMembers"}]}

    with pytest.raises(FhirPermanentError, match="MatchedMembers that holds no Group"):
        groups_of_parameters(answer, holder_name="South")


@pytest.mark.django_db
def test_a_member_whose_data_makes_an_invalid_resource_is_refused_naming_the_part() -> None:
    demographics = {
        "exchange_request__consent__member__first_name": "Ana",
        "exchange_request__consent__member__last_name": "Reyes",
        "exchange_request__consent__member__birth_date": date(1970, 1, 2),
        "exchange_request__consent__member__gender": "female",
    }
    good = CohortMemberFactory(**demographics)
    bad = CohortMemberFactory(
        cohort=good.cohort, exchange_request__card_member_id="", **demographics
    )

    bundle = member_bundle(good)
    assert [part["name"] for part in bundle["part"]] == [
        "MemberPatient",
        "CoverageToMatch",
        "CoverageToLink",
        "Consent",
    ]
    with pytest.raises(FhirPermanentError) as refused:
        member_bundle(bad)
    assert refused.value.code == "invalid_match_request"
    assert "(CoverageToMatch.identifier" in refused.value.message

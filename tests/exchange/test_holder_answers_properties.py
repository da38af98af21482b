"""Property-based fuzzing (hypothesis) of the parsers of what a former payer sends back:
a page of a search or ``$everything`` Bundle, a ``$member-match`` and a ``$bulk-member-match``
answer, a CapabilityStatement, a member's Patient reference, and each resource the screening
reads (issue 15 item 4).

Whatever a holder sends, each parser answers in one of the ways it declares — a result, or
FhirPermanentError with a sentence naming the problem — never an unexpected exception that
would end a worker's task without a reason a person can read. The inputs are arbitrary JSON
and the IGs' own examples (tests/exchange/fixtures) with one part replaced by arbitrary JSON.

How many examples: tests/support/fuzz.py.
"""

import json
import re
from datetime import date
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from exchange.bulk.matching import correlate, groups_of_parameters
from exchange.fhir.capabilities import capability_summary
from exchange.fhir.errors import FhirPermanentError
from exchange.member_match import matched_member_of, patient_id_of
from exchange.models import ConsentPolicy
from exchange.retrieval import _page_resources
from exchange.screening.decision import Kept, Quarantined, Removed, resource_screen
from tests.exchange.screening.support import FIXTURES, SAMPLES_AS_OF, sample, sample_names
from tests.support.fuzz import fuzz, json_values, mutated, unicode_text


def _declared(error: FhirPermanentError, code: str) -> None:
    assert error.code == code and error.message.strip(), error


@fuzz
@given(entries=json_values)
def test_a_page_of_any_shape_gives_resources_or_a_sentence(entries: Any) -> None:
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
    try:
        resources = _page_resources(bundle, page=3, former_name="Southern Cross Health")
    except FhirPermanentError as exc:
        _declared(exc, "malformed_bundle")
        assert "page 3" in exc.message
    else:
        assert all(isinstance(r.get("resourceType"), str) for r in resources)


_MATCH_OUT = json.loads((FIXTURES / "pdex_multi_member_match_out.json").read_text())


@fuzz
@given(
    answer=mutated(_MATCH_OUT)
    | st.builds(lambda p: {"resourceType": "Parameters", "parameter": p}, json_values)
)
def test_any_bulk_match_answer_puts_every_member_sent_in_one_place_or_says_why(answer: Any) -> None:
    sent = {"1": 101, "2": 102, "3": 103, "Patient1": 104, "pat1": 105}
    try:
        groups = groups_of_parameters(
            answer if isinstance(answer, dict) else {}, holder_name="South"
        )
        report = correlate(groups, sent=sent, holder_name="South")
    except FhirPermanentError as exc:
        _declared(exc, "malformed_match_answer")
    else:
        assert set(report.outcomes) | set(report.failed) == set(sent.values())
        assert not set(report.outcomes) & set(report.failed)
        assert all(reason.strip() for reason in report.failed.values())


# HRex's own example of a $member-match answer (the sandbox's tests keep it).
_MEMBER_MATCH_OUT = json.loads(
    (Path(__file__).parents[1] / "sandbox" / "fixtures" / "hrex-member-match-out.json").read_text()
)


@fuzz
@given(answer=mutated(_MEMBER_MATCH_OUT))
def test_any_member_match_answer_names_the_member_or_says_why(answer: Any) -> None:
    try:
        identifier, patient_id = matched_member_of(
            answer if isinstance(answer, dict) else {}, holder_name="South"
        )
    except FhirPermanentError as exc:
        _declared(exc, "malformed_match_answer")
    else:
        assert isinstance(identifier["value"], str) and identifier["value"]
        assert isinstance(patient_id, str)


# A holder's CapabilityStatement as the radar and the engine read it (FHIR R4 §3.1.2).
_STATEMENT = {
    "resourceType": "CapabilityStatement",
    "fhirVersion": "4.0.1",
    "format": ["json"],
    "rest": [
        {
            "mode": "server",
            "operation": [{"name": "member-match"}],
            "resource": [
                {
                    "type": "Patient",
                    "interaction": [{"code": "read"}, {"code": "search-type"}],
                    "operation": [{"name": "everything"}],
                },
                {
                    "type": "Condition",
                    "interaction": [{"code": "search-type"}],
                    "searchParam": [{"name": "patient", "type": "reference"}],
                },
            ],
        }
    ],
}


@fuzz
@given(statement=mutated(_STATEMENT))
def test_any_capability_statement_is_summarized_or_said_to_be_broken(statement: Any) -> None:
    try:
        summary = capability_summary(statement if isinstance(statement, dict) else {})
    except FhirPermanentError as exc:
        _declared(exc, "malformed_capability_statement")
    else:
        assert all(isinstance(name, str) for name in summary["operations"])
        assert all(isinstance(name, str) for name in summary["patient_search_types"])


@fuzz
@given(
    reference=json_values
    | st.builds("Patient/{}".format, unicode_text | st.text("ab-.", min_size=60, max_size=70))
)
def test_a_patient_reference_of_any_shape_gives_an_id_or_nothing(reference: Any) -> None:
    patient_id = patient_id_of(reference)
    # Nothing, or a FHIR id (R4 §2.24.0.1): the hub puts it in paths it asks the holder for.
    assert patient_id == "" or re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", patient_id, re.ASCII)


@fuzz
@given(data=st.data(), policy=st.sampled_from(list(ConsentPolicy)))
def test_screening_decides_every_resource_whatever_it_holds(
    data: st.DataObject, policy: ConsentPolicy
) -> None:
    resource = data.draw(mutated(sample(data.draw(st.sampled_from(sample_names())))))

    decision = resource_screen(resource, request_date=SAMPLES_AS_OF, policy=policy)

    assert isinstance(decision, Kept | Removed | Quarantined)
    if isinstance(decision, Quarantined):
        assert decision.problems and all(p.strip() for p in decision.problems)


def test_the_samples_the_mutations_start_from_are_screened_as_the_rule_says() -> None:
    # A mutation means something only if the untouched sample is kept or removed by the rule.
    decisions = {
        name: resource_screen(
            sample(name), request_date=SAMPLES_AS_OF, policy=ConsentPolicy.SENSITIVE
        )
        for name in sample_names()
    }
    assert not [name for name, d in decisions.items() if isinstance(d, Quarantined)]
    assert date(2026, 11, 23) == SAMPLES_AS_OF

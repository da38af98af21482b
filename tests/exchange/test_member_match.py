"""HRex $member-match against running sandbox payers (SPEC.md "Single member")."""

import json
from collections.abc import Iterator
from typing import Any

import pytest

from exchange.fhir.errors import FhirPermanentError
from exchange.member_match import member_match_parameters, member_match_run
from exchange.models import ConsentPolicy, ExchangeStatus
from tests.conftest import Tenant
from tests.exchange.holders import former_payer_of, member_request, ordinary_member
from tests.sandbox.harness import FORMER, NEW, NPI, SEED, RunningSandbox, running_sandbox

HREX_TEMP = "http://hl7.org/fhir/us/davinci-hrex/CodeSystem/hrex-temp"


@pytest.fixture(scope="module")
def unsegmented_holder() -> Iterator[RunningSandbox]:
    """A holder that cannot withhold sensitive data, so refuses #regular consents."""
    with running_sandbox(
        FORMER, "--seed", SEED, "--members", "10", "--peer", NEW, "--no-segmentation"
    ) as sandbox:
        yield sandbox


def by_name(parameters: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p["resource"] for p in parameters["parameter"]}


def test_the_parameters_follow_hrex_member_match_in(holder: RunningSandbox, north: Tenant) -> None:
    member = ordinary_member(holder)
    former = former_payer_of(holder)
    request = member_request(tenant=north, former_payer=former, member=member)

    parameters = member_match_parameters(exchange_request=request)

    assert [p["name"] for p in parameters["parameter"]] == [
        "MemberPatient",
        "CoverageToMatch",
        "CoverageToLink",
        "Consent",
    ]
    parts = by_name(parameters)
    patient = parts["MemberPatient"]
    local = {"reference": f"Patient/{patient['id']}"}
    assert patient["name"][0]["family"] == member["family"]
    assert patient["name"][0]["given"] == member["given"]
    assert (patient["birthDate"], patient["gender"]) == (member["birth_date"], member["gender"])
    to_match = parts["CoverageToMatch"]
    assert to_match["identifier"][0]["type"]["coding"][0]["code"] == "MB"
    assert to_match["identifier"][0]["value"] == member["card_number"]
    assert to_match["payor"][0]["identifier"] == {"system": NPI, "value": former.npi}
    to_link = parts["CoverageToLink"]
    assert to_link["payor"][0]["identifier"] == {"system": NPI, "value": north.payer.npi}
    consent = parts["Consent"]
    # HRex: beneficiary, Consent.patient and .performer are local references to MemberPatient.
    assert to_match["beneficiary"] == to_link["beneficiary"] == local
    assert consent["patient"] == local
    assert consent["performer"] == [local]
    recipient = consent["provision"]["actor"][1]
    assert recipient["role"]["coding"][0]["code"] == "IRCP"
    assert recipient["reference"]["identifier"]["value"] == north.payer.npi


def test_a_match_keeps_the_member_identifier_and_patient_id(
    hub: Tenant, holder: RunningSandbox
) -> None:
    member = ordinary_member(holder)
    request = member_request(tenant=hub, former_payer=former_payer_of(holder), member=member)

    outcome = member_match_run(exchange_request=request)

    assert outcome.status == ExchangeStatus.MATCHED
    assert outcome.patient_id == member["patient_id"]
    assert outcome.member_identifier["value"] == member["member_id"]
    assert outcome.member_identifier["type"]["coding"][0] == {"system": HREX_TEMP, "code": "UMB"}
    request.refresh_from_db()
    assert request.matched_patient_id == member["patient_id"]
    assert json.loads(request.matched_member_identifier)["value"] == member["member_id"]
    # The state machine is the caller's: nothing moved here.
    assert request.status == ExchangeStatus.CONSENTED


def test_a_wrong_card_number_is_no_match_in_plain_words(
    hub: Tenant, holder: RunningSandbox
) -> None:
    member = ordinary_member(holder, 1)
    request = member_request(
        tenant=hub, former_payer=former_payer_of(holder), member=member, card="NOT-MY-CARD"
    )

    outcome = member_match_run(exchange_request=request)

    assert outcome.status == ExchangeStatus.NO_MATCH
    assert outcome.reason_code == "no_match"
    assert outcome.reason_message.startswith(
        "Former Health Plan found no member with your name, date of birth, gender and the "
        "member id from your old card."
    )
    request.refresh_from_db()
    assert request.matched_patient_id == ""


def test_a_consent_naming_another_recipient_is_consent_constrained(
    hub: Tenant, holder: RunningSandbox, south: Tenant
) -> None:
    request = member_request(
        tenant=hub,
        former_payer=former_payer_of(holder),
        member=ordinary_member(holder, 2),
        recipient=south.payer,
    )

    outcome = member_match_run(exchange_request=request)

    assert outcome.status == ExchangeStatus.CONSENT_CONSTRAINED
    assert outcome.reason_code == "consent_not_honoured"
    assert "will not share your records under this consent" in outcome.reason_message
    assert "recipient" in outcome.reason_message


def test_a_regular_consent_at_a_holder_that_cannot_segment_is_consent_constrained(
    hub: Tenant, unsegmented_holder: RunningSandbox
) -> None:
    request = member_request(
        tenant=hub,
        former_payer=former_payer_of(unsegmented_holder),
        member=ordinary_member(unsegmented_holder, 3),
        policy=ConsentPolicy.REGULAR,
    )

    outcome = member_match_run(exchange_request=request)

    assert outcome.status == ExchangeStatus.CONSENT_CONSTRAINED
    assert "cannot withhold sensitive data" in outcome.reason_message


def test_missing_demographics_are_named_before_anything_is_sent(
    holder: RunningSandbox, north: Tenant
) -> None:
    request = member_request(
        tenant=north, former_payer=former_payer_of(holder), member=ordinary_member(holder)
    )
    north.member.birth_date = None
    north.member.gender = ""
    north.member.save()
    request.refresh_from_db()

    with pytest.raises(FhirPermanentError) as refused:
        member_match_run(exchange_request=request)

    assert refused.value.code == "member_demographics_missing"
    assert "date of birth, gender" in refused.value.message

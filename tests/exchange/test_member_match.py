"""HRex $member-match against running sandbox payers (SPEC.md "Single member")."""

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from exchange.education import HUB_DEFAULT_VERSION
from exchange.fhir.errors import FhirPermanentError
from exchange.member_match import member_match_parameters, member_match_run
from exchange.models import ConsentPolicy, ExchangeRequest, ExchangeStatus
from exchange.pipeline import exchange_request_match
from hub.models import Payer, Role, User
from tests.conftest import Tenant
from tests.exchange.holder_proxy import HolderProxy, holder_proxy
from tests.exchange.holders import former_payer_of, member_request, ordinary_member
from tests.factories import UserFactory
from tests.sandbox.harness import FORMER, NEW, NPI, SEED, RunningSandbox, running_sandbox
from tests.support.exchange_setup import member_demographics_set

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


# --- Guessing (HRex §mm: resist brute force): limits per member and per requesting payer,
# the refused one told when to come back, and nothing sent to the former payer (issue 15).


@pytest.fixture
def proxy(holder: RunningSandbox) -> Iterator[HolderProxy]:
    """The sandbox holder behind a proxy that counts what the hub sends it."""
    with holder_proxy(holder) as counted:
        yield counted


def _member_matches_sent(proxy: HolderProxy) -> int:
    return sum(1 for method, path, _ in proxy.received if path.endswith("/Patient/$member-match"))


def _ask(member: User, former: Payer, card: str) -> Any:
    client = Client()
    client.force_login(member)
    assert member.payer is not None
    return client.post(
        f"/p/{member.payer.slug}/me/requests/new/",
        {
            "former": [former.pk],
            "policy": "sensitive",
            "agree": "on",
            "ask_again": "on",
            "education_version": HUB_DEFAULT_VERSION,
            f"p{former.pk}-card_member_id": card,
            f"p{former.pk}-coverage_start": "2021-01-01",
            f"p{former.pk}-coverage_end": "2025-06-30",
        },
    )


def _ask_and_match(member: User, former: Payer, card: str) -> ExchangeRequest:
    """Open a request in the portal, then run its $member-match as the worker would."""
    response = _ask(member, former, card)
    assert response.status_code == 302, response.content.decode()[-2000:]
    request = ExchangeRequest.objects.for_payer(member.payer).filter(member=member).latest("pk")
    exchange_request_match(request_id=request.pk, payer_id=request.payer_id)
    request.refresh_from_db()
    return request


@pytest.mark.usefixtures("empty_broker")
def test_guessing_card_numbers_is_stopped_per_member_and_per_payer(
    hub: Tenant, south: Tenant, holder: RunningSandbox, proxy: HolderProxy, settings: Any
) -> None:
    settings.MEMBER_MATCH_REQUESTS_PER_MEMBER = 2
    settings.MEMBER_MATCH_NO_MATCHES_PER_PAYER_HOUR = 3
    former = former_payer_of(holder, base_url=proxy.fhir)
    person = ordinary_member(holder)
    member_demographics_set(user=hub.member, member=person)

    for guess in ("GUESS-1", "GUESS-2"):
        request = _ask_and_match(hub.member, former, guess)
        assert request.status == ExchangeStatus.NO_MATCH
    assert _member_matches_sent(proxy) == 2

    # The third request of the member to that payer within the day: refused, with the time.
    refused = _ask(hub.member, former, "GUESS-3")
    assert refused.status_code == 429
    wait = int(refused["Retry-After"])
    assert 0 < wait <= 24 * 3600
    page = refused.content.decode()
    assert "You have asked Former Health Plan for your records 2 times in the last 24 hours" in page
    assert "you can ask again in " in page
    assert ExchangeRequest.objects.for_payer(hub.payer).filter(member=hub.member).count() == 2
    assert _member_matches_sent(proxy) == 0 + 2  # nothing more reached the former payer

    # Another North member may still ask; the third failed match of North's members at that
    # payer within the hour pauses North's new requests there...
    second = UserFactory(payer=hub.payer, role=Role.MEMBER, username="north-member-2")
    member_demographics_set(user=second, member=ordinary_member(holder, 1))
    assert _ask_and_match(second, former, "GUESS-4").status == ExchangeStatus.NO_MATCH
    third = UserFactory(payer=hub.payer, role=Role.MEMBER, username="north-member-3")
    member_demographics_set(user=third, member=ordinary_member(holder, 2))
    paused = _ask(third, former, ordinary_member(holder, 2)["card_number"])
    assert paused.status_code == 429
    assert "could not find North Star Health members too many times in the last hour" in (
        paused.content.decode()
    )
    assert _member_matches_sent(proxy) == 3

    # ...but not another payer's members.
    member_demographics_set(user=south.member, member=ordinary_member(holder, 3))
    assert _ask(south.member, former, ordinary_member(holder, 3)["card_number"]).status_code == 302

"""Find the member at the former payer: HRex ``$member-match`` (SPEC.md "Single member").

``POST [base]/Patient/$member-match`` with a Parameters resource: ``MemberPatient`` (the
member's demographics as the new payer's identity provider asserted them),
``CoverageToMatch`` (what the member typed from the old card; payor the former payer),
``CoverageToLink`` (the coverage at the new payer; a payer caller SHALL send it) and
``Consent`` (PDex payer-to-payer). ``Coverage.beneficiary``, ``Consent.patient`` and
``Consent.performer`` are local references to the MemberPatient's id. Sent with a SMART
Backend Services token of the new payer.

The answer decides what happens next, but this module moves no state: it returns a
``MemberMatchOutcome`` whose ``status`` is the ExchangeStatus to move to, and the task
that called it moves the request (exchange.state_machine).
"""

import copy
import json
from dataclasses import dataclass, field
from typing import Any

import pydantic
from fhir.resources.R4B.parameters import Parameters

from exchange.consents.resource import payer_identifier
from exchange.fhir.client import FhirClient, outcome_codes, outcome_text
from exchange.fhir.elements import repeated
from exchange.fhir.endpoints import holder_endpoint_get
from exchange.fhir.errors import FhirCallError, FhirPermanentError
from exchange.fhir.ids import resource_id
from exchange.models import ConsentStatus, ExchangeRequest, ExchangeStatus
from exchange.smart.backend_services import backend_access_token
from hub.client_certificates import holder_http_client

# The local id of MemberPatient inside the Parameters; the references point at it.
MEMBER_PATIENT_ID = "member"
HREX_MEMBER_MATCH_IN = (
    "http://hl7.org/fhir/us/davinci-hrex/StructureDefinition/hrex-parameters-member-match-in"
)
MEMBER_CARD_TYPE = {
    "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MB"}]
}
# The member's relationship to the subscriber is not known to the hub (as in the HRex example).
RELATIONSHIP_UNKNOWN = {
    "coding": [
        {"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "unknown"}
    ]
}
ADMINISTRATIVE_GENDERS = ("male", "female", "other", "unknown")


@dataclass(frozen=True)
class MemberMatchOutcome:
    """What ``$member-match`` found: ``status`` is MATCHED, NO_MATCH or CONSENT_CONSTRAINED."""

    status: str
    reason_code: str = ""
    reason_message: str = ""
    member_identifier: dict[str, Any] = field(default_factory=dict)
    patient_id: str = ""


def _member_patient(exchange_request: ExchangeRequest, patient_id: str) -> dict[str, Any]:
    member = exchange_request.member
    birth_date = member.birth_date
    missing = [
        label
        for label, value in (
            ("family name", member.last_name),
            ("given name", member.first_name),
            ("date of birth", birth_date),
            ("gender", member.gender),
        )
        if not value
    ]
    if missing or birth_date is None:
        raise FhirPermanentError(
            f"Your plan has not told the hub your {', '.join(missing)}, which the former payer "
            "needs to find you. Sign in again, or ask your plan to share these details.",
            code="member_demographics_missing",
        )
    if member.gender not in ADMINISTRATIVE_GENDERS:
        raise FhirPermanentError(
            f"Your plan reports your gender as {member.gender!r}, which is not one of "
            f"{', '.join(ADMINISTRATIVE_GENDERS)} (FHIR administrative gender).",
            code="member_demographics_invalid",
        )
    return {
        "resourceType": "Patient",
        "id": patient_id,
        "name": [
            {"use": "official", "family": member.last_name, "given": member.first_name.split()}
        ],
        "gender": member.gender,
        "birthDate": birth_date.isoformat(),
    }


def _coverage_to_match(
    exchange_request: ExchangeRequest, beneficiary: dict[str, str]
) -> dict[str, Any]:
    former_payer = exchange_request.former_payer
    period = {"start": exchange_request.coverage_start.isoformat()}
    if exchange_request.coverage_end is not None:
        period["end"] = exchange_request.coverage_end.isoformat()
    return {
        "resourceType": "Coverage",
        "id": "coverage-to-match",
        # HRex: the member id typed from the old card, typed v2-0203#MB.
        "identifier": [{"type": MEMBER_CARD_TYPE, "value": exchange_request.card_member_id}],
        "status": "draft",
        "relationship": RELATIONSHIP_UNKNOWN,
        "beneficiary": beneficiary,
        "period": period,
        "payor": [{"identifier": payer_identifier(former_payer), "display": former_payer.name}],
    }


def _coverage_to_link(
    exchange_request: ExchangeRequest, beneficiary: dict[str, str]
) -> dict[str, Any]:
    new_payer = exchange_request.payer
    coverage: dict[str, Any] = {
        "resourceType": "Coverage",
        "id": "coverage-to-link",
        "status": "active",
        "relationship": RELATIONSHIP_UNKNOWN,
        "beneficiary": beneficiary,
        "payor": [{"identifier": payer_identifier(new_payer), "display": new_payer.name}],
    }
    if exchange_request.member.plan_member_id:
        coverage["identifier"] = [
            {"type": MEMBER_CARD_TYPE, "value": exchange_request.member.plan_member_id}
        ]
    return coverage


def _consent(exchange_request: ExchangeRequest, member: dict[str, str]) -> dict[str, Any]:
    consent = exchange_request.consent
    if consent.status != ConsentStatus.ACTIVE:
        raise FhirPermanentError(
            "You withdrew your consent, so the hub no longer asks for your records.",
            code="consent_inactive",
        )
    resource = copy.deepcopy(consent.fhir_resource)
    # HRex §member-match: Consent.patient and .performer are the MemberPatient, by local id.
    resource["patient"] = dict(member)
    resource["performer"] = [dict(member)]
    return resource


def member_match_parts(
    *, exchange_request: ExchangeRequest, patient_id: str = MEMBER_PATIENT_ID
) -> list[dict[str, Any]]:
    """Return the parameters ``MemberPatient``, ``CoverageToMatch``, ``CoverageToLink`` and
    ``Consent`` of ``exchange_request`` (HRex §member-match; the parts of a PDex
    ``MemberBundle`` too), the MemberPatient with the local id ``patient_id`` that the
    Coverages and the Consent reference."""
    member = {"reference": f"Patient/{patient_id}"}
    return [
        {"name": "MemberPatient", "resource": _member_patient(exchange_request, patient_id)},
        {"name": "CoverageToMatch", "resource": _coverage_to_match(exchange_request, member)},
        {"name": "CoverageToLink", "resource": _coverage_to_link(exchange_request, member)},
        {"name": "Consent", "resource": _consent(exchange_request, member)},
    ]


def fhir_parameters_check(parameters: dict[str, Any]) -> None:
    """Check ``parameters`` against the R4B Parameters model; refuse it naming the problem."""
    try:
        Parameters.model_validate(parameters)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error.get("loc", ()))
        raise FhirPermanentError(
            f"The hub could not build a valid match request ({where}: {error.get('msg')}).",
            code="invalid_match_request",
        ) from None


def member_match_parameters(*, exchange_request: ExchangeRequest) -> dict[str, Any]:
    """Return the HRex member-match input Parameters of ``exchange_request``."""
    parameters = {
        "resourceType": "Parameters",
        "meta": {"profile": [HREX_MEMBER_MATCH_IN]},
        "parameter": member_match_parts(exchange_request=exchange_request),
    }
    fhir_parameters_check(parameters)
    return parameters


def _parameter(answer: dict[str, Any], name: str, *, holder_name: str) -> dict[str, Any]:
    where = f"{holder_name}'s answer to $member-match"
    for parameter in repeated(answer, "parameter", where=where, code="malformed_match_answer"):
        if isinstance(parameter, dict) and parameter.get("name") == name:
            return parameter
    return {}


def matched_member_of(answer: dict[str, Any], *, holder_name: str) -> tuple[dict[str, Any], str]:
    """Return the MemberIdentifier of a match and its Patient id ("" when MemberId, 0..1 since
    HRex 1.1, is absent); raise FhirPermanentError for an answer that names no member."""
    identifier = _parameter(answer, "MemberIdentifier", holder_name=holder_name).get(
        "valueIdentifier"
    )
    if (
        not isinstance(identifier, dict)
        or not isinstance(identifier.get("value"), str)
        or not identifier["value"]
    ):
        raise FhirPermanentError(
            f"{holder_name} reported a match but sent no MemberIdentifier.",
            code="malformed_match_answer",
        )
    member_id = _parameter(answer, "MemberId", holder_name=holder_name).get("valueReference")
    reference = member_id.get("reference") if isinstance(member_id, dict) else None
    return identifier, patient_id_of(reference)


def patient_id_of(reference: object) -> str:
    """Return the id of ``Patient/<id>`` (relative or absolute), or "" (an id that is not a
    FHIR id included)."""
    if not isinstance(reference, str):
        return ""
    parts = reference.rstrip("/").split("/")
    if len(parts) >= 2 and parts[-2] == "Patient":
        return resource_id(parts[-1])
    return ""


def _resolve_patient_id(fhir: FhirClient, identifier: dict[str, Any]) -> str:
    """Find the Patient by MemberIdentifier when the holder returned no MemberId (0..1)."""
    token = f"{identifier.get('system', '')}|{identifier['value']}"
    bundle = fhir.bundle_page("Patient", params={"identifier": token})
    ids = [
        entry["resource"].get("id")
        for entry in repeated(
            bundle, "entry", where="The search for the matched Patient", code="malformed_bundle"
        )
        if isinstance(entry, dict) and isinstance(entry.get("resource"), dict)
    ]
    return resource_id(ids[0]) if len(ids) == 1 else ""


def _unprocessable(exchange_request: ExchangeRequest, error: FhirCallError) -> MemberMatchOutcome:
    """Read a 422: no match, several matches, or a consent that cannot be honoured."""
    name = exchange_request.former_payer.name
    codes = outcome_codes(error.outcome)
    said = outcome_text(error.outcome)
    their_words = f" Its answer: {said}." if said else ""
    if "multiple-matches" in codes:
        return MemberMatchOutcome(
            status=ExchangeStatus.NO_MATCH,
            reason_code="multiple_matches",
            reason_message=f"{name} found more than one member with your details and cannot tell "
            f"which one is you. Please contact {name}.{their_words}",
        )
    if "not-found" not in codes and (
        codes & {"business-rule", "security", "forbidden"} or "consent" in said.lower()
    ):
        return MemberMatchOutcome(
            status=ExchangeStatus.CONSENT_CONSTRAINED,
            reason_code="consent_not_honoured",
            reason_message=f"{name} will not share your records under this consent.{their_words}",
        )
    return MemberMatchOutcome(
        status=ExchangeStatus.NO_MATCH,
        reason_code="no_match",
        reason_message=f"{name} found no member with your name, date of birth, gender and the "
        f"member id from your old card. Check the member id you typed.{their_words}",
    )


def member_match_run(*, exchange_request: ExchangeRequest) -> MemberMatchOutcome:
    """Run ``$member-match`` at the former payer; on a match keep its identifier and Patient id.

    Raises FhirCallError for anything but an answer: transient ones are worth retrying.
    """
    former_payer = exchange_request.former_payer
    endpoint = holder_endpoint_get(former_payer=former_payer)
    parameters = member_match_parameters(exchange_request=exchange_request)

    def token(force_refresh: bool) -> str:
        return backend_access_token(
            payer=exchange_request.payer, former_payer=former_payer, force_refresh=force_refresh
        )

    with holder_http_client(requesting_payer=exchange_request.payer_id) as http:
        fhir = FhirClient(
            base_url=endpoint.base_url,
            holder_name=former_payer.name,
            http=http,
            token_provider=token,
        )
        try:
            answer = fhir.operation("Patient/$member-match", parameters=parameters)
        except FhirCallError as exc:
            if exc.status == 422:
                return _unprocessable(exchange_request, exc)
            raise
        identifier, patient_id = matched_member_of(answer, holder_name=former_payer.name)
        patient_id = patient_id or _resolve_patient_id(fhir, identifier)
    if not patient_id:
        raise FhirPermanentError(
            f"{former_payer.name} reported a match but the hub cannot tell which Patient it is.",
            code="malformed_match_answer",
        )
    exchange_request.matched_member_identifier = json.dumps(identifier, sort_keys=True)
    exchange_request.matched_patient_id = patient_id
    exchange_request.save(update_fields=["matched_member_identifier", "matched_patient_id"])
    return MemberMatchOutcome(
        status=ExchangeStatus.MATCHED, member_identifier=identifier, patient_id=patient_id
    )

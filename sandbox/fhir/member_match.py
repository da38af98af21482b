"""`POST [base]/Patient/$member-match` (HRex STU 1.2 §member-match).

In: MemberPatient 1..1, CoverageToMatch 1..1, CoverageToLink 0..1, Consent 0..1.
Out (200): MemberIdentifier (valueIdentifier typed hrex-temp#UMB) and MemberId
(valueReference Patient/<id>). No match, several matches, or a consent that
cannot be honoured: 422 with an OperationOutcome saying which.

Matching: family name, birth date and gender equal, one given name equal, and
one of CoverageToMatch's identifier values or subscriberId equal to the member's
card number or member number. A consent accepted with a match is kept and
evaluated again on every later data request (see access.py).
"""

from __future__ import annotations

import math
from typing import Any

from fhir.resources.R4B.parameters import Parameters

from sandbox.auth.scopes import grants
from sandbox.auth.tokens import CONTEXT_SYSTEM, Grant
from sandbox.data.population import Member
from sandbox.fhir.consents import ConsentProblem, HeldConsent, consent_problem, read_consent
from sandbox.fhir.outcomes import FhirError, require_valid
from sandbox.runtime import Sandbox

HREX_TEMP = "http://hl7.org/fhir/us/davinci-hrex/CodeSystem/hrex-temp"
PARAMETER_TYPES = {
    "MemberPatient": "Patient",
    "CoverageToMatch": "Coverage",
    "CoverageToLink": "Coverage",
    "Consent": "Consent",
}
REQUIRED = ("MemberPatient", "CoverageToMatch")


def read_parts(parts: list[Any], *, operation: str) -> dict[str, dict[str, Any]]:
    """Return parameter (or MemberBundle part) resources by name, or raise 400 naming the problem."""
    found: dict[str, dict[str, Any]] = {}
    for parameter in parts:
        if not isinstance(parameter, dict):
            raise FhirError(400, "structure", "every parameter must be a JSON object")
        name = parameter.get("name")
        if name not in PARAMETER_TYPES:
            raise FhirError(400, "invalid", f"unknown {operation} parameter {name!r}")
        if name in found:
            raise FhirError(400, "invalid", f"parameter {name} appears more than once")
        resource = parameter.get("resource")
        expected = PARAMETER_TYPES[name]
        if not isinstance(resource, dict) or resource.get("resourceType") != expected:
            raise FhirError(400, "invalid", f"parameter {name} must carry a {expected} resource")
        found[name] = resource
    return found


def require_parts(
    found: dict[str, dict[str, Any]], *, operation: str, required: tuple[str, ...]
) -> None:
    """Raise 400 naming the first required parameter missing from found."""
    for name in required:
        if name not in found:
            raise FhirError(400, "required", f"{operation} parameter {name} is required")


def parameters_of(body: Any) -> list[Any]:
    """Return the parameter list of a Parameters body, or raise 400 naming what came instead."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        found = body.get("resourceType") if isinstance(body, dict) else type(body).__name__
        raise FhirError(400, "invalid", f"the body must be a Parameters resource, not {found}")
    parameters = body.get("parameter", [])
    if not isinstance(parameters, list):
        raise FhirError(400, "structure", "Parameters.parameter must be a JSON array")
    return parameters


def check_structure(body: dict[str, Any]) -> None:
    """Raise 400 naming the first element of body that is not valid FHIR R4 Parameters."""
    require_valid(Parameters, body)


def read_parameters(body: Any) -> dict[str, dict[str, Any]]:
    """Return the $member-match request's resources by parameter name, or raise 400."""
    found = read_parts(parameters_of(body), operation="$member-match")
    check_structure(body)
    require_parts(found, operation="$member-match", required=REQUIRED)
    return found


def demographics(patient: dict[str, Any]) -> tuple[str, list[str], str, str]:
    names = [n for n in patient.get("name", []) if isinstance(n, dict)]
    family = next((n["family"] for n in names if n.get("family")), None)
    given = [g.lower() for n in names for g in n.get("given", [])]
    birth_date, gender = patient.get("birthDate"), patient.get("gender")
    missing = [
        label
        for label, value in (
            ("name.family", family),
            ("name.given", given),
            ("birthDate", birth_date),
            ("gender", gender),
        )
        if not value
    ]
    if missing:
        raise FhirError(400, "required", f"MemberPatient lacks {', '.join(missing)}")
    return str(family), given, str(birth_date), str(gender)


def card_numbers(coverage: dict[str, Any]) -> set[str]:
    numbers = {str(i["value"]).strip() for i in coverage.get("identifier", []) if i.get("value")}
    if coverage.get("subscriberId"):
        numbers.add(str(coverage["subscriberId"]).strip())
    if not numbers:
        raise FhirError(
            400, "required", "CoverageToMatch carries no identifier or subscriberId to match on"
        )
    return numbers


class MatchRefused(Exception):
    """No unique member was found; code is the OperationOutcome issue code saying why."""

    def __init__(self, code: str, diagnostics: str, *, retry_after_s: int | None = None) -> None:
        super().__init__(diagnostics)
        self.code = code
        self.diagnostics = diagnostics
        self.retry_after_s = retry_after_s


def unique_member(sandbox: Sandbox, patient: dict[str, Any], coverage: dict[str, Any]) -> Member:
    """Return the one member patient and coverage identify, or raise MatchRefused.

    Failed attempts count against the demographics, so guessing card numbers locks
    them out (HRex §member-match: servers must resist brute-force guessing).
    """
    family, given, birth_date, gender = demographics(patient)
    cards = card_numbers(coverage)
    key = (family.lower(), " ".join(sorted(given)), birth_date, gender)
    wait = sandbox.match_throttle.retry_after(key)
    if wait is not None:
        seconds = max(1, math.ceil(wait))
        raise MatchRefused(
            "throttled",
            "too many failed $member-match attempts for these demographics; "
            f"try again in {seconds} seconds",
            retry_after_s=seconds,
        )
    found = [
        member
        for member in sandbox.population.candidates(family, birth_date, gender)
        if any(g.lower() in given for g in member.person.given)
        and (member.card_number in cards or member.member_number in cards)
    ]
    if not found:
        sandbox.match_throttle.record_failure(key)
        raise MatchRefused("not-found", "no member matches the MemberPatient and CoverageToMatch")
    if len(found) > 1:
        raise MatchRefused(
            "multiple-matches",
            f"{len(found)} members match the MemberPatient and CoverageToMatch; no unique match",
        )
    sandbox.match_throttle.clear(key)
    return found[0]


def refusal_of_consent(sandbox: Sandbox, grant: Grant, consent: HeldConsent) -> str | None:
    """Return why consent cannot be honoured for the calling client today, or None."""
    withdrawn = sandbox.consent_subscriber.withdrawal_of(consent)
    if withdrawn:
        return withdrawn
    client = sandbox.clients.get(grant.client_id)
    if client is not None and client.organization_identifier is None:
        # A client registered without organization_identifier acts for the recipient of
        # the first consent it presents (trust on first use, sandbox/auth/clients.py).
        sandbox.clients.organization_bind(client, consent.recipients)
    return consent_problem(
        consent,
        client=client,
        today=sandbox.today(),
        can_segment=sandbox.config.can_segment,
    )


def member_match(sandbox: Sandbox, grant: Grant, body: Any) -> dict[str, Any]:
    """Run $member-match for the calling client and return the output Parameters."""
    if grant.context != CONTEXT_SYSTEM or not (
        grants(grant.scopes, CONTEXT_SYSTEM, "Patient", "r")
        or grants(grant.scopes, CONTEXT_SYSTEM, "Patient", "s")
    ):
        raise FhirError(
            403,
            "forbidden",
            "$member-match needs a backend-services token with system Patient scope",
        )
    parameters = read_parameters(body)
    patient = parameters["MemberPatient"]
    consent = None
    if "Consent" in parameters:
        try:
            consent = read_consent(parameters["Consent"], member_patient_id=patient.get("id"))
        except ConsentProblem as exc:
            raise FhirError(
                422, "business-rule", f"the consent cannot be honoured: {exc}"
            ) from None
    try:
        member = unique_member(sandbox, patient, parameters["CoverageToMatch"])
    except MatchRefused as refused:
        if refused.retry_after_s is not None:
            raise FhirError(
                429,
                refused.code,
                refused.diagnostics,
                headers={"Retry-After": str(refused.retry_after_s)},
            ) from None
        raise FhirError(422, refused.code, refused.diagnostics) from None
    if consent is not None:
        problem = refusal_of_consent(sandbox, grant, consent)
        if problem:
            raise FhirError(422, "business-rule", f"the consent cannot be honoured: {problem}")
        held = sandbox.consents.keep(
            consent, client_id=grant.client_id, patient_id=member.patient_id
        )
        sandbox.consent_subscriber.follow([held])
    return {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "MemberIdentifier",
                "valueIdentifier": {
                    "type": {"coding": [{"system": HREX_TEMP, "code": "UMB"}]},
                    "system": sandbox.identity.member_system,
                    "value": member.member_number,
                    "assigner": {"display": sandbox.identity.name},
                },
            },
            {"name": "MemberId", "valueReference": {"reference": f"Patient/{member.patient_id}"}},
        ],
    }

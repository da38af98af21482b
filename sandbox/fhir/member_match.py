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

import pydantic
from fhir.resources.R4B.parameters import Parameters

from sandbox.auth.scopes import grants
from sandbox.auth.tokens import CONTEXT_SYSTEM, Grant
from sandbox.data.population import Member
from sandbox.fhir.consents import ConsentProblem, consent_problem, read_consent
from sandbox.fhir.outcomes import FhirError
from sandbox.runtime import Sandbox

HREX_TEMP = "http://hl7.org/fhir/us/davinci-hrex/CodeSystem/hrex-temp"
PARAMETER_TYPES = {
    "MemberPatient": "Patient",
    "CoverageToMatch": "Coverage",
    "CoverageToLink": "Coverage",
    "Consent": "Consent",
}
REQUIRED = ("MemberPatient", "CoverageToMatch")


def _first_error(exc: pydantic.ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error.get("loc", ()))
    return f"{where}: {error.get('msg', 'invalid')}"


def read_parameters(body: Any) -> dict[str, dict[str, Any]]:
    """Return the request's resources by parameter name, or raise 400 naming the problem."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        found = body.get("resourceType") if isinstance(body, dict) else type(body).__name__
        raise FhirError(400, "invalid", f"the body must be a Parameters resource, not {found}")
    found_parameters: dict[str, dict[str, Any]] = {}
    for parameter in body.get("parameter", []):
        if not isinstance(parameter, dict):
            raise FhirError(400, "structure", "every parameter must be a JSON object")
        name = parameter.get("name")
        if name not in PARAMETER_TYPES:
            raise FhirError(400, "invalid", f"unknown $member-match parameter {name!r}")
        if name in found_parameters:
            raise FhirError(400, "invalid", f"parameter {name} appears more than once")
        resource = parameter.get("resource")
        expected = PARAMETER_TYPES[name]
        if not isinstance(resource, dict) or resource.get("resourceType") != expected:
            raise FhirError(400, "invalid", f"parameter {name} must carry a {expected} resource")
        found_parameters[name] = resource
    try:
        Parameters.model_validate(body)
    except pydantic.ValidationError as exc:
        raise FhirError(400, "structure", f"invalid Parameters: {_first_error(exc)}") from None
    for name in REQUIRED:
        if name not in found_parameters:
            raise FhirError(400, "required", f"parameter {name} is required")
    return found_parameters


def _demographics(patient: dict[str, Any]) -> tuple[str, list[str], str, str]:
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


def _card_numbers(coverage: dict[str, Any]) -> set[str]:
    numbers = {str(i["value"]).strip() for i in coverage.get("identifier", []) if i.get("value")}
    if coverage.get("subscriberId"):
        numbers.add(str(coverage["subscriberId"]).strip())
    if not numbers:
        raise FhirError(
            400, "required", "CoverageToMatch carries no identifier or subscriberId to match on"
        )
    return numbers


def _matches(sandbox: Sandbox, patient: dict[str, Any], coverage: dict[str, Any]) -> list[Member]:
    family, given, birth_date, gender = _demographics(patient)
    cards = _card_numbers(coverage)
    return [
        member
        for member in sandbox.population.candidates(family, birth_date, gender)
        if any(g.lower() in given for g in member.person.given)
        and (member.card_number in cards or member.member_number in cards)
    ]


def _unprocessable(code: str, diagnostics: str) -> FhirError:
    return FhirError(422, code, diagnostics)


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
    family, given, birth_date, gender = _demographics(patient)
    key = (family.lower(), " ".join(sorted(given)), birth_date, gender)
    wait = sandbox.match_throttle.retry_after(key)
    if wait is not None:
        seconds = max(1, math.ceil(wait))
        raise FhirError(
            429,
            "throttled",
            "too many failed $member-match attempts for these demographics; "
            f"try again in {seconds} seconds",
            headers={"Retry-After": str(seconds)},
        )
    consent = None
    if "Consent" in parameters:
        try:
            consent = read_consent(parameters["Consent"], member_patient_id=patient.get("id"))
        except ConsentProblem as exc:
            raise _unprocessable(
                "business-rule", f"the consent cannot be honoured: {exc}"
            ) from None
    found = _matches(sandbox, patient, parameters["CoverageToMatch"])
    if not found:
        sandbox.match_throttle.record_failure(key)
        raise _unprocessable("not-found", "no member matches the MemberPatient and CoverageToMatch")
    if len(found) > 1:
        raise _unprocessable(
            "multiple-matches",
            f"{len(found)} members match the MemberPatient and CoverageToMatch; no unique match",
        )
    sandbox.match_throttle.clear(key)
    member = found[0]
    if consent is not None:
        problem = consent_problem(
            consent,
            client=sandbox.clients.get(grant.client_id),
            today=sandbox.today(),
            can_segment=sandbox.config.can_segment,
        )
        if problem:
            raise _unprocessable("business-rule", f"the consent cannot be honoured: {problem}")
        sandbox.consents.keep(consent, client_id=grant.client_id, patient_id=member.patient_id)
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

"""`POST [base]/Group/$bulk-member-match` (PDex STU 2.2 §Bulk member match, async).

In: a Parameters with one ``MemberBundle`` per member, parts ``MemberPatient`` 1..1,
``CoverageToMatch`` 1..1, ``CoverageToLink`` 0..1, ``Consent`` 1..1. Each member is matched
exactly like ``$member-match`` and lands in exactly one Group (codes of
PdexMultiMemberMatchResultCS): ``match``; ``nomatch`` (no member, several members, or
demographics locked out for guessing); ``consentconstraint`` (matched, but the consent
cannot be honoured). The consent of every matched member is kept for later data requests.

Out: STU 2.2, a bulk manifest listing an NDJSON file of the Groups; STU 2.1 (when the
kick-off asks ``_outputFormat=application/fhir+json``), one Parameters with
``MatchedMembers``, ``NonMatchedMembers`` and ``ConsentConstrainedMembers``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

from sandbox.auth.scopes import MATCH_RESULT_SYSTEM
from sandbox.auth.tokens import Grant
from sandbox.data.population import Member
from sandbox.fhir.bulk_jobs import JobContext
from sandbox.fhir.consents import ConsentProblem, HeldConsent, read_consent
from sandbox.fhir.member_match import (
    MatchRefused,
    card_numbers,
    check_structure,
    demographics,
    parameters_of,
    read_parts,
    refusal_of_consent,
    require_parts,
    unique_member,
)
from sandbox.fhir.outcomes import FhirError
from sandbox.organizations import NPI_SYSTEM
from sandbox.runtime import Sandbox

Resource = dict[str, Any]
PDEX = "http://hl7.org/fhir/us/davinci-pdex"
MATCH_PARAMETERS_EXTENSION = f"{PDEX}/StructureDefinition/base-ext-match-parameters"
MATCH, NO_MATCH, CONSENT_CONSTRAINT = "match", "nomatch", "consentconstraint"
# (display, Group.name, STU 2.1 output parameter, profile) per result code.
RESULT_CODES = {
    MATCH: ("Matched", "Matched Members", "MatchedMembers", "pdex-member-match-group"),
    NO_MATCH: (
        "Not Matched",
        "Non-Matched Members",
        "NonMatchedMembers",
        "pdex-member-no-match-group",
    ),
    CONSENT_CONSTRAINT: (
        "Consent Constraint",
        "Consent-Constrained Members",
        "ConsentConstrainedMembers",
        "pdex-member-no-match-group",
    ),
}
BUNDLE_REQUIRED = ("MemberPatient", "CoverageToMatch", "Consent")
MAX_MEMBERS = 20_000
PROGRESS_EVERY = 250


@dataclass(frozen=True)
class SubmittedMember:
    """One MemberBundle: what the requester knows of a member, and the member's consent."""

    bundle: Resource
    patient: Resource
    coverage_to_match: Resource
    consent: Resource


def read_member_bundles(body: Any) -> list[SubmittedMember]:
    """Return the request's MemberBundles, or raise 400/422 naming the problem and the bundle."""
    submitted = []
    seen: dict[tuple[str, ...], int] = {}
    for number, parameter in enumerate(parameters_of(body), start=1):
        where = f"MemberBundle {number}"
        if not isinstance(parameter, dict) or parameter.get("name") != "MemberBundle":
            name = parameter.get("name") if isinstance(parameter, dict) else parameter
            raise FhirError(
                400, "invalid", f"parameter {number} is {name!r}; only MemberBundle is accepted"
            )
        if not isinstance(parameter.get("part"), list):
            raise FhirError(400, "required", f"{where} has no parts")
        try:
            parts = read_parts(parameter["part"], operation="$bulk-member-match")
            require_parts(parts, operation="$bulk-member-match", required=BUNDLE_REQUIRED)
            family, given, birth_date, gender = demographics(parts["MemberPatient"])
            cards = card_numbers(parts["CoverageToMatch"])
        except FhirError as error:
            raise FhirError(error.status, error.code, f"{where}: {error.diagnostics}") from None
        key = (family.lower(), *sorted(given), birth_date, gender, *sorted(cards))
        if key in seen:
            # Each member must land in exactly one Group; the same member twice cannot.
            raise FhirError(
                422,
                "business-rule",
                f"{where} submits the same member as MemberBundle {seen[key]}",
            )
        seen[key] = number
        submitted.append(
            SubmittedMember(
                bundle=parameter,
                patient=parts["MemberPatient"],
                coverage_to_match=parts["CoverageToMatch"],
                consent=parts["Consent"],
            )
        )
    if not submitted:
        raise FhirError(400, "required", "$bulk-member-match needs at least one MemberBundle")
    if len(submitted) > MAX_MEMBERS:
        raise FhirError(
            422,
            "too-costly",
            f"{len(submitted)} MemberBundles; this server matches at most {MAX_MEMBERS} at once",
        )
    return submitted


def _check_member_bundles(submitted: list[SubmittedMember], context: JobContext) -> None:
    """Raise 400 naming the first MemberBundle that is not valid FHIR R4.

    Validating every element against the FHIR models costs about 2 ms a member, too slow
    for the kick-off of a large request; so it runs first thing in the job, before any
    match, and a failure is the job's answer at the status URL (Bulk Data STU2 §Error Status).
    """
    for number, member_bundle in enumerate(submitted, start=1):
        if number % PROGRESS_EVERY == 1:
            context.progress(f"checked {number - 1} of {len(submitted)} MemberBundles")
        try:
            check_structure({"resourceType": "Parameters", "parameter": [member_bundle.bundle]})
        except FhirError as error:
            raise FhirError(
                error.status, error.code, f"MemberBundle {number}: {error.diagnostics}"
            ) from None


@dataclass
class _GroupBuilder:
    """The members of one result Group, with their submitted Patients contained."""

    code: str
    contained: list[Resource] = field(default_factory=list)
    members: list[Resource] = field(default_factory=list)
    _ids: set[str] = field(default_factory=set)

    def add(self, submitted: Resource, member: Member | None) -> None:
        # The submitted Patient is contained unaltered, except for an id that would clash
        # with (or is missing among) the Group's other contained Patients.
        contained_id = submitted.get("id")
        if not isinstance(contained_id, str) or contained_id in self._ids:
            contained_id = f"member-{len(self.members) + 1}"
        self._ids.add(contained_id)
        self.contained.append(submitted | {"id": contained_id})
        local = f"#{contained_id}"
        self.members.append(
            {
                "entity": {
                    "extension": [
                        {"url": MATCH_PARAMETERS_EXTENSION, "valueReference": {"reference": local}}
                    ],
                    # Only matched members are named; the others stay the submitted Patient.
                    "reference": f"Patient/{member.patient_id}" if member else local,
                }
            }
        )

    def resource(
        self, *, sandbox: Sandbox, requester: Resource, request_id: str, today: dt.date
    ) -> Resource:
        display, name, _, profile = RESULT_CODES[self.code]
        code = {"coding": [{"system": MATCH_RESULT_SYSTEM, "code": self.code, "display": display}]}
        identity = sandbox.identity
        return {
            "resourceType": "Group",
            "id": uuid.uuid4().hex,
            "meta": {
                "lastUpdated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "profile": [f"{PDEX}/StructureDefinition/{profile}"],
            },
            "contained": self.contained,
            "identifier": [
                requester["identifier"],
                {
                    "system": f"https://sandbox.example.org/{identity.slug}/bulk-member-match",
                    "value": request_id,
                },
            ],
            "type": "person",
            "actual": True,
            "code": code,
            "name": name,
            "quantity": len(self.members),
            "managingEntity": {
                "identifier": {"system": NPI_SYSTEM, "value": identity.npi},
                "display": identity.name,
            },
            "characteristic": [
                {
                    "code": code,
                    "valueReference": requester,
                    "exclude": False,
                    "period": {"start": today.isoformat()},
                }
            ],
            "member": self.members,
        }


def _classify(
    sandbox: Sandbox, grant: Grant, submitted: SubmittedMember
) -> tuple[str, Member | None, HeldConsent | None]:
    """Return the result code, and for a match the member and the consent to keep."""
    try:
        member = unique_member(sandbox, submitted.patient, submitted.coverage_to_match)
    except MatchRefused:
        return NO_MATCH, None, None
    try:
        # The MemberBundle ties the consent to its member, so Consent.patient is not
        # compared with the MemberPatient's id (the PDex example itself differs there).
        consent = read_consent(submitted.consent, member_patient_id=None)
    except ConsentProblem:
        return CONSENT_CONSTRAINT, None, None
    if refusal_of_consent(sandbox, grant, consent):
        return CONSENT_CONSTRAINT, None, None
    return MATCH, member, consent


def requesting_payer(sandbox: Sandbox, grant: Grant) -> Resource:
    """Return the reference to the requesting payer: its client's registered organization."""
    client = sandbox.clients.get(grant.client_id)
    # Unbound clients are bound by their first $member-match consent (clients.py).
    if client is None or client.organization_identifier is None:
        raise FhirError(
            403,
            "forbidden",
            "the client acts for no organization yet: register it with organization_identifier, "
            "or make one $member-match first (its consent's recipient binds the client)",
        )
    return {
        "identifier": dict(client.organization_identifier),
        "display": client.client_name or client.client_id,
    }


def run_bulk_member_match(
    sandbox: Sandbox,
    grant: Grant,
    submitted: list[SubmittedMember],
    context: JobContext,
    *,
    requester: Resource,
    as_parameters: bool,
) -> Resource | None:
    """Match every submitted member, keep the Groups, and write them (or return STU 2.1 Parameters)."""
    _check_member_bundles(submitted, context)
    builders = {code: _GroupBuilder(code) for code in RESULT_CODES}
    kept: list[tuple[HeldConsent, str]] = []
    for done, member_bundle in enumerate(submitted):
        if context.cancelled:
            return None
        if done % PROGRESS_EVERY == 0:
            context.progress(f"matched {done} of {len(submitted)} members")
        code, member, consent = _classify(sandbox, grant, member_bundle)
        builders[code].add(member_bundle.patient, member)
        if member and consent:
            kept.append((consent, member.patient_id))
    sandbox.consent_subscriber.follow(sandbox.consents.keep_many(kept, client_id=grant.client_id))
    request_id = uuid.uuid4().hex
    # MatchedMembers is 1..1 in the OperationDefinition; the other two only when non-empty.
    groups = {
        code: builder.resource(
            sandbox=sandbox, requester=requester, request_id=request_id, today=sandbox.today()
        )
        for code, builder in builders.items()
        if code == MATCH or builder.members
    }
    sandbox.groups.add_many(list(groups.values()), client_id=grant.client_id)
    if as_parameters:
        return {
            "resourceType": "Parameters",
            "parameter": [
                {"name": RESULT_CODES[code][2], "resource": group} for code, group in groups.items()
            ],
        }
    for group in groups.values():
        context.output.write(group)
    return None

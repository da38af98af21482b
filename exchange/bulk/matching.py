"""Match a chunk of a cohort at its holder: ``Group/$bulk-member-match`` (PDex STU 2.2).

In (SPEC.md "Many members"): a ``Parameters`` with one ``MemberBundle`` per member, parts
``MemberPatient``, ``CoverageToMatch``, ``CoverageToLink`` and ``Consent`` (1..1 here, PDex
§pdex-208) — the same four resources a single ``$member-match`` sends
(exchange/member_match.py). Each MemberPatient gets a local id naming its CohortMember
(``cm-<id>``), which the holder keeps when it contains the Patient, unaltered, in the
result Group (``base-ext-match-parameters``).

Out: Groups, one per result code of PdexMultiMemberMatchResultCS — STU 2.2 as NDJSON files
of a bulk manifest, STU 2.1 as one ``Parameters`` with ``MatchedMembers``,
``NonMatchedMembers`` and ``ConsentConstrainedMembers``. ``correlate`` puts every member
of the chunk in exactly one outcome, and refuses an answer that loses a member, names one
twice, or names one the hub did not send.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from exchange.fhir.elements import repeated
from exchange.fhir.errors import FhirPermanentError
from exchange.member_match import member_match_parts, patient_id_of
from exchange.models import CohortMember, MatchOutcome
from exchange.screening.structural_validation import structural_problems
from exchange.smart.scopes import MATCH_RESULT_SYSTEM, PDEX

MULTI_MEMBER_MATCH_IN = f"{PDEX}/StructureDefinition/pdex-parameters-multi-member-match-bundle-in"
MATCH_PARAMETERS_EXTENSION = f"{PDEX}/StructureDefinition/base-ext-match-parameters"
# The STU 2.1 output parameters, by the result code of their Group.
STU21_PARAMETERS = {
    "MatchedMembers": MatchOutcome.MATCH,
    "NonMatchedMembers": MatchOutcome.NO_MATCH,
    "ConsentConstrainedMembers": MatchOutcome.CONSENT_CONSTRAINT,
}
_LOCAL_PREFIX = "cm-"


def local_patient_id(cohort_member_id: int) -> str:
    """Return the MemberPatient id that names ``cohort_member_id`` in its MemberBundle."""
    return f"{_LOCAL_PREFIX}{cohort_member_id}"


def member_bundle(cohort_member: CohortMember) -> dict[str, Any]:
    """Return the ``MemberBundle`` parameter of one member of a cohort, each resource checked
    as FHIR R4 JSON; raise FhirPermanentError naming the part that is not.

    Checked member by member, with the screening's structural validator, rather than the
    whole chunk's Parameters against the R4B model (as a single $member-match is): one
    member's bad data then fails that member alone, and 500 members take milliseconds
    instead of seconds.
    """
    parts = member_match_parts(
        exchange_request=cohort_member.exchange_request,
        patient_id=local_patient_id(cohort_member.pk),
    )
    for part in parts:
        problems = structural_problems(part["resource"])
        if problems:
            raise FhirPermanentError(
                f"The hub could not build a valid match request for this member "
                f"({part['name']}.{problems[0]}).",
                code="invalid_match_request",
            )
    return {"name": "MemberBundle", "part": parts}


def match_parameters(bundles: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the PDexMultiMemberMatchRequestParameters of these MemberBundles."""
    return {
        "resourceType": "Parameters",
        "meta": {"profile": [MULTI_MEMBER_MATCH_IN]},
        "parameter": bundles,
    }


@dataclass(frozen=True)
class MemberOutcome:
    """Where one member of the chunk landed: the result code, its Group, its Patient there."""

    outcome: str
    group_id: str
    patient_id: str = ""


def groups_of_parameters(answer: dict[str, Any], *, holder_name: str) -> list[dict[str, Any]]:
    """Return the Groups of an STU 2.1 answer (one Parameters), each with its result code."""
    groups = []
    where = f"{holder_name}'s answer to $bulk-member-match"
    for parameter in repeated(answer, "parameter", where=where, code="malformed_match_answer"):
        name = parameter.get("name") if isinstance(parameter, dict) else None
        if not isinstance(name, str) or name not in STU21_PARAMETERS:
            continue
        group = parameter.get("resource")
        if not isinstance(group, dict) or group.get("resourceType") != "Group":
            raise FhirPermanentError(
                f"{holder_name} answered $bulk-member-match with {name} that holds no Group.",
                code="malformed_match_answer",
            )
        # STU 2.1 says the code by the parameter's name; a Group may not carry it itself.
        groups.append({**group, "_outcome": STU21_PARAMETERS[name]})
    return groups


def _group_outcome(group: dict[str, Any], *, holder_name: str) -> str:
    if "_outcome" in group:
        return str(group["_outcome"])
    codes = [
        coding.get("code")
        for concept in [group.get("code"), *(c.get("code") for c in _list(group, "characteristic"))]
        if isinstance(concept, dict)
        for coding in _list(concept, "coding")
        if isinstance(coding, dict) and coding.get("system") == MATCH_RESULT_SYSTEM
    ]
    found = {code for code in codes if code in MatchOutcome.values}
    if len(found) != 1:
        raise FhirPermanentError(
            f"{holder_name} sent a Group ({group.get('id') or 'without an id'}) whose code is not "
            f"one of {', '.join(MatchOutcome.values)} ({MATCH_RESULT_SYSTEM}).",
            code="malformed_match_answer",
        )
    return found.pop()


def _list(node: dict[str, Any], key: str) -> list[Any]:
    value = node.get(key)
    return value if isinstance(value, list) else []


def _submitted_local_id(entity: dict[str, Any], contained: dict[str, dict[str, Any]]) -> str:
    """Return the local id of the MemberPatient a Group member came from (PDex
    base-ext-match-parameters, a reference to the contained, unaltered Patient)."""
    for extension in _list(entity, "extension"):
        if isinstance(extension, dict) and extension.get("url") == MATCH_PARAMETERS_EXTENSION:
            reference = (extension.get("valueReference") or {}).get("reference")
            if isinstance(reference, str) and reference.startswith("#"):
                local = contained.get(reference[1:])
                if local is not None:
                    return str(local.get("id"))
    reference = entity.get("reference")
    if isinstance(reference, str) and reference.startswith("#"):
        return reference[1:]
    return ""


@dataclass
class MatchReport:
    """Every member of a chunk in exactly one place: an outcome, or a failure saying why."""

    outcomes: dict[int, MemberOutcome]
    # CohortMember id -> why the answer does not tell this member's outcome.
    failed: dict[int, str]
    # What the answer said of members the hub never sent (ignored, shown to administrators).
    remarks: list[str]


def correlate(
    groups: Iterable[dict[str, Any]], *, sent: dict[str, int], holder_name: str
) -> MatchReport:
    """Put every member sent (CohortMember id by local Patient id) in exactly one place.

    Each member lands in exactly one Group (PDex STU 2.2 §Bulk member match). A member the
    answer names twice, or leaves out, has no outcome the hub can trust: it fails, with a
    sentence saying so; every other member carries on.
    """
    outcomes: dict[int, MemberOutcome] = {}
    failed: dict[int, str] = {}
    remarks: list[str] = []
    for group in groups:
        outcome = _group_outcome(group, holder_name=holder_name)
        group_id = str(group.get("id") or "")
        if outcome == MatchOutcome.MATCH and not group_id:
            raise FhirPermanentError(
                f"{holder_name} sent a matched Group without an id, so its data cannot be asked for.",
                code="malformed_match_answer",
            )
        contained = {
            str(resource.get("id")): resource
            for resource in _list(group, "contained")
            if isinstance(resource, dict) and resource.get("resourceType") == "Patient"
        }
        for member in _list(group, "member"):
            entity = member.get("entity") if isinstance(member, dict) else None
            if not isinstance(entity, dict):
                continue
            local_id = _submitted_local_id(entity, contained)
            cohort_member_id = sent.get(local_id)
            if cohort_member_id is None:
                remarks.append(
                    f"Group {group_id} names a member the hub did not send "
                    f"({local_id or 'no reference to a submitted Patient'}); ignored."
                )
                continue
            if cohort_member_id in outcomes or cohort_member_id in failed:
                outcomes.pop(cohort_member_id, None)
                failed[cohort_member_id] = (
                    f"{holder_name} listed this member in more than one Group (or twice in one), "
                    "so the hub cannot tell whether it matched; retry the chunk or ask "
                    f"{holder_name} to check its $bulk-member-match."
                )
                continue
            patient_id = patient_id_of(entity.get("reference"))
            if outcome == MatchOutcome.MATCH and not patient_id:
                failed[cohort_member_id] = (
                    f"{holder_name} matched this member without saying which of its Patients it is."
                )
                continue
            outcomes[cohort_member_id] = MemberOutcome(
                outcome, group_id, patient_id if outcome == MatchOutcome.MATCH else ""
            )
    for member_id in sent.values():
        if member_id not in outcomes and member_id not in failed:
            failed[member_id] = (
                f"{holder_name}'s answer to $bulk-member-match left this member out of every "
                "Group, so the hub cannot tell whether it matched; retry the chunk."
            )
    return MatchReport(outcomes=outcomes, failed=failed, remarks=remarks)

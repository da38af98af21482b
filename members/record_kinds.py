"""Record kinds in the words members use, in place of FHIR resource type names.

The one place that names what a member's records are: the member pages read counts keyed
by FHIR resource type (the request's counts while records arrive, the delivery manifest's
``resourceCounts`` once packaged) and show them through ``record_kinds_in_words``.
"""

from dataclasses import dataclass

# Several FHIR types are one thing to a member: a claim, its explanation of benefit and
# the visit it paid for are all "a visit that was billed". Unknown types fall to OTHER.
PLAIN_NAMES: dict[str, str] = {
    "ExplanationOfBenefit": "Claims and visits",
    "Claim": "Claims and visits",
    "ClaimResponse": "Claims and visits",
    "Encounter": "Claims and visits",
    "Condition": "Conditions and diagnoses",
    "MedicationRequest": "Medicines",
    "MedicationDispense": "Medicines",
    "MedicationStatement": "Medicines",
    "Medication": "Medicines",
    "Observation": "Lab results and measurements",
    "DiagnosticReport": "Lab results and measurements",
    "Immunization": "Immunizations (vaccines)",
    "AllergyIntolerance": "Allergies",
    "Procedure": "Procedures",
    "CarePlan": "Care plans",
    "Goal": "Care plans",
    "CareTeam": "Your care team",
    "DocumentReference": "Documents and notes",
    "Coverage": "Insurance coverage",
    "Patient": "Your personal details",
    "RelatedPerson": "Your personal details",
    "Practitioner": "Doctors, places of care and plans",
    "PractitionerRole": "Doctors, places of care and plans",
    "Organization": "Doctors, places of care and plans",
    "Location": "Doctors, places of care and plans",
    "Device": "Medical devices",
    "ServiceRequest": "Prior authorizations and referrals",
    "Provenance": "Records of where this came from",
}
OTHER = "Other records"


@dataclass(frozen=True)
class RecordKind:
    name: str
    count: int


def record_kind_name(resource_type: str) -> str:
    """Return what a member calls a record of ``resource_type``."""
    return PLAIN_NAMES.get(resource_type, OTHER)


def record_kinds_in_words(counts: dict[str, int]) -> list[RecordKind]:
    """Return ``counts`` (by FHIR type) merged by plain name, largest kind first."""
    merged: dict[str, int] = {}
    for resource_type, count in counts.items():
        name = record_kind_name(resource_type)
        merged[name] = merged.get(name, 0) + count
    return [
        RecordKind(name, count)
        for name, count in sorted(merged.items(), key=lambda item: (-item[1], item[0]))
        if count
    ]

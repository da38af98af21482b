"""Which resource types the API serves and the search parameters of each."""

from __future__ import annotations

MEMBER_TYPES = (
    "Patient",
    "Coverage",
    "Condition",
    "Observation",
    "Encounter",
    "Procedure",
    "MedicationRequest",
    "Immunization",
    "AllergyIntolerance",
    "DiagnosticReport",
    "DocumentReference",
    "CarePlan",
    "CareTeam",
    "Goal",
    "Provenance",
    "ExplanationOfBenefit",
)
DIRECTORY_TYPES = ("Practitioner", "Organization")
SERVED_TYPES = MEMBER_TYPES + DIRECTORY_TYPES

# Parameters every search accepts (paging is this server's own `_offset` cursor).
RESULT_PARAMETERS = ("_count", "_offset", "_format")
CATEGORY_TYPES = ("Condition", "Observation", "DiagnosticReport", "DocumentReference", "CarePlan")


def search_parameters(resource_type: str) -> dict[str, str]:
    """Return the search parameters of resource_type and their FHIR types."""
    params = {"_id": "token"}
    if resource_type == "Patient":
        params["identifier"] = "token"
    elif resource_type not in DIRECTORY_TYPES:
        params["patient"] = "reference"
    if resource_type == "Coverage":
        params["beneficiary"] = "reference"
    if resource_type in CATEGORY_TYPES:
        params["category"] = "token"
    return params

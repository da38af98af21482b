"""Find a resource's dates of service: what the 5-year window and `service-date` filters read."""

from __future__ import annotations

from typing import Any

Resource = dict[str, Any]

# Where each type records when the care or the claim happened (FHIR R4 / US Core / CARIN BB).
# Patient, Coverage, CareTeam, Provenance and the directory types carry no date of service.
SERVICE_DATE_ELEMENTS: dict[str, tuple[str, ...]] = {
    "ExplanationOfBenefit": ("billablePeriod", "item.servicedDate", "item.servicedPeriod"),
    "Encounter": ("period",),
    "Condition": ("onsetDateTime", "recordedDate", "abatementDateTime"),
    "Observation": ("effectiveDateTime", "effectivePeriod"),
    "DiagnosticReport": ("effectiveDateTime", "effectivePeriod"),
    "Procedure": ("performedDateTime", "performedPeriod"),
    "MedicationRequest": ("authoredOn",),
    "Immunization": ("occurrenceDateTime",),
    "AllergyIntolerance": ("recordedDate",),
    "DocumentReference": ("context.period", "date"),
    "CarePlan": ("period",),
    "Goal": ("startDate",),
}


def _values(node: Any, path: list[str]) -> list[Any]:
    if not path:
        return [node]
    if isinstance(node, list):
        return [v for item in node for v in _values(item, path)]
    if isinstance(node, dict) and path[0] in node:
        return _values(node[path[0]], path[1:])
    return []


def service_period(
    resource: Resource, elements: tuple[str, ...] | None = None
) -> tuple[str, str] | None:
    """Return the first and last dates of service (YYYY-MM-DD) of resource, None if it has none.

    elements overrides the elements read (default: those of the resource's type).
    """
    paths = (
        SERVICE_DATE_ELEMENTS.get(resource.get("resourceType", ""), ())
        if elements is None
        else elements
    )
    dates: list[str] = []
    for path in paths:
        for value in _values(resource, path.split(".")):
            if isinstance(value, str):
                dates.append(value[:10])
            elif isinstance(value, dict):
                dates += [value[k][:10] for k in ("start", "end") if isinstance(value.get(k), str)]
    if not dates:
        return None
    return min(dates), max(dates)

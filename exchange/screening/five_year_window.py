"""The five-year rule: only data with a date of service within 5 years of the request leaves.

CMS-0057-F (42 CFR 422.121(b)(4) and its Medicaid/CHIP/QHP twins), as PDex STU 2.2
"Payer-to-Payer Exchange" puts it: "Claims and clinical data SHALL be limited to records
with a service date within 5 years of the date of request for data" (SPEC.md, "The rule").
Prior authorizations have their own limit (``prior_authorizations.py``) and are not judged
here.

A resource's date of service is read through ``SERVICE_DATE_PATHS``: per resource type,
groups of element paths tried in order; the first group that yields any date gives the
date of service, the latest date it yields. Later groups are fallbacks that record when
the information was written rather than when the care happened (``created``, ``issued``),
used only when no service date is present.

Reading a value:
- a date or dateTime counts by its calendar date as written; a partial date (``2019``,
  ``2019-05``) by its last day, since the service could have happened on it;
- a Period by its end; a Period without end is ongoing (FHIR R4 §2.24.0.11 Period: "If the
  end of the period is missing, it means ... the period is ongoing"), so it is in the window;
- other choice types (Age, Range, string, Timing) carry no calendar date and are skipped.

Kept without a date check:
- types that record no care event (Patient, Coverage, Practitioner, PractitionerRole,
  Organization, Location, RelatedPerson, Medication, Device, Group, Provenance — the last
  documents where other data came from): every type not in the table;
- a resource of a listed type in which no path yields a date: the rule limits data *with*
  a service date; dropping undated clinical facts (an allergy, a problem) could withhold
  what the new payer needs, and nothing shows it is older than five years.
"""

import calendar
from collections.abc import Iterator
from datetime import date
from typing import Any

Resource = dict[str, Any]

_CLAIM_DATES = (
    "billablePeriod.start",
    "billablePeriod.end",
    "item.servicedDate",
    "item.servicedPeriod.start",
    "item.servicedPeriod.end",
)

SERVICE_DATE_PATHS: dict[str, tuple[tuple[str, ...], ...]] = {
    "AllergyIntolerance": (("onset[x]", "lastOccurrence", "recordedDate"),),
    "CarePlan": (("period",), ("created",)),
    "CareTeam": (("period",),),
    "Claim": (_CLAIM_DATES, ("created",)),
    "ClaimResponse": (("created",),),
    "Condition": (("onset[x]", "abatement[x]", "recordedDate"),),
    "DiagnosticReport": (("effective[x]",), ("issued",)),
    "DocumentReference": (("context.period",), ("date",)),
    "Encounter": (("period",),),
    "ExplanationOfBenefit": (_CLAIM_DATES, ("created",)),
    "Goal": (("start[x]", "statusDate"),),
    "ImagingStudy": (("started",),),
    "Immunization": (("occurrence[x]",), ("recorded",)),
    "MedicationAdministration": (("effective[x]",),),
    "MedicationDispense": (("whenHandedOver", "whenPrepared"),),
    "MedicationRequest": (("authoredOn",),),
    "MedicationStatement": (("effective[x]",), ("dateAsserted",)),
    "Observation": (("effective[x]",), ("issued",)),
    "Procedure": (("performed[x]",),),
    "QuestionnaireResponse": (("authored",),),
    "ServiceRequest": (("occurrence[x]",), ("authoredOn",)),
}

# Latest possible date: what an ongoing Period counts as.
_ONGOING = date.max


def years_before(day: date, years: int) -> date:
    """Return the same calendar day ``years`` earlier (29 February becomes the 28th)."""
    year = day.year - years
    return day.replace(year=year, day=min(day.day, calendar.monthrange(year, day.month)[1]))


def _values(node: Any, steps: list[str]) -> Iterator[Any]:
    """Yield every value at ``steps`` below ``node``, through lists and ``name[x]`` choices."""
    if isinstance(node, list):
        for element in node:
            yield from _values(element, steps)
        return
    if not steps:
        yield node
        return
    if not isinstance(node, dict):
        return
    step, rest = steps[0], steps[1:]
    if step.endswith("[x]"):
        stem = step[:-3]
        for key, value in node.items():
            if key.startswith(stem) and key[len(stem) : len(stem) + 1].isupper():
                yield from _values(value, rest)
    elif step in node:
        yield from _values(node[step], rest)


def last_day_meant(text: str) -> date | None:
    """Return the last calendar day a FHIR date/dateTime/instant string can mean."""
    try:
        if len(text) == 4:
            return date(int(text), 12, 31)
        if len(text) == 7:
            year, month = int(text[:4]), int(text[5:7])
            return date(year, month, calendar.monthrange(year, month)[1])
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def _latest_day(value: Any) -> date | None:
    if isinstance(value, str):
        return last_day_meant(value)
    if isinstance(value, dict) and ("start" in value or "end" in value):
        end = value.get("end")
        if isinstance(end, str):
            return last_day_meant(end)
        return _ONGOING
    return None


def service_date(resource: Resource) -> date | None:
    """Return the resource's date of service, or None when it has none (see module doc)."""
    for group in SERVICE_DATE_PATHS.get(resource.get("resourceType", ""), ()):
        days = [
            day
            for path in group
            for value in _values(resource, path.split("."))
            if (day := _latest_day(value)) is not None
        ]
        if days:
            return max(days)
    return None


def is_outside_five_years(resource: Resource, *, request_date: date) -> bool:
    """Tell whether the resource's date of service is before the 5-year window (inclusive start)."""
    day = service_date(resource)
    return day is not None and day < years_before(request_date, 5)

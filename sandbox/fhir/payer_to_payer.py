"""Decide what a holder discloses in a payer-to-payer export (CMS-0057-F; PDex STU 2.2).

SPEC "Getting the data": the holder applies the 5-year and prior-authorization limits
itself. Only data with a date of service within five years of the request; prior
authorizations (``ExplanationOfBenefit.use`` = ``preauthorization``): never denied ones,
never drug (pharmacy) ones, otherwise those still active (or pended) plus any whose
status changed within the last twelve months.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sandbox.fhir.service_dates import service_period

Resource = dict[str, Any]
PDEX = "http://hl7.org/fhir/us/davinci-pdex"
REVIEW_ACTION = f"{PDEX}/StructureDefinition/extension-reviewAction"
REVIEW_ACTION_CODE = f"{PDEX}/StructureDefinition/extension-reviewActionCode"
WHEN_ADJUDICATED = f"{PDEX}/StructureDefinition/base-ext-when-adjudicated"
X12_NOT_CERTIFIED = "A3"  # X12 306 review action "Not Certified": a denial
PHARMACY = "pharmacy"
STATUS_CHANGE_WINDOW = dt.timedelta(days=365)


def years_before(day: dt.date, years: int) -> dt.date:
    """Return the same calendar day `years` earlier (28 February for a 29 February)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def is_prior_authorization(resource: Resource) -> bool:
    """Return whether resource is a PDex prior authorization."""
    return (
        resource.get("resourceType") == "ExplanationOfBenefit"
        and resource.get("use") == "preauthorization"
    )


def _adjudication_extensions(resource: Resource) -> list[Resource]:
    return [
        extension
        for item in resource.get("item", [])
        for adjudication in item.get("adjudication", [])
        for extension in adjudication.get("extension", [])
    ]


def _is_denied(resource: Resource) -> bool:
    for extension in _adjudication_extensions(resource):
        if extension.get("url") != REVIEW_ACTION:
            continue
        for part in extension.get("extension", []):
            if part.get("url") != REVIEW_ACTION_CODE:
                continue
            codes = part.get("valueCodeableConcept", {}).get("coding", [])
            if any(c.get("code") == X12_NOT_CERTIFIED for c in codes):
                return True
    return False


def _last_status_change(resource: Resource) -> str:
    decided = [
        e["valueDateTime"][:10]
        for e in _adjudication_extensions(resource)
        if e.get("url") == WHEN_ADJUDICATED and isinstance(e.get("valueDateTime"), str)
    ]
    return max(decided, default=resource.get("meta", {}).get("lastUpdated", "")[:10])


def _still_active(resource: Resource, today: dt.date) -> bool:
    if resource.get("status") != "active":
        return False
    periods = resource.get("preAuthRefPeriod", [])
    # A pended request has no authorized period yet and is still open.
    return not periods or any(p.get("end", "9999") >= today.isoformat() for p in periods)


def prior_authorization_disclosable(resource: Resource, *, today: dt.date) -> bool:
    """Return whether a prior authorization may go to another payer today."""
    coding = resource.get("type", {}).get("coding", [])
    if any(c.get("code") == PHARMACY for c in coding) or _is_denied(resource):
        return False
    changed_recently = _last_status_change(resource) >= (today - STATUS_CHANGE_WINDOW).isoformat()
    return changed_recently or _still_active(resource, today)


def payer_to_payer_disclosable(resource: Resource, *, today: dt.date) -> bool:
    """Return whether resource falls within what a payer-to-payer export may disclose."""
    if is_prior_authorization(resource):
        return prior_authorization_disclosable(resource, today=today)
    period = service_period(resource)
    return period is None or period[1] >= years_before(today, 5).isoformat()

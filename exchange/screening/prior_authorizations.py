"""The prior-authorization rule: current ones and recent changes, never denied or drug ones.

CMS-0057-F (SPEC.md, "The rule"): prior authorizations "excluding denied ones and drug
ones"; "active ones plus those whose status changed within the last 12 months". PDex STU 2.2
(Payer-to-Payer Exchange): "Prior Authorizations SHALL be limited to Active/Current Prior
Authorizations and Prior Authorizations that have changed status within the last year, as
of the date of the information request".

A PDex Prior Authorization is an ``ExplanationOfBenefit`` with ``use`` = ``preauthorization``
(profile pdex-priorauthorization). What each notion reads:

- drug: ``type`` is claim-type ``pharmacy`` (SPEC.md: "drug PAs are the pharmacy type"), or a
  line's ``productOrService`` is coded in RxNorm or NDC (a drug whatever the claim type).
- review outcome of a line: the PDex ``extension-reviewAction`` on its adjudications, code
  from X12 306 (``A1`` certified in total, ``A2`` certified partial, ``A3`` not certified,
  ``A4`` pended, ...). When a line was reviewed more than once (denied, then approved on
  appeal — the example PDex gives), the review with the latest ``base-ext-when-adjudicated``
  is the current one.
- denied: every reviewed line's current outcome is ``A3``.
- current (active): pended (``outcome`` = ``queued`` or a current review ``A4``), or not
  cancelled/entered-in-error and a ``preAuthRefPeriod`` covers the request date (an approval
  still in force; a period without end is ongoing).
- status change date: PDex records it as ``base-ext-when-adjudicated`` on the adjudication
  (the latest one counts); without it, ``meta.lastUpdated``; then ``created``.
  "Within the last 12 months" means on or after the same calendar day a year before the
  request date.
"""

from datetime import date
from typing import Any

from exchange.screening.five_year_window import last_day_meant, years_before
from exchange.screening.reasons import RemovalReason

Resource = dict[str, Any]

PDEX = "http://hl7.org/fhir/us/davinci-pdex/StructureDefinition"
REVIEW_ACTION_URL = f"{PDEX}/extension-reviewAction"
REVIEW_ACTION_CODE_URL = f"{PDEX}/extension-reviewActionCode"
WHEN_ADJUDICATED_URL = f"{PDEX}/base-ext-when-adjudicated"
CLAIM_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/claim-type"
DRUG_CODE_SYSTEMS = frozenset(
    {"http://www.nlm.nih.gov/research/umls/rxnorm", "http://hl7.org/fhir/sid/ndc"}
)
# X12 306 Action Code.
NOT_CERTIFIED = "A3"
PENDED = "A4"
_WITHDRAWN_STATUSES = frozenset({"cancelled", "entered-in-error"})


def is_prior_authorization(resource: Resource) -> bool:
    return (
        resource.get("resourceType") == "ExplanationOfBenefit"
        and resource.get("use") == "preauthorization"
    )


def _codings(concept: Any) -> list[Resource]:
    if not isinstance(concept, dict):
        return []
    return [c for c in concept.get("coding", []) if isinstance(c, dict)]


def _lines(resource: Resource) -> list[Resource]:
    return [
        line
        for key in ("item", "addItem")
        for line in resource.get(key, [])
        if isinstance(line, dict)
    ]


def _is_drug(resource: Resource) -> bool:
    if any(
        c.get("system") == CLAIM_TYPE_SYSTEM and c.get("code") == "pharmacy"
        for c in _codings(resource.get("type"))
    ):
        return True
    return any(
        c.get("system") in DRUG_CODE_SYSTEMS
        for line in _lines(resource)
        for c in _codings(line.get("productOrService"))
    )


def _review(adjudication: Resource) -> tuple[str, str | None] | None:
    """Return (when adjudicated, X12 306 code) of one adjudication, None if not a review."""
    when, code = "", None
    for extension in adjudication.get("extension", []):
        if extension.get("url") == WHEN_ADJUDICATED_URL:
            when = str(extension.get("valueDateTime", ""))
        elif extension.get("url") == REVIEW_ACTION_URL:
            for part in extension.get("extension", []):
                if part.get("url") == REVIEW_ACTION_CODE_URL:
                    codes = _codings(part.get("valueCodeableConcept"))
                    code = codes[0].get("code") if codes else None
    if code is None and not when:
        return None
    return when, code


def _reviews_per_line(resource: Resource) -> list[list[tuple[str, str | None]]]:
    """Return the reviews of each reviewed line (the header's adjudication counts as a line)."""
    per_line = []
    for holder in (resource, *_lines(resource)):
        reviews = [
            review
            for adjudication in holder.get("adjudication", [])
            if isinstance(adjudication, dict) and (review := _review(adjudication))
        ]
        if reviews:
            per_line.append(reviews)
    return per_line


def _current_reviews(resource: Resource) -> list[str | None]:
    """Return each reviewed line's current review code: its latest adjudicated review."""
    return [
        max(reviews, key=lambda review: review[0])[1] for reviews in _reviews_per_line(resource)
    ]


def _is_denied(resource: Resource) -> bool:
    reviews = _current_reviews(resource)
    return bool(reviews) and all(code == NOT_CERTIFIED for code in reviews)


def _is_current(resource: Resource, *, request_date: date) -> bool:
    if resource.get("outcome") == "queued" or PENDED in _current_reviews(resource):
        return True
    if resource.get("status") in _WITHDRAWN_STATUSES:
        return False
    today = request_date.isoformat()
    for period in resource.get("preAuthRefPeriod", []):
        start, end = period.get("start"), period.get("end")
        if (start is None or start[:10] <= today) and (end is None or end[:10] >= today):
            return True
    return False


def status_changed_on(resource: Resource) -> date | None:
    """Return the date the prior authorization last changed status (see module doc)."""
    adjudicated = [when for reviews in _reviews_per_line(resource) for when, _ in reviews if when]
    candidates: list[Any] = [max(adjudicated)] if adjudicated else []
    candidates += [resource.get("meta", {}).get("lastUpdated"), resource.get("created")]
    for candidate in candidates:
        if isinstance(candidate, str) and (day := last_day_meant(candidate)) is not None:
            return day
    return None


def prior_authorization_exclusion(
    resource: Resource, *, request_date: date
) -> RemovalReason | None:
    """Return why this prior authorization may not leave, or None when it may."""
    if _is_drug(resource):
        return RemovalReason.PRIOR_AUTHORIZATION_DRUG
    if _is_denied(resource):
        return RemovalReason.PRIOR_AUTHORIZATION_DENIED
    if _is_current(resource, request_date=request_date):
        return None
    changed = status_changed_on(resource)
    if changed is not None and changed >= years_before(request_date, 1):
        return None
    return RemovalReason.PRIOR_AUTHORIZATION_NOT_CURRENT

"""The one place that decides what leaves the hub (STYLE.md #13), one resource at a time.

The order, and why:
1. structural validation (``structural_validation.py``) — an invalid resource is quarantined,
   never judged by the rules below, which may then rely on FHIR R4 JSON shapes;
2. the member's consent (``sensitivity.py``) — a privacy limit: counted first whenever a
   sensitive resource would also fail another rule;
3. prior authorizations (``prior_authorizations.py``) — their own limits replace the
   five-year window (PDex STU 2.2 states the two limits separately);
4. the five-year window (``five_year_window.py``) for claims and clinical data;
5. claim EOBs reduced to the non-financial view (``non_financial_claims.py``) — they still
   leave, counted as reduced.
"""

from dataclasses import dataclass
from datetime import date
from typing import Any

from exchange.models import ConsentPolicy
from exchange.screening.five_year_window import is_outside_five_years
from exchange.screening.non_financial_claims import claim_reduce_to_non_financial, is_claim
from exchange.screening.prior_authorizations import (
    is_prior_authorization,
    prior_authorization_exclusion,
)
from exchange.screening.reasons import RemovalReason
from exchange.screening.sensitivity import consent_exclusion
from exchange.screening.structural_validation import structural_problems

Resource = dict[str, Any]


@dataclass(frozen=True)
class Kept:
    resource: Resource
    reduced: bool


@dataclass(frozen=True)
class Removed:
    reason: RemovalReason


@dataclass(frozen=True)
class Quarantined:
    problems: list[str]


Decision = Kept | Removed | Quarantined


def resource_screen(resource: Any, *, request_date: date, policy: ConsentPolicy) -> Decision:
    """Decide one resource's fate; a kept claim EOB comes back reduced (changed in place)."""
    problems = structural_problems(resource)
    if problems:
        return Quarantined(problems)
    reason = consent_exclusion(resource, policy=policy)
    if reason is None and is_prior_authorization(resource):
        reason = prior_authorization_exclusion(resource, request_date=request_date)
    elif reason is None and is_outside_five_years(resource, request_date=request_date):
        reason = RemovalReason.OUTSIDE_FIVE_YEARS
    if reason is not None:
        return Removed(reason)
    reduced = is_claim(resource) and claim_reduce_to_non_financial(resource)
    return Kept(resource, reduced)

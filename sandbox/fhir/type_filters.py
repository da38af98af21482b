"""Read and apply Bulk Data `_typeFilter` queries (Bulk Data Access STU2 §_typeFilter).

Supported criteria (all others are refused with 400, never ignored: PDex says a holder
must not answer an unsupported filter with unfiltered data):

- any type: ``_lastUpdated=[prefix]YYYY-MM-DD``
- ExplanationOfBenefit: ``service-date=[prefix]YYYY-MM-DD`` (billablePeriod, item.serviced[x]),
  ``type=[system|]code``
- Condition, Observation, DiagnosticReport, DocumentReference, CarePlan: ``category=[system|]code``

Prefixes ``eq`` (default), ``ge``, ``gt``, ``le``, ``lt``; a comma between values means OR,
several criteria in one query mean AND, several queries for one type mean OR.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from sandbox.fhir.outcomes import FhirError
from sandbox.fhir.resource_types import CATEGORY_TYPES, SERVED_TYPES
from sandbox.fhir.search_values import concept_matches
from sandbox.fhir.service_dates import service_period

Resource = dict[str, Any]
Predicate = Callable[[Resource], bool]
_DATE_VALUE = re.compile(r"^(eq|ge|gt|le|lt)?(\d{4}-\d{2}-\d{2})$")
# Several queries may share one _typeFilter value, separated by commas before a type name.
_QUERY_SEPARATOR = re.compile(r",(?=[A-Z][A-Za-z]*\?)")
EOB_SERVICE_DATE = ("billablePeriod", "item.servicedDate", "item.servicedPeriod")


def _date_criterion(name: str, value: str, period_of: Callable[[Resource], Any]) -> Predicate:
    tests = []
    for one in value.split(","):
        match = _DATE_VALUE.match(one)
        if not match:
            raise FhirError(
                400, "not-supported", f"_typeFilter {name}={one!r}: use [eq|ge|gt|le|lt]YYYY-MM-DD"
            )
        try:
            dt.date.fromisoformat(match.group(2))
        except ValueError:
            raise FhirError(400, "invalid", f"_typeFilter {name}: {one!r} is not a date") from None
        tests.append((match.group(1) or "eq", match.group(2)))

    def matches(resource: Resource) -> bool:
        period = period_of(resource)
        if period is None:
            return False
        first, last = period
        return any(
            {
                "eq": first <= day <= last,
                "ge": last >= day,
                "gt": last > day,
                "le": first <= day,
                "lt": first < day,
            }[prefix]
            for prefix, day in tests
        )

    return matches


def _last_updated(resource: Resource) -> tuple[str, str] | None:
    day = resource.get("meta", {}).get("lastUpdated", "")[:10]
    return (day, day) if day else None


def _token_criterion(element: str, value: str) -> Predicate:
    wanted = value.split(",")
    return lambda r: any(concept_matches(r.get(element, []), w) for w in wanted)


def _criterion(resource_type: str, name: str, value: str) -> Predicate:
    if name == "_lastUpdated":
        return _date_criterion(name, value, _last_updated)
    if resource_type == "ExplanationOfBenefit" and name == "service-date":
        return _date_criterion(name, value, lambda r: service_period(r, EOB_SERVICE_DATE))
    if resource_type == "ExplanationOfBenefit" and name == "type":
        return _token_criterion("type", value)
    if resource_type in CATEGORY_TYPES and name == "category":
        return _token_criterion("category", value)
    raise FhirError(
        400,
        "not-supported",
        f"_typeFilter criterion {name!r} on {resource_type} is not supported; "
        "see the sandbox README for the supported ones",
    )


@dataclass(frozen=True)
class TypeFilter:
    """One `_typeFilter` query: a resource type and criteria that must all hold."""

    resource_type: str
    query: str
    criteria: tuple[Predicate, ...]

    def matches(self, resource: Resource) -> bool:
        """Return whether resource satisfies every criterion."""
        return all(criterion(resource) for criterion in self.criteria)


def parse_type_filter(query: str) -> TypeFilter:
    """Return the TypeFilter written as `Type?name=value&...`, or raise 400 naming the problem."""
    resource_type, mark, search = query.partition("?")
    if resource_type not in SERVED_TYPES:
        raise FhirError(400, "not-supported", f"_typeFilter {query!r}: type is not served here")
    pairs = parse_qsl(search, keep_blank_values=True) if mark else []
    if not pairs:
        raise FhirError(400, "invalid", f"_typeFilter {query!r} has no search criteria")
    return TypeFilter(
        resource_type=resource_type,
        query=query,
        criteria=tuple(_criterion(resource_type, name, value) for name, value in pairs),
    )


def split_type_filters(values: list[str]) -> list[str]:
    """Return the single queries of one or more (possibly comma-joined) `_typeFilter` values."""
    return [query for value in values for query in _QUERY_SEPARATOR.split(value) if query]

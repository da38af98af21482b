"""Compare search parameter values with resource elements (FHIR R4 §3.1.1.5 token, date, instant)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sandbox.fhir.outcomes import FhirError

Resource = dict[str, Any]


def concept_matches(concepts: Any, wanted: str) -> bool:
    """Return whether a CodeableConcept (or a list of them) has a coding matching [system|]code."""
    system, bar, code = wanted.rpartition("|")
    for concept in concepts if isinstance(concepts, list) else [concepts]:
        if not isinstance(concept, dict):
            continue
        for coding in concept.get("coding", []):
            if coding.get("code") == code and (not bar or coding.get("system") == system):
                return True
    return False


def identifier_matches(identifiers: Any, wanted: str) -> bool:
    """Return whether an Identifier (or a list of them) matches the token [system|]value."""
    system, bar, value = wanted.rpartition("|")
    for identifier in identifiers if isinstance(identifiers, list) else [identifiers]:
        if (
            isinstance(identifier, dict)
            and identifier.get("value") == value
            and (not bar or identifier.get("system") == system)
        ):
            return True
    return False


def instant_parameter(params: dict[str, str], name: str) -> str | None:
    """Return parameter name (a FHIR instant or date) as a UTC instant string, or raise 400."""
    raw = params.get(name)
    if raw is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise FhirError(400, "invalid", f"{name}={raw!r} is not a FHIR instant") from None
    if moment.tzinfo is None:
        if "T" in raw:
            raise FhirError(400, "invalid", f"{name} must carry a time zone")
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

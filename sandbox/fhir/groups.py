"""Keep the Groups `$bulk-member-match` made, each visible only to the client that asked.

PDex STU 2.2 §Bulk member match: a requester only ever sees its own Groups. Groups are
held per client (the same key the consents of its matches are held under), so one payer's
token never reaches another client's Groups: those are 404, not 403.

Search (PDex STU 2.2 SearchParameters): ``identifier``, ``code`` and ``characteristic``
(tokens), ``characteristic-value-reference`` (a reference; with ``:identifier``, or given
as ``system|value``, it is matched against ``valueReference.identifier``), plus ``_id``.
"""

from __future__ import annotations

import threading
from typing import Any

from sandbox.fhir.outcomes import FhirError
from sandbox.fhir.resource_types import RESULT_PARAMETERS
from sandbox.fhir.search_values import concept_matches, identifier_matches

Resource = dict[str, Any]
GROUP_SEARCH_PARAMETERS = {
    "_id": "token",
    "identifier": "token",
    "code": "token",
    "characteristic": "token",
    "characteristic-value-reference": "reference",
}
VALUE_REFERENCE = "characteristic-value-reference"


class GroupStore:
    """Groups by id, each owned by one client."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: dict[str, tuple[str, Resource]] = {}

    def add_many(self, groups: list[Resource], *, client_id: str) -> None:
        """Keep groups as client_id's."""
        with self._lock:
            for group in groups:
                self._groups[group["id"]] = (client_id, group)

    def get_for_client(self, client_id: str, group_id: str) -> Resource:
        """Return client_id's Group group_id, or raise 404 (also for another client's)."""
        with self._lock:
            owner, group = self._groups.get(group_id, ("", {}))
        if owner != client_id:
            raise FhirError(404, "not-found", f"Group/{group_id} is not known")
        return group

    def of_client(self, client_id: str) -> list[Resource]:
        """Return client_id's Groups, oldest first."""
        with self._lock:
            return [group for owner, group in self._groups.values() if owner == client_id]


def _value_reference_matches(group: Resource, wanted: str, *, by_identifier: bool) -> bool:
    # The requesting payer has no resource here, so valueReference carries only its
    # identifier; a plain `system|value` is read as that identifier, too.
    by_identifier = by_identifier or "|" in wanted
    for characteristic in group.get("characteristic", []):
        reference = characteristic.get("valueReference") or {}
        if by_identifier and identifier_matches(reference.get("identifier") or [], wanted):
            return True
        if not by_identifier and reference.get("reference") == wanted:
            return True
    return False


def groups_matching(groups: list[Resource], params: dict[str, str]) -> list[Resource]:
    """Return the groups matching every search parameter in params, or raise 400."""
    for name in params:
        base = name.removesuffix(":identifier") if name.startswith(VALUE_REFERENCE) else name
        if base not in GROUP_SEARCH_PARAMETERS and name not in RESULT_PARAMETERS:
            raise FhirError(400, "not-supported", f"unknown search parameter {name!r} for Group")
    found = groups
    for name, value in params.items():
        if name == "_id":
            ids = set(value.split(","))
            found = [g for g in found if g["id"] in ids]
        elif name == "identifier":
            found = [g for g in found if identifier_matches(g.get("identifier", []), value)]
        elif name == "code":
            found = [g for g in found if concept_matches(g.get("code", {}), value)]
        elif name == "characteristic":
            found = [
                g
                for g in found
                if concept_matches([c.get("code", {}) for c in g.get("characteristic", [])], value)
            ]
        elif name.startswith(VALUE_REFERENCE):
            by_identifier = name.endswith(":identifier")
            found = [
                g for g in found if _value_reference_matches(g, value, by_identifier=by_identifier)
            ]
    return found

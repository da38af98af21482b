"""Read what a former payer's CapabilityStatement offers: FHIR version, operations, searches.

The summary is what ``FhirEndpoint.capabilities`` keeps after a *Test* and what retrieval
decides by (SPEC.md "Getting the data": ``$everything``, else ``patient=`` searches of
every type the CapabilityStatement lists; for many members, which Group export to use).
"""

from typing import Any

from exchange.fhir.elements import repeated

FHIR_R4 = "4.0.1"
# The operations the hub uses, in the order a report lists them.
KNOWN_OPERATIONS = (
    "member-match",
    "everything",
    "bulk-member-match",
    "davinci-data-export",
    "export",
)
# The operations that export a matched Group, the preferred first.
GROUP_EXPORT_OPERATIONS = ("davinci-data-export", "export")


def _array(node: dict[str, Any], name: str) -> list[Any]:
    return repeated(
        node, name, where="The CapabilityStatement", code="malformed_capability_statement"
    )


def _codes(items: list[Any], key: str) -> set[str]:
    return {
        item[key] for item in items if isinstance(item, dict) and isinstance(item.get(key), str)
    }


def _operation_names(holder: dict[str, Any]) -> set[str]:
    names = set()
    for operation in _array(holder, "operation"):
        if isinstance(operation, dict) and isinstance(operation.get("name"), str):
            names.add(operation["name"].lstrip("$"))
    return names


def capability_summary(statement: dict[str, Any]) -> dict[str, Any]:
    """Return the JSON kept in ``FhirEndpoint.capabilities`` for a CapabilityStatement.

    ``{"fhir_version": "4.0.1", "operations": ["everything", "member-match"],
    "patient_search_types": ["Condition", ..., "Patient"]}`` — operations by name without
    ``$``, at system or resource level; the types searchable by ``patient`` (and Patient
    itself when it can be searched, by ``_id``). A statement that is not FHIR's JSON (a
    repeating element that is no array) raises FhirPermanentError.
    """
    operations: set[str] = set()
    search_types: set[str] = set()
    for rest in _array(statement, "rest"):
        if not isinstance(rest, dict) or rest.get("mode", "server") != "server":
            continue
        operations |= _operation_names(rest)
        for resource in _array(rest, "resource"):
            if not isinstance(resource, dict) or not isinstance(resource.get("type"), str):
                continue
            operations |= _operation_names(resource)
            interactions = _codes(_array(resource, "interaction"), "code")
            parameters = _codes(_array(resource, "searchParam"), "name")
            if "search-type" not in interactions:
                continue
            if "patient" in parameters or resource["type"] == "Patient":
                search_types.add(resource["type"])
    return {
        "fhir_version": statement.get("fhirVersion", ""),
        "operations": sorted(operations),
        "patient_search_types": sorted(search_types),
    }


def group_export_operation(summary: dict[str, Any]) -> str | None:
    """Return the operation that exports a matched Group, as named in ``summary``, or None.

    SPEC.md "Getting the data": ``davinci-data-export`` (PDex payer-to-payer) when offered;
    a holder without it still offers the standard Bulk Data ``export``.
    """
    offered = set(summary.get("operations") or [])
    return next((name for name in GROUP_EXPORT_OPERATIONS if name in offered), None)

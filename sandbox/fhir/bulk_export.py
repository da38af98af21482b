"""Group-level bulk export: `$davinci-data-export` (ATR STU2, PDex) and `$export` (Bulk Data STU2).

Kick-off parameters (query string, or a Parameters body on POST): ``exportType`` (required
by ``$davinci-data-export``; only ``hl7.fhir.us.davinci-pdex#payertopayer``), ``_since`` and
``_until`` (meta.lastUpdated, used as given), ``_type``, ``_typeFilter`` (type_filters.py),
``_outputFormat`` (NDJSON only). Anything else is refused with 400: an export that silently
ignored a restriction would disclose more than was asked for.

At export time every member's consent is evaluated again (access.member_access): a member
whose consent no longer holds goes to the error file, never the output. A ``payertopayer``
export also applies the holder's 5-year and prior-authorization limits (payer_to_payer.py);
a standard ``$export`` gives everything the consent allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

from sandbox.auth.scopes import grants
from sandbox.auth.tokens import CONTEXT_SYSTEM, Grant
from sandbox.fhir import access
from sandbox.fhir.bulk_jobs import JobContext
from sandbox.fhir.outcomes import FhirError
from sandbox.fhir.payer_to_payer import payer_to_payer_disclosable
from sandbox.fhir.request_parsing import json_body
from sandbox.fhir.resource_types import SERVED_TYPES
from sandbox.fhir.search_values import instant_parameter
from sandbox.fhir.type_filters import TypeFilter, parse_type_filter, split_type_filters
from sandbox.runtime import Sandbox

Resource = dict[str, Any]
DAVINCI_DATA_EXPORT = "$davinci-data-export"
STANDARD_EXPORT = "$export"
EXPORT_OPERATIONS = (DAVINCI_DATA_EXPORT, STANDARD_EXPORT)
PAYER_TO_PAYER = "hl7.fhir.us.davinci-pdex#payertopayer"
NDJSON_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
SINGLE_VALUED = ("exportType", "_since", "_until", "_outputFormat")
REPEATABLE = ("_type", "_typeFilter")
PROGRESS_EVERY = 50


@dataclass(frozen=True)
class ExportRequest:
    """What a kick-off asked for."""

    payer_to_payer: bool
    since: str | None
    until: str | None
    types: frozenset[str]
    type_filters: dict[str, tuple[TypeFilter, ...]]

    def selects(self, resource: Resource) -> bool:
        """Return whether resource passes the type, time and _typeFilter restrictions."""
        resource_type = resource["resourceType"]
        if resource_type not in self.types:
            return False
        updated = resource.get("meta", {}).get("lastUpdated", "")
        if (self.since and updated < self.since) or (self.until and updated > self.until):
            return False
        filters = self.type_filters.get(resource_type)
        return filters is None or any(f.matches(resource) for f in filters)


def _parameter_value(parameter: Any) -> str:
    if isinstance(parameter, dict):
        for key, value in parameter.items():
            if key.startswith("value") and isinstance(value, str):
                return value
    raise FhirError(400, "invalid", f"export parameter {parameter!r} carries no string value")


def _raw_values(request: HttpRequest) -> dict[str, list[str]]:
    values = {name: request.GET.getlist(name) for name in request.GET}
    if request.method == "POST" and request.body:
        body = json_body(request)
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise FhirError(400, "invalid", "a POST kick-off body must be a Parameters resource")
        for parameter in body.get("parameter", []):
            name = parameter.get("name") if isinstance(parameter, dict) else None
            if not isinstance(name, str):
                raise FhirError(400, "structure", "every export parameter needs a name")
            if name in request.GET:
                raise FhirError(400, "invalid", f"{name} is given in both the URL and the body")
            values.setdefault(name, []).append(_parameter_value(parameter))
    return values


def read_export_request(request: HttpRequest, *, operation: str, grant: Grant) -> ExportRequest:
    """Return the kick-off's ExportRequest, or raise 400/403 naming the problem."""
    values = _raw_values(request)
    allowed = (*SINGLE_VALUED, *REPEATABLE)
    for name, given in values.items():
        if name not in allowed or (name == "exportType" and operation == STANDARD_EXPORT):
            raise FhirError(
                400, "not-supported", f"{operation} does not support parameter {name!r}"
            )
        if name in SINGLE_VALUED and len(given) > 1:
            raise FhirError(400, "invalid", f"parameter {name} may be given only once")
    single = {name: values[name][0] for name in SINGLE_VALUED if name in values}
    if operation == DAVINCI_DATA_EXPORT:
        export_type = single.get("exportType")
        if export_type is None:
            raise FhirError(400, "required", f"exportType is required ({PAYER_TO_PAYER})")
        if export_type != PAYER_TO_PAYER:
            raise FhirError(
                400,
                "not-supported",
                f"exportType {export_type!r} is not supported; use {PAYER_TO_PAYER}",
            )
    if single.get("_outputFormat", NDJSON_FORMATS[0]) not in NDJSON_FORMATS:
        raise FhirError(400, "not-supported", "_outputFormat must be application/fhir+ndjson")
    readable = {t for t in SERVED_TYPES if grants(grant.scopes, CONTEXT_SYSTEM, t, "r")}
    types = readable
    if "_type" in values:
        types = {t.strip() for v in values["_type"] for t in v.split(",") if t.strip()}
        if unknown := sorted(types - set(SERVED_TYPES)):
            raise FhirError(
                400, "not-supported", f"_type names types not served: {', '.join(unknown)}"
            )
        if unreadable := sorted(types - readable):
            raise FhirError(
                403,
                "forbidden",
                f"the token's scopes ({grant.scope_text}) do not allow reading {', '.join(unreadable)}",
            )
    type_filters: dict[str, list[TypeFilter]] = {}
    for query in split_type_filters(values.get("_typeFilter", [])):
        type_filter = parse_type_filter(query)
        if type_filter.resource_type not in types:
            raise FhirError(
                400, "invalid", f"_typeFilter {query!r} names a type this export does not include"
            )
        type_filters.setdefault(type_filter.resource_type, []).append(type_filter)
    since = instant_parameter(single, "_since")
    until = instant_parameter(single, "_until")
    if since and until and until < since:
        raise FhirError(400, "invalid", "_until is before _since")
    return ExportRequest(
        payer_to_payer=operation == DAVINCI_DATA_EXPORT,
        since=since,
        until=until,
        types=frozenset(types),
        type_filters={t: tuple(f) for t, f in type_filters.items()},
    )


def group_patient_ids(group: Resource) -> list[str]:
    """Return the ids of the Patients a Group's members reference (contained ones excluded)."""
    references = (m.get("entity", {}).get("reference", "") for m in group.get("member", []))
    return [r.removeprefix("Patient/") for r in references if r.startswith("Patient/")]


def _refusal(patient_id: str, error: FhirError) -> Resource:
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": error.code,
                "diagnostics": f"Patient/{patient_id} not exported: {error.diagnostics}",
            }
        ],
    }


def run_export(
    sandbox: Sandbox, grant: Grant, group: Resource, export: ExportRequest, context: JobContext
) -> None:
    """Write the export's NDJSON files, one member at a time so memory stays flat."""
    patient_ids = group_patient_ids(group)
    today = sandbox.today()
    cited: set[tuple[str, str]] = set()
    for done, patient_id in enumerate(patient_ids):
        if context.cancelled:
            return
        if done % PROGRESS_EVERY == 0:
            context.progress(f"exported {done} of {len(patient_ids)} members")
        try:
            member = access.member_access(sandbox, grant, patient_id, cached=False)
        except FhirError as refusal:
            context.errors.write(_refusal(patient_id, refusal))
            continue
        record = member.record
        for resource in record.visible(withhold_sensitive=member.withhold_sensitive):
            if export.selects(resource) and (
                not export.payer_to_payer or payer_to_payer_disclosable(resource, today=today)
            ):
                context.output.write(resource)
        cited.update(record.cited_regular if member.withhold_sensitive else record.cited_all)
    for kind, resource_id in sorted(cited):
        entry = sandbox.directory.get(kind, resource_id)
        if entry is not None and export.selects(entry):
            context.output.write(entry)
    context.progress(f"exported {len(patient_ids)} of {len(patient_ids)} members")

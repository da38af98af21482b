"""Route every request under /fhir and answer it with a resource, a Bundle or an OperationOutcome."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from sandbox.auth.scopes import grants
from sandbox.auth.tokens import CONTEXT_SYSTEM
from sandbox.data.directory import Directory
from sandbox.fhir import access
from sandbox.fhir.bulk_views import BULK_FILES, BULK_STATUS, bulk_file, bulk_status, group_endpoint
from sandbox.fhir.capability import capability_statement
from sandbox.fhir.member_match import member_match
from sandbox.fhir.outcomes import FhirError, error_response, fhir_response
from sandbox.fhir.paging import page_bundle
from sandbox.fhir.request_parsing import json_body, query_params, require_method
from sandbox.fhir.resource_types import (
    DIRECTORY_TYPES,
    RESULT_PARAMETERS,
    SERVED_TYPES,
    search_parameters,
)
from sandbox.fhir.search_values import concept_matches, identifier_matches, instant_parameter
from sandbox.runtime import Sandbox, current, is_sensitive

Resource = dict[str, Any]
SEARCH_PAGE = 50
EVERYTHING_PAGE = 100
EVERYTHING_PARAMETERS = ("_since", "_type", "_count", "_offset", "_format")


def fhir_endpoint(request: HttpRequest, path: str | None = None) -> HttpResponseBase:
    """Dispatch one FHIR request; every refusal becomes an OperationOutcome."""
    try:
        return _dispatch(request, current(), [p for p in (path or "").split("/") if p])
    except FhirError as error:
        return error_response(error)


def _dispatch(request: HttpRequest, sandbox: Sandbox, parts: list[str]) -> HttpResponseBase:
    if parts == ["metadata"]:
        require_method(request, "GET")
        return fhir_response(capability_statement(sandbox))
    if not parts:
        raise FhirError(400, "not-supported", "system-level interactions are not supported")
    resource_type = parts[0]
    if resource_type.startswith("$") or any(p.startswith("$") for p in parts[1:-1]):
        raise FhirError(400, "not-supported", f"operation {'/'.join(parts)} is not supported")
    if resource_type == "Consent":
        return _consent(request, sandbox, parts)
    if resource_type == "Group":
        return group_endpoint(request, sandbox, parts)
    if resource_type == BULK_STATUS and len(parts) == 2:
        return bulk_status(request, sandbox, parts[1])
    if resource_type == BULK_FILES and len(parts) == 3:
        return bulk_file(request, sandbox, parts[1], parts[2])
    if resource_type not in SERVED_TYPES:
        raise FhirError(404, "not-supported", f"resource type {resource_type!r} is not served")
    operation = parts[-1] if parts[-1].startswith("$") else None
    if operation == "$member-match" and len(parts) == 2 and resource_type == "Patient":
        require_method(request, "POST")
        grant = access.bearer_grant(request, sandbox)
        return fhir_response(member_match(sandbox, grant, json_body(request)))
    if operation == "$everything" and len(parts) == 3 and resource_type == "Patient":
        if "everything" in sandbox.withdrawn_operations:
            raise FhirError(404, "not-supported", "Patient/$everything is not offered here")
        require_method(request, "GET")
        return _everything(request, sandbox, parts[1])
    if operation:
        raise FhirError(
            400, "not-supported", f"operation {operation} on {resource_type} is not supported"
        )
    if len(parts) == 1:
        require_method(request, "GET")
        return _search(request, sandbox, resource_type)
    if len(parts) == 2:
        require_method(request, "GET")
        return fhir_response(_read(request, sandbox, resource_type, parts[1]))
    raise FhirError(404, "not-found", f"nothing is served at {'/'.join(parts)}")


def _patient_id_of(resource_type: str, resource_id: str) -> str:
    if resource_type == "Patient":
        return resource_id
    owner, _, _ = resource_id.rsplit("-", 2) if resource_id.count("-") >= 2 else ("", "", "")
    if not owner:
        raise FhirError(404, "not-found", f"{resource_type}/{resource_id} is not known")
    return owner


def _read(request: HttpRequest, sandbox: Sandbox, resource_type: str, resource_id: str) -> Resource:
    grant = access.bearer_grant(request, sandbox)
    access.require_scope(grant, resource_type, "r")
    if resource_type in DIRECTORY_TYPES:
        found = sandbox.directory.get(resource_type, resource_id)
        if found is None:
            raise FhirError(404, "not-found", f"{resource_type}/{resource_id} is not known")
        return found
    member = access.member_access(sandbox, grant, _patient_id_of(resource_type, resource_id))
    resource = member.record.by_key.get((resource_type, resource_id))
    if resource is None or (member.withhold_sensitive and is_sensitive(resource)):
        raise FhirError(404, "not-found", f"{resource_type}/{resource_id} is not known")
    return resource


def _reference_id(value: str) -> str:
    return value.removeprefix("Patient/")


def _search(request: HttpRequest, sandbox: Sandbox, resource_type: str) -> HttpResponse:
    grant = access.bearer_grant(request, sandbox)
    access.require_scope(grant, resource_type, "s")
    params = query_params(request)
    allowed = search_parameters(resource_type)
    for name in params:
        if name not in allowed and name not in RESULT_PARAMETERS:
            raise FhirError(
                400, "not-supported", f"unknown search parameter {name!r} for {resource_type}"
            )
    if resource_type in DIRECTORY_TYPES:
        results = _directory_entries(sandbox.directory, resource_type)
    elif resource_type == "Patient":
        results = []
        for patient_id in access.visible_patient_ids(sandbox, grant):
            record = access.member_access(sandbox, grant, patient_id).record
            results.append(record.resources[0])
        if "identifier" in params:
            results = [
                r
                for r in results
                if identifier_matches(r.get("identifier", []), params["identifier"])
            ]
    else:
        subject = params.get("patient") or params.get("beneficiary")
        if subject is None:
            if grant.patient_id is None:
                raise FhirError(400, "required", f"searching {resource_type} needs patient=")
            subject = grant.patient_id
        member = access.member_access(sandbox, grant, _reference_id(subject))
        results = [
            r
            for r in member.record.visible(withhold_sensitive=member.withhold_sensitive)
            if r["resourceType"] == resource_type
        ]
        if "category" in params:
            results = [
                r for r in results if concept_matches(r.get("category", []), params["category"])
            ]
    if "_id" in params:
        ids = set(params["_id"].split(","))
        results = [r for r in results if r["id"] in ids]
    bundle = page_bundle(
        results,
        base=sandbox.config.fhir_base,
        path=resource_type,
        params=params,
        default_count=SEARCH_PAGE,
    )
    return fhir_response(bundle)


def _directory_entries(directory: Directory, resource_type: str) -> list[Resource]:
    entries = (
        directory.practitioners if resource_type == "Practitioner" else directory.organizations
    )
    return list(entries.values())


def _everything(request: HttpRequest, sandbox: Sandbox, patient_id: str) -> HttpResponse:
    grant = access.bearer_grant(request, sandbox)
    params = query_params(request)
    for name in params:
        if name not in EVERYTHING_PARAMETERS:
            raise FhirError(400, "not-supported", f"$everything does not support {name!r}")
    member = access.member_access(sandbox, grant, patient_id)
    access.require_scope(grant, "Patient", "r")
    types = None
    if "_type" in params:
        types = {t.strip() for t in params["_type"].split(",") if t.strip()}
        unknown = sorted(types - set(SERVED_TYPES))
        if unknown:
            raise FhirError(
                400, "not-supported", f"_type names types not served: {', '.join(unknown)}"
            )
    since = instant_parameter(params, "_since")
    record = member.record
    cited = record.cited_regular if member.withhold_sensitive else record.cited_all
    directory = [sandbox.directory.get(kind, rid) for kind, rid in cited]
    resources = record.visible(withhold_sensitive=member.withhold_sensitive) + [
        d for d in directory if d is not None
    ]
    # Only types the token may read; a narrower token gets a narrower $everything.
    readable = {t for t in SERVED_TYPES if grants(grant.scopes, grant.context, t, "r")}
    resources = [
        r
        for r in resources
        if r["resourceType"] in readable
        and (types is None or r["resourceType"] in types)
        and (since is None or r["meta"]["lastUpdated"] >= since)
    ]
    bundle = page_bundle(
        resources,
        base=sandbox.config.fhir_base,
        path=f"Patient/{patient_id}/$everything",
        params=params,
        default_count=EVERYTHING_PAGE,
    )
    return fhir_response(bundle)


def _consent(request: HttpRequest, sandbox: Sandbox, parts: list[str]) -> HttpResponse:
    """Find, read or revoke (update to inactive) the consents this client's matches left here."""
    grant = access.bearer_grant(request, sandbox)
    if grant.context != CONTEXT_SYSTEM:
        raise FhirError(403, "forbidden", "consents are kept for payer (system) clients only")
    if len(parts) == 1:
        require_method(request, "GET")
        params = query_params(request)
        if set(params) - {"patient", *RESULT_PARAMETERS}:
            raise FhirError(400, "not-supported", "Consent search supports patient= only")
        held = sandbox.consents.held_by(grant.client_id)
        if "patient" in params:
            patient_id = _reference_id(params["patient"])
            held = [c for c in held if c.patient_id == patient_id]
        bundle = page_bundle(
            [c.resource for c in held],
            base=sandbox.config.fhir_base,
            path="Consent",
            params=params,
            default_count=SEARCH_PAGE,
        )
        return fhir_response(bundle)
    if len(parts) != 2:
        raise FhirError(400, "not-supported", "only Consent search, read and update are supported")
    require_method(request, "GET", "PUT")
    consent = sandbox.consents.get_for_client(grant.client_id, parts[1])
    if consent is None:
        raise FhirError(404, "not-found", f"Consent/{parts[1]} is not known")
    if request.method == "PUT":
        body = json_body(request)
        if not isinstance(body, dict) or body.get("resourceType") != "Consent":
            raise FhirError(400, "invalid", "the body must be a Consent resource")
        if body.get("id") != consent.consent_id:
            raise FhirError(400, "invalid", "the body's id must match the URL")
        if body.get("status") not in ("inactive", "rejected"):
            raise FhirError(
                422,
                "business-rule",
                "only revocation is supported: set status to inactive or rejected",
            )
        sandbox.consents.revoke(consent, str(body["status"]))
    return fhir_response(consent.resource)

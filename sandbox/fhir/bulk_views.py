"""Answer the Group and bulk URLs: `$bulk-member-match`, Group read/search, exports, status, files.

Routes (under ``[base]`` = ``/fhir``)::

    POST   Group/$bulk-member-match           kick-off (PDex STU 2.2), 202 + Content-Location
    GET    Group/{id}  |  Group?...           read / search the caller's Groups
    GET|POST Group/{id}/$davinci-data-export  kick-off (ATR STU2, exportType payertopayer)
    GET|POST Group/{id}/$export               kick-off (Bulk Data STU2)
    GET    bulkstatus/{job}                   202 (Retry-After, X-Progress) | 200 manifest
    DELETE bulkstatus/{job}                   cancel, remove the files
    GET    bulkfiles/{job}/{file}             an NDJSON file (bearer token of the same client;
                                              Range: bytes=N- resumes it, 206)
"""

from __future__ import annotations

import functools
import os
import re

from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.utils.http import http_date

from sandbox.auth.scopes import (
    BULK_MEMBER_MATCH_SCOPES,
    MATCH_RESULT_SYSTEM,
    allows_bulk_member_match,
)
from sandbox.auth.tokens import CONTEXT_SYSTEM, Grant
from sandbox.fhir import access
from sandbox.fhir.bulk_export import EXPORT_OPERATIONS, read_export_request, run_export
from sandbox.fhir.bulk_jobs import POLL_AFTER_S, STATUS_COMPLETE, STATUS_RUNNING, BulkJob
from sandbox.fhir.bulk_member_match import (
    MATCH,
    read_member_bundles,
    requesting_payer,
    run_bulk_member_match,
)
from sandbox.fhir.groups import groups_matching
from sandbox.fhir.outcomes import FhirError, error_response, fhir_response, operation_outcome
from sandbox.fhir.paging import page_bundle
from sandbox.fhir.request_parsing import json_body, query_params, require_method
from sandbox.fhir.search_values import concept_matches
from sandbox.runtime import Sandbox

BULK_STATUS = "bulkstatus"
BULK_FILES = "bulkfiles"
BULK_MEMBER_MATCH = "$bulk-member-match"
NDJSON = "application/fhir+ndjson"
# How the client picks the result shape of $bulk-member-match (documented in the README).
STU_2_1_OUTPUT = "application/fhir+json"
STU_2_2_OUTPUT = NDJSON
SEARCH_PAGE = 50
OPEN_RANGE = re.compile(r"bytes=(\d+)-")


def _system_grant(request: HttpRequest, sandbox: Sandbox) -> Grant:
    grant = access.bearer_grant(request, sandbox)
    if grant.context != CONTEXT_SYSTEM:
        raise FhirError(403, "forbidden", "Groups and bulk requests are for payer (system) clients")
    return grant


def _require_async(request: HttpRequest) -> None:
    preferences = {p.strip().lower() for p in request.headers.get("Prefer", "").split(",")}
    if "respond-async" not in preferences:
        raise FhirError(
            400, "invalid", "this operation is asynchronous: send Prefer: respond-async"
        )


def _accepted(sandbox: Sandbox, job: BulkJob) -> HttpResponse:
    return operation_outcome(
        202,
        "informational",
        "accepted; poll the Content-Location URL for the result",
        severity="information",
        headers={"Content-Location": f"{sandbox.config.fhir_base}/{BULK_STATUS}/{job.job_id}"},
    )


def group_endpoint(request: HttpRequest, sandbox: Sandbox, parts: list[str]) -> HttpResponse:
    """Answer everything under Group: the two kinds of kick-off, read and search."""
    grant = _system_grant(request, sandbox)
    if parts[1:] == [BULK_MEMBER_MATCH]:
        return _bulk_member_match(request, sandbox, grant)
    if len(parts) == 3 and parts[2] in EXPORT_OPERATIONS:
        return _export(request, sandbox, grant, group_id=parts[1], operation=parts[2])
    operation = next((p for p in parts[1:] if p.startswith("$")), None)
    if operation:
        raise FhirError(400, "not-supported", f"operation {operation} on Group is not supported")
    require_method(request, "GET")
    if len(parts) == 1:
        access.require_scope(grant, "Group", "s")
        params = query_params(request)
        found = groups_matching(sandbox.groups.of_client(grant.client_id), params)
        bundle = page_bundle(
            found,
            base=sandbox.config.fhir_base,
            path="Group",
            params=params,
            default_count=SEARCH_PAGE,
        )
        return fhir_response(bundle)
    if len(parts) == 2:
        access.require_scope(grant, "Group", "r")
        return fhir_response(sandbox.groups.get_for_client(grant.client_id, parts[1]))
    raise FhirError(404, "not-found", f"nothing is served at {'/'.join(parts)}")


def _bulk_member_match(request: HttpRequest, sandbox: Sandbox, grant: Grant) -> HttpResponse:
    require_method(request, "POST")
    if not allows_bulk_member_match(grant.scopes):
        raise FhirError(
            403,
            "forbidden",
            f"$bulk-member-match needs one of the scopes {', '.join(sorted(BULK_MEMBER_MATCH_SCOPES))} "
            f"or system/Group.u; the token has {grant.scope_text}",
        )
    _require_async(request)
    params = query_params(request)
    if unknown := sorted(set(params) - {"_outputFormat"}):
        raise FhirError(400, "not-supported", f"$bulk-member-match does not support {unknown[0]!r}")
    output_format = params.get("_outputFormat", STU_2_2_OUTPUT)
    if output_format not in (STU_2_1_OUTPUT, STU_2_2_OUTPUT):
        raise FhirError(
            400,
            "not-supported",
            f"_outputFormat must be {STU_2_2_OUTPUT} (STU 2.2 Group NDJSON) "
            f"or {STU_2_1_OUTPUT} (STU 2.1 Parameters)",
        )
    submitted = read_member_bundles(json_body(request))
    requester = requesting_payer(sandbox, grant)
    job = sandbox.bulk_jobs.start(
        client_id=grant.client_id,
        request_url=f"{sandbox.config.base_url}{request.get_full_path()}",
        work=functools.partial(
            run_bulk_member_match,
            sandbox,
            grant,
            submitted,
            requester=requester,
            as_parameters=output_format == STU_2_1_OUTPUT,
        ),
    )
    return _accepted(sandbox, job)


def _export(
    request: HttpRequest, sandbox: Sandbox, grant: Grant, *, group_id: str, operation: str
) -> HttpResponse:
    require_method(request, "GET", "POST")
    access.require_scope(grant, "Group", "r")
    group = sandbox.groups.get_for_client(grant.client_id, group_id)
    if not concept_matches(group.get("code", {}), f"{MATCH_RESULT_SYSTEM}|{MATCH}"):
        raise FhirError(
            422,
            "business-rule",
            f"Group/{group_id} holds members that were not matched; only a 'match' Group exports",
        )
    _require_async(request)
    export = read_export_request(request, operation=operation, grant=grant)
    job = sandbox.bulk_jobs.start(
        client_id=grant.client_id,
        request_url=f"{sandbox.config.base_url}{request.get_full_path()}",
        work=functools.partial(run_export, sandbox, grant, group, export),
    )
    return _accepted(sandbox, job)


def bulk_status(request: HttpRequest, sandbox: Sandbox, job_id: str) -> HttpResponse:
    """Report a job's progress or completion, or cancel it (DELETE)."""
    require_method(request, "GET", "DELETE")
    grant = _system_grant(request, sandbox)
    job = sandbox.bulk_jobs.get_for_client(grant.client_id, job_id)
    if request.method == "DELETE":
        sandbox.bulk_jobs.cancel(job)
        return operation_outcome(
            202,
            "informational",
            f"bulk job {job_id} cancelled; its files are removed",
            severity="information",
        )
    if job.status == STATUS_RUNNING:
        response = HttpResponse(status=202)
        response["Retry-After"] = str(POLL_AFTER_S)
        response["X-Progress"] = job.progress
        return response
    if job.status != STATUS_COMPLETE:
        return error_response(job.failure or FhirError(500, "exception", "the job failed"))
    headers = {"Expires": http_date(job.expires_at)} if job.expires_at else {}
    if job.result is not None:
        return fhir_response(job.result, headers=headers)
    manifest = sandbox.bulk_jobs.manifest(
        job, file_url=lambda name: f"{sandbox.config.fhir_base}/{BULK_FILES}/{job.job_id}/{name}"
    )
    response = JsonResponse(manifest)
    for name, value in headers.items():
        response[name] = value
    return response


def _range_start(header: str) -> int | None:
    """Return N of ``Range: bytes=N-``, the one form a resuming client sends; else None."""
    match = OPEN_RANGE.fullmatch(header.strip())
    return int(match.group(1)) if match else None


def bulk_file(request: HttpRequest, sandbox: Sandbox, job_id: str, name: str) -> HttpResponseBase:
    """Stream one NDJSON file of a completed job to the client that kicked it off.

    ``Range: bytes=N-`` answers 206 with the rest of the file from byte N (416 past its end);
    any other Range is ignored and the whole file sent, as RFC 9110 §14.2 allows.
    """
    require_method(request, "GET")
    grant = _system_grant(request, sandbox)
    job = sandbox.bulk_jobs.get_for_client(grant.client_id, job_id)
    path = sandbox.bulk_jobs.file_path(job, name)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise FhirError(410, "not-found", f"{name} of bulk job {job_id} has expired") from None
    size = os.fstat(handle.fileno()).st_size
    start = _range_start(request.headers.get("Range", ""))
    if start is None:
        whole = FileResponse(handle, content_type=NDJSON)
        whole["Accept-Ranges"] = "bytes"
        return whole
    if start >= size:
        handle.close()
        unsatisfiable = HttpResponse(status=416)
        unsatisfiable["Content-Range"] = f"bytes */{size}"
        return unsatisfiable
    handle.seek(start)
    rest = FileResponse(handle, content_type=NDJSON, status=206)
    rest["Content-Range"] = f"bytes {start}-{size - 1}/{size}"
    return rest

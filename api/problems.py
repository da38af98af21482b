"""Every error of the payer-system API is an RFC 9457 problem document naming what is wrong.

``application/problem+json`` with ``type``, ``title``, ``status``, ``detail``, and an
``errors`` extension member (RFC 9457 §3.2) listing each bad field as ``field`` (its path
in the request body, e.g. ``previous_payers[0].coverage_start``, or a header's name) and
``message``. Field problems are 422; a body that is not JSON is 400.
"""

import json
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions
from rest_framework.response import Response

from exchange.enrollment import OptInRefused
from exchange.match_limits import MemberMatchLimited

PROBLEM_JSON = "application/problem+json"
# RFC 9457 §4.2.1 suggests a tag URI for problem types no page describes.
_TYPE_BASE = "tag:payer-hub,2026:problem:"
_TITLES = {
    400: ("malformed-request", "The request could not be read"),
    401: ("unauthenticated", "A valid access token is required"),
    403: ("insufficient-scope", "The access token does not allow this"),
    404: ("not-found", "No such object"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "The request conflicts with what the hub holds"),
    413: ("content-too-large", "The request is too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("invalid-fields", "Some fields are not acceptable"),
    429: ("too-many-requests", "Too many requests"),
}


def problem_response(
    status_code: int,
    detail: str,
    *,
    errors: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """Return the problem document of ``status_code``."""
    return Response(
        problem_body(status_code, detail, errors=errors),
        status=status_code,
        headers=headers,
        content_type=PROBLEM_JSON,
    )


def problem_body(
    status_code: int, detail: str, *, errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Return the body of the problem document of ``status_code``."""
    slug, title = _TITLES.get(status_code, ("error", "Error"))
    return {
        "type": f"{_TYPE_BASE}{slug}",
        "title": title,
        "status": status_code,
        "detail": detail,
        "errors": errors or [],
    }


# No session, so no cross-site request to forge: a POST to an unknown path is a 404 as a GET.
@csrf_exempt
def no_such_path(request: HttpRequest, path: str = "") -> HttpResponse:
    """Answer a URL under ``/api/v1/`` that names no operation (or an id that is not one)
    with a problem document, as every other error of the API, rather than the portal's
    HTML page."""
    body = problem_body(404, "No operation of the API has this path; see /api/v1/docs/.")
    return HttpResponse(json.dumps(body), status=404, content_type=PROBLEM_JSON)


def problem_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's exception handler for the API's views: each error as a problem document."""
    if isinstance(exc, OptInRefused):
        errors = [{"field": p.field, "message": p.message} for p in exc.problems]
        if exc.conflict:
            return problem_response(
                409,
                "The member's opt-in for these payers is open already; nothing was recorded. "
                "Withdraw the open one to start over.",
                errors=errors,
            )
        return problem_response(
            422,
            "The opt-in was refused; nothing was recorded. Fix the fields listed and send it again.",
            errors=errors,
        )
    if isinstance(exc, MemberMatchLimited):
        # RFC 6585 §4: 429 with Retry-After; nothing was recorded, so the same opt-in (and its
        # Idempotency-Key: only 2xx answers are kept) may be sent again once the time comes.
        return problem_response(
            429,
            f"{exc} Nothing was recorded.",
            errors=[{"field": exc.field or "body", "message": str(exc)}],
            headers={"Retry-After": str(exc.retry_after_seconds)},
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None  # a fault of the hub's: a 500, logged by Django
    headers = {}
    if auth_header := getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = auth_header
    if wait := getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(wait))
    if isinstance(exc, exceptions.ValidationError):
        errors = field_errors(exc.detail)
        return problem_response(
            422,
            "; ".join(f"{e['field'] or 'request'}: {e['message']}" for e in errors[:3])
            + ("; …" if len(errors) > 3 else ""),
            errors=errors,
        )
    return problem_response(exc.status_code, str(exc.detail), headers=headers)


def field_errors(detail: Any, path: str = "") -> list[dict[str, str]]:
    """Flatten DRF's nested error detail into ``{"field", "message"}`` pairs, the field
    written as a path into the body (``a.b[2].c``)."""
    if isinstance(detail, dict):
        found = []
        for key, value in detail.items():
            if key in ("non_field_errors", "__all__"):
                found += field_errors(value, path)
            elif isinstance(key, int) or str(key).isdigit():
                found += field_errors(value, f"{path}[{key}]")
            else:
                found += field_errors(value, f"{path}.{key}" if path else str(key))
        return found
    if isinstance(detail, list):
        if all(isinstance(item, str) for item in detail):
            return [{"field": path, "message": str(item)} for item in detail]
        found = []
        for index, item in enumerate(detail):
            found += field_errors(item, f"{path}[{index}]")
        return found
    return [{"field": path, "message": str(detail)}]

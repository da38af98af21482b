"""Read what a FHIR request carries: its method, query parameters and JSON body."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest

from sandbox.fhir.outcomes import FhirError

JSON_FORMATS = ("json", "application/json", "application/fhir+json")
JSON_BODY_TYPES = ("application/fhir+json", "application/json")


def require_method(request: HttpRequest, *allowed: str) -> None:
    """Raise 405 unless the request's method is one of allowed."""
    if request.method not in allowed:
        raise FhirError(405, "not-supported", f"{request.method} is not supported here")


def query_params(request: HttpRequest) -> dict[str, str]:
    """Return the query parameters, each given at most once, or raise 400."""
    params: dict[str, str] = {}
    for name in request.GET:
        values = request.GET.getlist(name)
        if len(values) > 1:
            raise FhirError(400, "not-supported", f"parameter {name} may be given only once")
        params[name] = values[0]
    if params.get("_format", "json") not in JSON_FORMATS:
        raise FhirError(400, "not-supported", "this server speaks JSON only")
    return params


def json_body(request: HttpRequest) -> Any:
    """Return the parsed JSON body, or raise 415 (wrong type), 413 (too big) or 400 (not JSON)."""
    content_type = request.content_type or ""
    if content_type not in JSON_BODY_TYPES:
        raise FhirError(415, "not-supported", "send the body as application/fhir+json")
    try:
        raw = request.body
    except RequestDataTooBig:
        raise FhirError(413, "too-costly", "the body is larger than this server accepts") from None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FhirError(400, "structure", f"the body is not valid JSON: {exc}") from None

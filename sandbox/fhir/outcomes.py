"""Answer FHIR requests: JSON resources and OperationOutcomes with the right status."""

from __future__ import annotations

import json
from typing import Any

import pydantic
from django.http import HttpResponse

FHIR_JSON = "application/fhir+json; charset=utf-8"


class FhirError(Exception):
    """A request the API refuses; becomes an OperationOutcome with this status."""

    def __init__(
        self, status: int, code: str, diagnostics: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.code = code
        self.diagnostics = diagnostics
        self.headers = headers or {}


def fhir_response(
    resource: dict[str, Any], *, status: int = 200, headers: dict[str, str] | None = None
) -> HttpResponse:
    """Return resource as application/fhir+json."""
    response = HttpResponse(
        json.dumps(resource, separators=(",", ":")), status=status, content_type=FHIR_JSON
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def operation_outcome(
    status: int,
    code: str,
    diagnostics: str,
    *,
    severity: str = "error",
    headers: dict[str, str] | None = None,
) -> HttpResponse:
    """Return an OperationOutcome with one issue (FHIR R4 §3.1.0 issue-type code)."""
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }
    return fhir_response(outcome, status=status, headers=headers)


def error_response(error: FhirError) -> HttpResponse:
    """Return the OperationOutcome of a FhirError."""
    return operation_outcome(error.status, error.code, error.diagnostics, headers=error.headers)


def require_valid(model: type[pydantic.BaseModel], body: dict[str, Any]) -> None:
    """Raise 400 naming the first element of body that is not a valid FHIR R4 model."""
    try:
        model.model_validate(body)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error.get("loc", ()))
        raise FhirError(
            400, "structure", f"invalid {model.__name__}: {where}: {error.get('msg', 'invalid')}"
        ) from None

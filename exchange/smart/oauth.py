"""Calls to a former payer's authorization server: token requests and RFC 7591 registration.

OAuth answers are JSON with ``error`` / ``error_description`` (RFC 6749 §5.2, RFC 7591
§3.2.2), not OperationOutcomes, so they are read here rather than by the FHIR client.
"""

import json
from dataclasses import dataclass
from typing import Any

import httpx

from exchange.fhir.client import retry_after_seconds
from exchange.fhir.errors import (
    FhirCallError,
    FhirPermanentError,
    FhirTransientError,
    outbound_failure,
)
from exchange.fhir.ids import resource_id
from hub.outbound import OutboundError, PayerHttpClient

# OAuth errors that mean the client itself is unknown or its credentials are not accepted.
CLIENT_ERRORS = frozenset({"invalid_client", "unauthorized_client"})


@dataclass(frozen=True)
class TokenResponse:
    """The parts of a token response (RFC 6749 §5.1; SMART adds ``patient``) the hub keeps."""

    access_token: str
    expires_in: int | None
    refresh_token: str
    scope: str
    patient: str


def _oauth_error(response: httpx.Response, *, holder_name: str, doing: str) -> FhirCallError:
    try:
        body = json.loads(response.content)
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    error = str(body.get("error") or "")
    description = str(body.get("error_description") or "")
    said = f" ({error}: {description})" if error or description else ""
    status = response.status_code
    if status == 429 or status >= 500:
        return FhirTransientError(
            f"{holder_name}'s authorization server is unavailable while {doing} (HTTP {status}).",
            code="authorization_server_unavailable",
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            status=status,
        )
    return FhirPermanentError(
        f"{holder_name} refused {doing}{said}.",
        code="client_refused" if error in CLIENT_ERRORS else "authorization_refused",
        status=status,
    )


def _post_json_answer(
    http: PayerHttpClient, url: str, *, holder_name: str, doing: str, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    try:
        response = http.post(url, headers={"Accept": "application/json"}, **kwargs)
    except OutboundError as exc:
        raise outbound_failure(exc, holder_name=holder_name) from None
    if response.status_code >= 400:
        raise _oauth_error(response, holder_name=holder_name, doing=doing)
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise FhirPermanentError(
            f"{holder_name}'s authorization server answered {doing} with something that is not "
            "a JSON object.",
            code="malformed_json",
        )
    return response.status_code, body


def token_request(
    *,
    http: PayerHttpClient,
    token_url: str,
    form: dict[str, str],
    holder_name: str,
    basic_auth: tuple[str, str] | None = None,
) -> TokenResponse:
    """POST a token request and return the checked answer."""
    _, body = _post_json_answer(
        http,
        token_url,
        holder_name=holder_name,
        doing="the hub's token request",
        data=form,
        auth=basic_auth,
    )
    access_token = body.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise FhirPermanentError(
            f"{holder_name}'s token answer carries no access_token.", code="malformed_token"
        )
    token_type = str(body.get("token_type", "")).lower()
    if token_type != "bearer":  # noqa: S105 - an OAuth token type, not a secret
        raise FhirPermanentError(
            f"{holder_name} issued a {body.get('token_type')!r} token; the hub uses bearer tokens.",
            code="malformed_token",
        )
    expires_in = body.get("expires_in")
    return TokenResponse(
        access_token=access_token,
        expires_in=int(expires_in) if isinstance(expires_in, int | float) else None,
        refresh_token=str(body.get("refresh_token") or ""),
        scope=str(body.get("scope") or ""),
        # SMART App Launch §launch-context: the id of the Patient the token is for.
        patient=resource_id(body.get("patient")),
    )


def client_register(
    *, http: PayerHttpClient, registration_endpoint: str, metadata: dict[str, Any], holder_name: str
) -> dict[str, Any]:
    """Register a client (RFC 7591 §3.1) and return the registration answer with a client_id."""
    _, body = _post_json_answer(
        http,
        registration_endpoint,
        holder_name=holder_name,
        doing="the hub's client registration",
        json=metadata,
    )
    if not isinstance(body.get("client_id"), str) or not body["client_id"]:
        raise FhirPermanentError(
            f"{holder_name}'s registration answer carries no client_id.", code="malformed_json"
        )
    return body

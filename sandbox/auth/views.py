"""HTTP endpoints of the authorization server: SMART configuration, registration, authorize, token."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import time
from typing import Any
from urllib.parse import unquote, urlencode

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render

from sandbox.auth.authorization_code import new_code_grant, verifier_matches
from sandbox.auth.backend_services import ASSERTION_TYPE, authenticate_assertion
from sandbox.auth.clients import ASSERTION_ALGORITHMS, Client, validate_metadata
from sandbox.auth.errors import OAuthError
from sandbox.auth.scopes import (
    BULK_MEMBER_MATCH_SCOPES,
    OIDC_SCOPES,
    PATIENT_LAUNCH_SCOPES,
    is_grantable_to_system_client,
    parse_resource_scope,
    split_scopes,
)
from sandbox.auth.tokens import CONTEXT_OIDC, CONTEXT_PATIENT, CONTEXT_SYSTEM, Grant
from sandbox.data.population import DEMO_PASSWORD
from sandbox.oidc.claims import find_account, id_token
from sandbox.runtime import Sandbox, current

REALM_SMART = "smart"
REALM_OIDC = "oidc"
BACKEND_TOKEN_LIFETIME_S = 300
MEMBER_TOKEN_LIFETIME_S = 3600
AUTHORIZE_PARAMETERS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "aud",
    "code_challenge",
    "code_challenge_method",
    "nonce",
)


def _oauth_json(body: dict[str, Any], status: int = 200) -> JsonResponse:
    response = JsonResponse(body, status=status)
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return response


def _oauth_error(error: OAuthError) -> JsonResponse:
    return _oauth_json(error.as_json(), status=error.status)


def idp_unavailable() -> JsonResponse:
    """Return the 503 every identity-provider endpoint gives under the idp-down fault."""
    response = JsonResponse(
        {"error": "temporarily_unavailable", "error_description": "the identity provider is down"},
        status=503,
    )
    response["Retry-After"] = "30"
    return response


def smart_configuration(request: HttpRequest) -> JsonResponse:
    """Return /fhir/.well-known/smart-configuration (SMART App Launch 2.x §Discovery)."""
    config = current().config
    return JsonResponse(
        {
            "issuer": config.issuer,
            "jwks_uri": f"{config.issuer}/jwks",
            "authorization_endpoint": f"{config.base_url}/auth/authorize",
            "token_endpoint": config.token_url,
            "registration_endpoint": f"{config.base_url}/auth/register",
            "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
            "token_endpoint_auth_methods_supported": [
                "private_key_jwt",
                "client_secret_basic",
                "client_secret_post",
                "none",
            ],
            "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGORITHMS),
            "scopes_supported": [
                "system/*.rs",
                "system/*.read",
                *sorted(BULK_MEMBER_MATCH_SCOPES),
                "patient/*.rs",
                "patient/*.read",
                "launch/patient",
                "openid",
                "fhirUser",
                "offline_access",
                "online_access",
            ],
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "capabilities": [
                "launch-standalone",
                "client-public",
                "client-confidential-symmetric",
                "client-confidential-asymmetric",
                "context-standalone-patient",
                "permission-offline",
                "permission-online",
                "permission-patient",
                "permission-v1",
                "permission-v2",
                "sso-openid-connect",
            ],
        }
    )


def register(request: HttpRequest) -> JsonResponse:
    """Register a client (RFC 7591 §3); organization_identifier is optional (clients.py)."""
    if request.method != "POST":
        return _oauth_json({"error": "invalid_request", "error_description": "POST JSON"}, 405)
    if current().config.faults.registration_refused:
        # The --faults registration-refused mode: like a holder that takes no RFC 7591.
        return _oauth_error(
            OAuthError(
                "invalid_client_metadata",
                "this server does not take dynamic registration (RFC 7591); register the "
                f"client out of band at {current().config.base_url}/sandbox/clients",
            )
        )
    try:
        try:
            body = json.loads(request.body)
        except (ValueError, UnicodeDecodeError):
            raise OAuthError("invalid_client_metadata", "the body is not JSON") from None
        client = current().clients.register(validate_metadata(body))
    except OAuthError as error:
        return _oauth_error(error)
    return _oauth_json(client.registration_response(), status=201)


# The longest client id the out-of-band registration takes (some holders issue ids as long
# as signed JWTs, like the SMART reference bulk-data-server's).
OUT_OF_BAND_CLIENT_ID_MAX = 4096


def register_out_of_band(request: HttpRequest) -> JsonResponse:
    """Register a client the way a holder's developer portal would (sandbox/README.md).

    Takes the same JSON as RFC 7591 plus an optional ``client_id`` of the registrant's
    choosing (printable ASCII, RFC 6749 Appendix A.1), and works under every fault mode.
    """
    if request.method != "POST":
        return _oauth_json({"error": "invalid_request", "error_description": "POST JSON"}, 405)
    try:
        try:
            body = json.loads(request.body)
        except (ValueError, UnicodeDecodeError):
            raise OAuthError("invalid_client_metadata", "the body is not JSON") from None
        if not isinstance(body, dict):
            raise OAuthError("invalid_client_metadata", "the body must be a JSON object")
        client_id = body.get("client_id", "")
        if not isinstance(client_id, str) or not all(" " < c <= "~" for c in client_id):
            raise OAuthError(
                "invalid_client_metadata",
                "client_id must be printable ASCII without spaces (RFC 6749 Appendix A.1)",
            )
        if len(client_id) > OUT_OF_BAND_CLIENT_ID_MAX:
            raise OAuthError(
                "invalid_client_metadata",
                f"client_id is longer than {OUT_OF_BAND_CLIENT_ID_MAX} characters",
            )
        if client_id and current().clients.get(client_id) is not None:
            raise OAuthError("invalid_client_metadata", "client_id is already registered")
        metadata = validate_metadata({k: v for k, v in body.items() if k != "client_id"})
        client = current().clients.register(metadata, client_id=client_id)
    except OAuthError as error:
        return _oauth_error(error)
    return _oauth_json(client.registration_response(), status=201)


# -- token ------------------------------------------------------------------------------------


def token(request: HttpRequest) -> JsonResponse:
    """Exchange a grant for tokens: client_credentials, authorization_code or refresh_token."""
    sandbox = current()
    if request.method != "POST":
        return _oauth_json({"error": "invalid_request", "error_description": "POST a form"}, 405)
    form = request.POST
    try:
        grant_type = form.get("grant_type")
        if grant_type == "client_credentials":
            return _client_credentials(request, sandbox)
        if grant_type == "authorization_code":
            return _authorization_code(request, sandbox)
        if grant_type == "refresh_token":
            return _refresh(request, sandbox)
        raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
    except OAuthError as error:
        return _oauth_error(error)


def _lifetime(sandbox: Sandbox, default: int) -> float:
    ttl = sandbox.config.faults.token_ttl_s
    return ttl if ttl is not None else float(default)


def _client_credentials(request: HttpRequest, sandbox: Sandbox) -> JsonResponse:
    form = request.POST
    if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
        raise OAuthError(
            "invalid_request",
            f"client_assertion_type must be {ASSERTION_TYPE} with a client_assertion",
        )
    client = authenticate_assertion(
        str(form["client_assertion"]),
        clients=sandbox.clients,
        tokens=sandbox.tokens,
        audience=f"{sandbox.config.base_url}{request.path}",
    )
    requested = split_scopes(form.get("scope"))
    allowed = set(split_scopes(client.scope)) if client.scope else None
    granted = tuple(
        s
        for s in requested
        if is_grantable_to_system_client(s) and (allowed is None or s in allowed)
    )
    if not granted:
        raise OAuthError(
            "invalid_scope",
            f"none of the requested scopes {requested} can be granted to this client",
        )
    lifetime = _lifetime(sandbox, BACKEND_TOKEN_LIFETIME_S)
    grant = Grant(
        client_id=client.client_id,
        context=CONTEXT_SYSTEM,
        scopes=granted,
        expires_at=time.time() + lifetime,
    )
    return _oauth_json(
        {
            "access_token": sandbox.tokens.issue(grant),
            "token_type": "Bearer",
            "expires_in": int(lifetime),
            "scope": grant.scope_text,
        }
    )


def _authenticate_client(request: HttpRequest, sandbox: Sandbox) -> Client:
    """Return the client of a code or refresh request (public, or by its secret)."""
    form = request.POST
    client_id, secret = form.get("client_id"), form.get("client_secret")
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise OAuthError("invalid_client", "malformed Basic credentials", status=401) from None
        basic_id, _, basic_secret = decoded.partition(":")
        client_id, secret = unquote(basic_id), unquote(basic_secret)
    client = sandbox.clients.get(client_id)
    if client is None:
        raise OAuthError("invalid_client", "unknown client_id", status=401)
    if client.client_secret:
        if not secret or not hmac.compare_digest(secret, client.client_secret):
            raise OAuthError("invalid_client", "wrong or missing client secret", status=401)
    elif not client.is_public:
        raise OAuthError("invalid_client", "this client cannot use this grant", status=401)
    return client


def _issue_member_tokens(
    sandbox: Sandbox,
    *,
    client: Client,
    realm: str,
    scopes: tuple[str, ...],
    username: str,
    nonce: str | None,
) -> JsonResponse:
    account = find_account(sandbox, username)
    if account is None:
        raise OAuthError("invalid_grant", "the account no longer exists")
    patient_id = account.member.patient_id if account.member else None
    context = CONTEXT_PATIENT if realm == REALM_SMART else CONTEXT_OIDC
    lifetime = _lifetime(sandbox, MEMBER_TOKEN_LIFETIME_S)
    grant = Grant(
        client_id=client.client_id,
        context=context,
        scopes=scopes,
        expires_at=time.time() + lifetime,
        patient_id=patient_id,
        username=username,
    )
    body: dict[str, Any] = {
        "access_token": sandbox.tokens.issue(grant),
        "token_type": "Bearer",
        "expires_in": int(lifetime),
        "scope": grant.scope_text,
    }
    if realm == REALM_SMART and "launch/patient" in scopes and patient_id:
        body["patient"] = patient_id
    if "openid" in scopes:
        body["id_token"] = id_token(sandbox, account, client_id=client.client_id, nonce=nonce)
    if "offline_access" in scopes or "online_access" in scopes:
        body["refresh_token"] = sandbox.tokens.issue_refresh(grant)
    return _oauth_json(body)


def _authorization_code(request: HttpRequest, sandbox: Sandbox) -> JsonResponse:
    form = request.POST
    client = _authenticate_client(request, sandbox)
    code = sandbox.codes.redeem(str(form.get("code", "")))
    if code is None or code.client_id != client.client_id:
        raise OAuthError("invalid_grant", "the code is unknown, used, expired or not this client's")
    if form.get("redirect_uri") != code.redirect_uri:
        raise OAuthError("invalid_grant", "redirect_uri differs from the authorization request")
    if not verifier_matches(code.code_challenge, form.get("code_verifier")):
        raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge (PKCE)")
    return _issue_member_tokens(
        sandbox,
        client=client,
        realm=code.realm,
        scopes=code.scopes,
        username=code.username,
        nonce=code.nonce,
    )


def _refresh(request: HttpRequest, sandbox: Sandbox) -> JsonResponse:
    form = request.POST
    client = _authenticate_client(request, sandbox)
    grant = sandbox.tokens.redeem_refresh(str(form.get("refresh_token", "")), client.client_id)
    if grant is None or grant.username is None:
        raise OAuthError("invalid_grant", "the refresh token is unknown, used or not this client's")
    scopes = grant.scopes
    if form.get("scope"):
        narrower = tuple(split_scopes(form.get("scope")))
        if not set(narrower) <= set(scopes):
            raise OAuthError("invalid_scope", "a refresh may only narrow the original scopes")
        scopes = narrower
    realm = REALM_SMART if grant.context == CONTEXT_PATIENT else REALM_OIDC
    return _issue_member_tokens(
        sandbox, client=client, realm=realm, scopes=scopes, username=grant.username, nonce=None
    )


# -- authorize --------------------------------------------------------------------------------


class _RedirectError(Exception):
    """An authorization error sent back to the client's redirect_uri (RFC 6749 §4.1.2.1)."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def _error_page(request: HttpRequest, message: str, status: int) -> HttpResponse:
    return render(
        request,
        "sandbox/error.html",
        {"title": "Sign-in request refused", "message": message},
        status=status,
    )


def _redirect(uri: str, params: dict[str, str]) -> HttpResponseRedirect:
    separator = "&" if "?" in uri else "?"
    return HttpResponseRedirect(f"{uri}{separator}{urlencode(params)}")


def _granted_scopes(realm: str, requested: list[str]) -> tuple[str, ...]:
    if realm == REALM_OIDC:
        if "openid" not in requested:
            raise _RedirectError("invalid_scope", "scope must include openid")
        return tuple(s for s in requested if s in OIDC_SCOPES)
    granted = tuple(
        s
        for s in requested
        if s in PATIENT_LAUNCH_SCOPES
        or ((p := parse_resource_scope(s)) is not None and p.context == CONTEXT_PATIENT)
    )
    if not any(parse_resource_scope(s) for s in granted):
        raise _RedirectError("invalid_scope", "request at least one patient/ resource scope")
    return granted


def authorize_smart(request: HttpRequest) -> HttpResponse:
    """Run the SMART standalone-launch sign-in (member picks no patient: it is themselves)."""
    return _authorize(request, REALM_SMART)


def authorize_oidc(request: HttpRequest) -> HttpResponse:
    """Run the OpenID Connect sign-in of members and plan administrators."""
    if current().config.faults.idp_down:
        return idp_unavailable()
    return _authorize(request, REALM_OIDC)


def _authorize(request: HttpRequest, realm: str) -> HttpResponse:
    sandbox = current()
    source = request.POST if request.method == "POST" else request.GET
    params = {name: str(source[name]) for name in AUTHORIZE_PARAMETERS if source.get(name)}
    client = sandbox.clients.get(params.get("client_id"))
    if client is None or "authorization_code" not in client.grant_types:
        return _error_page(request, "Unknown client_id, or the client cannot sign members in.", 400)
    redirect_uri = params.get("redirect_uri", "")
    if redirect_uri not in client.redirect_uris:
        return _error_page(request, "redirect_uri is not registered for this client.", 400)
    state = {"state": params["state"]} if "state" in params else {}
    try:
        scopes = _check_authorize_request(sandbox, realm, client, params)
    except _RedirectError as error:
        return _redirect(
            redirect_uri, {"error": error.error, "error_description": error.description} | state
        )
    if request.method == "POST" and source.get("action") == "cancel":
        return _redirect(
            redirect_uri,
            {"error": "access_denied", "error_description": "the member cancelled"} | state,
        )
    sign_in_error = ""
    username = str(source.get("username", ""))
    if request.method == "POST":
        account = find_account(sandbox, username)
        if account is None or not hmac.compare_digest(
            str(source.get("password", "")), DEMO_PASSWORD
        ):
            sign_in_error = "Unknown username or wrong password."
        elif realm == REALM_SMART and account.member is None:
            sign_in_error = "This account has no member record to share."
        else:
            code = sandbox.codes.issue(
                new_code_grant(
                    realm=realm,
                    client_id=client.client_id,
                    redirect_uri=redirect_uri,
                    scopes=scopes,
                    username=account.username,
                    code_challenge=params.get("code_challenge"),
                    nonce=params.get("nonce"),
                )
            )
            return _redirect(redirect_uri, {"code": code} | state)
    purpose = (
        f"{client.client_name or client.client_id} asks to read your health records."
        if realm == REALM_SMART
        else "Sign in with your member account."
    )
    return render(
        request,
        "sandbox/sign_in.html",
        {
            "payer_name": sandbox.identity.name,
            "purpose": purpose,
            "error": sign_in_error,
            "action": request.path,
            "hidden": sorted(params.items()),
            "username": username,
        },
        status=401 if sign_in_error else 200,
    )


def _check_authorize_request(
    sandbox: Sandbox, realm: str, client: Client, params: dict[str, str]
) -> tuple[str, ...]:
    if params.get("response_type") != "code":
        raise _RedirectError("unsupported_response_type", "response_type must be code")
    if realm == REALM_SMART:
        if "state" not in params:
            raise _RedirectError("invalid_request", "state is required (SMART App Launch)")
        if params.get("aud", "").rstrip("/") != sandbox.config.fhir_base:
            raise _RedirectError("invalid_request", f"aud must be {sandbox.config.fhir_base}")
    challenge = params.get("code_challenge")
    if challenge and params.get("code_challenge_method") != "S256":
        raise _RedirectError("invalid_request", "code_challenge_method must be S256")
    if not challenge and (client.is_public or realm == REALM_SMART):
        raise _RedirectError("invalid_request", "PKCE (code_challenge, S256) is required")
    return _granted_scopes(realm, split_scopes(params.get("scope")))

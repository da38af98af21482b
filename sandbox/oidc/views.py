"""OpenID Connect discovery, JWKS and userinfo (OpenID Connect Core 1.0 / Discovery 1.0)."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse

from sandbox.auth.tokens import CONTEXT_OIDC, CONTEXT_PATIENT
from sandbox.auth.views import idp_unavailable
from sandbox.oidc.claims import find_account, identity_claims
from sandbox.runtime import current


def discovery(request: HttpRequest) -> JsonResponse:
    """Return the provider metadata of the issuer http://127.0.0.1:PORT/oidc."""
    config = current().config
    if config.faults.idp_down:
        return idp_unavailable()
    issuer = config.issuer
    return JsonResponse(
        {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/authorize",
            "token_endpoint": f"{issuer}/token",
            "userinfo_endpoint": f"{issuer}/userinfo",
            "jwks_uri": f"{issuer}/jwks",
            "registration_endpoint": f"{issuer}/register",
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "none",
            ],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "nonce",
                "preferred_username",
                "name",
                "given_name",
                "family_name",
                "birthdate",
                "gender",
                "member_id",
                "hub_role",
                "payer_name",
                "fhirUser",
            ],
        }
    )


def jwks(request: HttpRequest) -> JsonResponse:
    """Return the public keys that verify id_tokens."""
    sandbox = current()
    if sandbox.config.faults.idp_down:
        return idp_unavailable()
    return JsonResponse(sandbox.signing_key.jwks())


def userinfo(request: HttpRequest) -> JsonResponse:
    """Return the signed-in account's claims for a bearer token that carries openid."""
    sandbox = current()
    if sandbox.config.faults.idp_down:
        return idp_unavailable()
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    grant = sandbox.tokens.lookup(token.strip()) if scheme.lower() == "bearer" else None
    if (
        grant is None
        or grant.context not in (CONTEXT_OIDC, CONTEXT_PATIENT)
        or "openid" not in grant.scopes
        or grant.username is None
    ):
        response = JsonResponse({"error": "invalid_token"}, status=401)
        response["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return response
    account = find_account(sandbox, grant.username)
    if account is None:
        return JsonResponse({"error": "invalid_token"}, status=401)
    return JsonResponse(identity_claims(sandbox, account))

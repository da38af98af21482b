"""The hub as a relying party of a payer's OpenID Provider (OIDC Core 1.0, authorization code flow).

The browser leg (state, nonce, PKCE, the redirect) is the portal's; this module does the
back-channel leg: redeem the code at the token endpoint with the client authentication
the provider takes, validate the id_token (Core §3.1.3.7), read userinfo (Core §5.3,
plain or signed, or none at all), and build the RP-Initiated Logout URL.
"""

import base64
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from hub.models import ClientAuthMethod, IdentityProvider, SigningAlgorithm
from hub.oidc.discovery import ProviderMetadata
from hub.oidc.documents import document_get, json_object, oidc_http_client, provider_request
from hub.oidc.errors import (
    IdentityNotConfirmed,
    ProviderMisconfigured,
    ProviderUnreachable,
    TokenRequestRefused,
)
from hub.oidc.keys import ACCEPTED_SIGNING_ALGORITHMS
from hub.oidc.provider import OpenIdProvider
from hub.signing_keys import CLIENT_ASSERTION_TYPE, client_assertion_sign

# Core §2: what every id_token carries.
ID_TOKEN_REQUIRED_CLAIMS = ("iss", "sub", "aud", "exp", "iat")
# Core §5.3.2: a signed userinfo answer carries iss and aud besides sub.
SIGNED_USERINFO_REQUIRED_CLAIMS = ("iss", "sub", "aud")
ID_TOKEN_ADVICE = (
    "Check that the provider signs ID tokens for the hub's client id with a key it publishes "
    f"at its jwks_uri, with one of {', '.join(ACCEPTED_SIGNING_ALGORITHMS)}, and that its "
    "clock is right."
)
# Automatic client authentication, in order of preference, by whether a secret is saved.
_AUTOMATIC_METHODS = {
    True: (
        ClientAuthMethod.CLIENT_SECRET_BASIC,
        ClientAuthMethod.CLIENT_SECRET_POST,
        ClientAuthMethod.PRIVATE_KEY_JWT,
    ),
    False: (ClientAuthMethod.PRIVATE_KEY_JWT, ClientAuthMethod.NONE),
}


@dataclass(frozen=True)
class VerifiedSignIn:
    """A completed sign-in: the person's claims (id_token, then userinfo) and the id_token."""

    claims: dict[str, Any]
    id_token: str


def client_auth_method(*, identity_provider: IdentityProvider, metadata: ProviderMetadata) -> str:
    """Return how the hub authenticates at the token endpoint (OIDC Core §9).

    The administrator's choice, or for "automatic" the first method the provider advertises
    that the saved settings allow.
    """
    chosen = identity_provider.token_endpoint_auth_method
    if chosen != ClientAuthMethod.AUTOMATIC:
        return chosen
    has_secret = bool(identity_provider.client_secret)
    for method in _AUTOMATIC_METHODS[has_secret]:
        if method in metadata.token_endpoint_auth_methods:
            return method
    raise ProviderMisconfigured(
        "The provider takes client authentication by "
        f"{', '.join(metadata.token_endpoint_auth_methods)}, none of which the hub can use "
        f"{'with' if has_secret else 'without'} a client secret.",
        advice="Save the client secret the provider gave the hub, or register the hub's "
        "client for private_key_jwt with this payer's JWKS URL.",
    )


def _assertion_algorithm(metadata: ProviderMetadata) -> str:
    """Return the algorithm to sign a private_key_jwt assertion with, one the provider takes."""
    advertised = metadata.token_endpoint_auth_signing_algs
    for algorithm in SigningAlgorithm.values:
        if not advertised or algorithm in advertised:
            return algorithm
    raise ProviderMisconfigured(
        f"The provider takes private_key_jwt signed with {', '.join(advertised)} only; the "
        f"hub signs with {' or '.join(SigningAlgorithm.values)}.",
        advice="Allow RS384 or ES384 for the hub's client at the provider, or use a client secret.",
    )


def _client_credentials(
    *, identity_provider: IdentityProvider, metadata: ProviderMetadata, method: str
) -> tuple[dict[str, str], dict[str, str]]:
    """Return the (headers, form fields) that authenticate the hub's client by ``method``."""
    client_id = identity_provider.client_id
    if method == ClientAuthMethod.PRIVATE_KEY_JWT:
        # Core §9 and RFC 7523 §2.2: a JWT signed with the payer's key, aud the token endpoint.
        assertion = client_assertion_sign(
            payer=identity_provider.payer,
            client_id=client_id,
            audience=metadata.token_endpoint,
            algorithm=_assertion_algorithm(metadata),
        )
        return {}, {
            "client_id": client_id,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": assertion,
        }
    if method == ClientAuthMethod.NONE:
        # RFC 6749 §4.1.3: a public client names itself; PKCE binds the code to this sign-in.
        return {}, {"client_id": client_id}
    secret = identity_provider.client_secret
    if not secret:
        raise ProviderMisconfigured(
            f"The client authentication is {method}, but no client secret is saved.",
            advice="Save the client secret, or choose private_key_jwt.",
        )
    if method == ClientAuthMethod.CLIENT_SECRET_POST:
        return {}, {"client_id": client_id, "client_secret": secret}
    # RFC 6749 §2.3.1: id and secret are form-urlencoded before they are joined and encoded.
    pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}"
    return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode("ascii")}, {}


def _token_refusal(body: bytes, status: int, method: str) -> TokenRequestRefused:
    """Return the error of a refused token request, with the provider's own words (§5.2)."""
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        answer = {}
    error = str(answer.get("error", ""))
    said = f": {error}" if error else ""
    if answer.get("error_description"):
        said += f" ({str(answer['error_description'])[:300]})"
    return TokenRequestRefused(
        f"The token endpoint refused to complete the sign-in (HTTP {status}{said}).",
        error=error,
        advice=f"Check the client id, the client secret and the client authentication ({method}) "
        "registered for the hub at the provider, and that the hub's redirect URI is registered.",
    )


def _token_request(
    *, provider: OpenIdProvider, identity_provider: IdentityProvider, grant: dict[str, str]
) -> dict[str, Any]:
    """POST ``grant`` to the token endpoint as the payer's client; return the JSON answer."""
    metadata = provider.metadata
    method = client_auth_method(identity_provider=identity_provider, metadata=metadata)
    headers, credentials = _client_credentials(
        identity_provider=identity_provider, metadata=metadata, method=method
    )
    response = provider_request(
        provider.http,
        "POST",
        metadata.token_endpoint,
        data={**grant, **credentials},
        headers={"Accept": "application/json", **headers},
    )
    if response.status_code != 200:
        raise _token_refusal(response.content, response.status_code, method)
    return json_object(response)


def authorization_code_redeem(
    *,
    provider: OpenIdProvider,
    identity_provider: IdentityProvider,
    code: str,
    redirect_uri: str,
    code_verifier: str,
) -> tuple[str, str]:
    """Exchange the code for tokens (Core §3.1.3.1); return (id_token, access_token).

    When a cached discovery document was used and the request fails, the document is read
    again; only if it had changed (the endpoint or its methods moved) is the request sent
    once more, since a provider honours a code once.
    """
    grant = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": code_verifier,
    }
    try:
        answer = _token_request(provider=provider, identity_provider=identity_provider, grant=grant)
    except (ProviderUnreachable, ProviderMisconfigured):
        if not provider.metadata.from_cache or not provider.refresh():
            raise
        answer = _token_request(provider=provider, identity_provider=identity_provider, grant=grant)
    id_token, access_token = answer.get("id_token"), answer.get("access_token")
    if not isinstance(id_token, str) or not id_token:
        raise ProviderMisconfigured(
            "The token endpoint answered without an id_token.",
            advice='Check that the scopes the hub asks for include "openid".',
        )
    return id_token, access_token if isinstance(access_token, str) else ""


def id_token_verify(
    *, provider: OpenIdProvider, client_id: str, id_token: str, nonce: str | None
) -> dict[str, Any]:
    """Return the id_token's claims once OIDC Core §3.1.3.7 is satisfied."""
    try:
        # Steps 2, 3, 6-10: signature by a published key, iss exactly, aud, exp and iat.
        claims = provider.jwt_verify(
            id_token, what="id_token", audience=client_id, required=ID_TOKEN_REQUIRED_CLAIMS
        )
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if any(audience != client_id for audience in audiences):
            # Step 3: also addressed to audiences the hub does not trust.
            raise IdentityNotConfirmed("The id_token is addressed to other clients too.")
        if "azp" in claims and claims["azp"] != client_id:
            # Step 5: issued to another party.
            raise IdentityNotConfirmed("The id_token was issued to another client (azp).")
        if nonce is None or claims.get("nonce") != nonce:
            # Step 11: the nonce of this very sign-in, so a token cannot be replayed.
            raise IdentityNotConfirmed("The id_token does not carry the nonce of this sign-in.")
    except IdentityNotConfirmed as exc:
        raise IdentityNotConfirmed(str(exc), advice=exc.advice or ID_TOKEN_ADVICE) from exc
    return claims


def userinfo_claims(
    *,
    provider: OpenIdProvider,
    client_id: str,
    access_token: str,
    id_token_claims: dict[str, Any],
) -> dict[str, Any]:
    """Return the person's claims: the id_token's, completed by the userinfo answer (Core §5.3).

    A provider without a userinfo endpoint puts the claims in the id_token (Core §5.4).
    """
    endpoint = provider.metadata.userinfo_endpoint
    if not endpoint:
        return dict(id_token_claims)
    response = document_get(
        provider.http,
        endpoint,
        headers={
            "Authorization": f"Bearer {access_token}",
            "Accept": "application/json, application/jwt",
        },
    )
    content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if content_type == "application/jwt":
        # Core §5.3.2: a signed answer is verified like the id_token, for the hub's client.
        userinfo = provider.jwt_verify(
            response.text,
            what="signed userinfo answer",
            audience=client_id,
            required=SIGNED_USERINFO_REQUIRED_CLAIMS,
        )
    else:
        userinfo = json_object(response)
    if userinfo.get("sub") != id_token_claims["sub"]:
        # Core §5.3.2: the sub of the answer MUST exactly match the id_token's.
        raise IdentityNotConfirmed(
            "The userinfo answer is about another person than the id_token (its sub differs).",
            advice="The provider's userinfo endpoint must answer for the person the access "
            "token was issued to (OpenID Connect Core §5.3.2).",
        )
    return {**id_token_claims, **userinfo}


def sign_in_complete(
    *,
    identity_provider: IdentityProvider,
    code: str,
    redirect_uri: str,
    code_verifier: str,
    nonce: str | None,
    response_issuer: str | None,
) -> VerifiedSignIn:
    """Finish a sign-in at the payer's provider; return who signed in, or raise why not."""
    issuer = identity_provider.issuer
    if response_issuer is not None and response_issuer != issuer:
        # RFC 9207 §2.4: an authorization response from another issuer is a mix-up; refuse.
        raise IdentityNotConfirmed(
            f"The sign-in answer came from the issuer {response_issuer!r}, not {issuer!r}.",
            advice="Enter the issuer exactly as the provider names it (OpenID Connect "
            "Discovery §4.3).",
        )
    with oidc_http_client() as http:
        provider = OpenIdProvider(issuer=issuer, http=http)
        id_token, access_token = authorization_code_redeem(
            provider=provider,
            identity_provider=identity_provider,
            code=code,
            redirect_uri=redirect_uri,
            code_verifier=code_verifier,
        )
        client_id = identity_provider.client_id
        claims = id_token_verify(
            provider=provider, client_id=client_id, id_token=id_token, nonce=nonce
        )
        claims = userinfo_claims(
            provider=provider,
            client_id=client_id,
            access_token=access_token,
            id_token_claims=claims,
        )
    return VerifiedSignIn(claims=claims, id_token=id_token)


def provider_metadata_current(*, identity_provider: IdentityProvider) -> ProviderMetadata:
    """Return the metadata of the payer's provider (cached briefly); raise why it cannot be had."""
    with oidc_http_client() as http:
        return OpenIdProvider(issuer=identity_provider.issuer, http=http).metadata


def end_session_url(
    *,
    metadata: ProviderMetadata,
    client_id: str,
    id_token_hint: str,
    post_logout_redirect_uri: str,
) -> str:
    """Return where to send the person to end their session at the provider, or "" if nowhere.

    OpenID Connect RP-Initiated Logout 1.0 §2: ``id_token_hint`` says whose session ends,
    ``post_logout_redirect_uri`` (registered at the provider) where they come back to, and
    ``client_id`` lets the provider check that URI when it has no hint.
    """
    if not metadata.end_session_endpoint:
        return ""
    parameters = {"client_id": client_id, "post_logout_redirect_uri": post_logout_redirect_uri}
    if id_token_hint:
        parameters["id_token_hint"] = id_token_hint
    separator = "&" if "?" in metadata.end_session_endpoint else "?"
    return f"{metadata.end_session_endpoint}{separator}{urlencode(parameters)}"

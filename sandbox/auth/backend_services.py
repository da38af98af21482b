"""Authenticate SMART Backend Services clients by their signed JWT assertion.

SMART App Launch 2.x, "Client Authentication: Asymmetric (public key)": the
assertion is signed RS384 or ES384 with a key the client registered (``jwks``)
or publishes (``jwks_uri``), names it with ``kid``, has ``iss`` = ``sub`` =
client_id, ``aud`` = the token URL, ``exp`` no more than five minutes ahead and a
``jti`` never seen before. Any failure is ``invalid_client``.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt

from sandbox.auth.clients import ASSERTION_ALGORITHMS, Client, ClientRegistry
from sandbox.auth.errors import OAuthError
from sandbox.auth.tokens import TokenStore

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_LIFETIME_S = 300
CLOCK_SKEW_S = 5
JWKS_FETCH_TIMEOUT_S = 5.0


def _invalid(description: str) -> OAuthError:
    return OAuthError("invalid_client", description)


def _client_keys(client: Client) -> list[dict[str, Any]]:
    if client.jwks is not None:
        return list(client.jwks["keys"])
    if not client.jwks_uri:
        raise _invalid("the client registered no keys")
    try:
        response = httpx.get(client.jwks_uri, timeout=JWKS_FETCH_TIMEOUT_S)
        response.raise_for_status()
        keys = response.json()["keys"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise _invalid(f"could not fetch the client's jwks_uri: {exc}") from None
    if not isinstance(keys, list):
        raise _invalid("the client's jwks_uri does not hold a keys array")
    return keys


def authenticate_assertion(
    assertion: str, *, clients: ClientRegistry, tokens: TokenStore, audience: str
) -> Client:
    """Return the client that signed assertion, or raise OAuthError(invalid_client)."""
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise _invalid(f"client_assertion is not a JWT: {exc}") from None
    algorithm = header.get("alg")
    if algorithm not in ASSERTION_ALGORITHMS:
        raise _invalid(f"alg {algorithm!r} is not allowed; use RS384 or ES384")
    kid = header.get("kid")
    if not kid:
        raise _invalid("the assertion header has no kid")
    client = clients.get(unverified.get("iss"))
    if client is None or "client_credentials" not in client.grant_types:
        raise _invalid("iss is not a registered backend-services client")
    matching = [k for k in _client_keys(client) if k.get("kid") == kid]
    if not matching:
        raise _invalid(f"no registered key has kid {kid!r}")
    try:
        key = jwt.PyJWK(matching[0], algorithm=algorithm)
        claims = jwt.decode(
            assertion,
            key.key,
            algorithms=[algorithm],
            audience=audience,
            leeway=CLOCK_SKEW_S,
            options={"require": ["iss", "sub", "aud", "exp", "jti"]},
        )
    except jwt.ExpiredSignatureError:
        raise _invalid("the assertion has expired") from None
    except jwt.InvalidAudienceError:
        raise _invalid(f"aud must be the token URL {audience}") from None
    except (jwt.PyJWTError, jwt.PyJWKError) as exc:
        raise _invalid(f"the assertion does not verify: {exc}") from None
    if claims["iss"] != client.client_id or claims["sub"] != client.client_id:
        raise _invalid("iss and sub must both be the client_id")
    expires_at = float(claims["exp"])
    if expires_at > time.time() + MAX_LIFETIME_S + CLOCK_SKEW_S:
        raise _invalid("exp is more than five minutes in the future")
    if not tokens.first_use_of_assertion(client.client_id, str(claims["jti"]), expires_at):
        raise _invalid("this jti was already used (replayed assertion)")
    return client

"""Lockout at the hub's token endpoint after refused client assertions (issue 15).

Every refusal counts against the address it came from. A refusal counts against the client
id too only when the assertion's signature verified with the client's own key, it is
addressed to the hub, and what is wrong with it only the key's holder could have signed
(sub not iss, an exp too far ahead, a bad jti: the client's own system misbehaving). What
others could send counts against the address alone: not a JWT, an unknown client or kid, a
signature that does not verify, a JWKS that cannot be read, and copies of the client's own
assertions presented again (a replayed jti, an expired assertion, one addressed to another
token endpoint, which that endpoint's server holds). So a stranger naming a payer's client
id locks out their own address, never the payer's system.

Once a count reaches its limit within the window, the endpoint answers 429 with
``Retry-After`` (RFC 6585 §4) before reading the assertion, so a guesser gets no further
answers and nothing is fetched on its behalf; the client's JWKS is fetched for unknown kids
at most once a minute in any case (client_keys.py). The body keeps the OAuth error shape of
RFC 6749 §5.2 with ``invalid_client``: the lockout is the outcome of failed client
authentication (``slow_down`` is RFC 8628's, for device codes only).
"""

import jwt
from django.conf import settings

from hub.rate_limits import Allowance, rate_limit_read, rate_limit_spend

_BY_CLIENT = "hub.token.refused-by-client"
_BY_ADDRESS = "hub.token.refused-by-address"


def assertion_client_id(assertion: str) -> str:
    """Return the client id an assertion claims (its unverified ``iss``), or ""."""
    try:
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        return ""
    issuer = claims.get("iss") if isinstance(claims, dict) else None
    return issuer if isinstance(issuer, str) else ""


def _limits(*, client_id: str, address: str | None) -> list[tuple[str, str, int]]:
    limits = []
    if client_id:
        limits.append((_BY_CLIENT, client_id, settings.TOKEN_FAILURES_PER_CLIENT))
    if address:
        limits.append((_BY_ADDRESS, address, settings.TOKEN_FAILURES_PER_ADDRESS))
    return limits


def token_lockout_read(*, client_id: str, address: str | None) -> Allowance | None:
    """Return the used-up allowance that holds this client or address back, or None.

    ``client_id`` may be the assertion's unverified ``iss``: only the client's own signed
    assertions raise its count, so naming it tells a stranger at most that it is held back.
    """
    window = settings.TOKEN_LOCKOUT_MINUTES * 60
    held = [
        allowance
        for group, key, limit in _limits(client_id=client_id, address=address)
        if (
            allowance := rate_limit_read(group=group, key=key, limit=limit, window_seconds=window)
        ).exhausted
    ]
    return max(held, key=lambda a: a.retry_after_seconds, default=None)


def token_refusal_record(*, signer: str, address: str | None) -> None:
    """Count one refused token request against its address, and against the client id that
    signed it (``signer``, "" when the signature was not verified with a client's key)."""
    window = settings.TOKEN_LOCKOUT_MINUTES * 60
    for group, key, limit in _limits(client_id=signer, address=address):
        rate_limit_spend(group=group, key=key, limit=limit, window_seconds=window)


def token_lockout_description(allowance: Allowance) -> str:
    return (
        f"too many refused token requests from this client or address "
        f"({allowance.limit} within {settings.TOKEN_LOCKOUT_MINUTES} minutes); "
        f"try again in {allowance.retry_after_seconds} seconds"
    )

"""JWK Sets (RFC 7517) and the signed JWTs the hub verifies with them (RFC 7515, RFC 7519).

One list of accepted algorithms serves every signature the hub checks: providers'
id_tokens and signed userinfo, and payers' client assertions at the Consent endpoint.
"""

import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt
from django.core.cache import cache

from hub.oidc.documents import json_document_fetch
from hub.oidc.errors import (
    IdentityNotConfirmed,
    KeySetInvalid,
    SignatureInvalid,
    SigningKeyUnknown,
    TokenExpired,
    TokenForAnother,
)
from hub.outbound import PayerHttpClient

# Asymmetric JWS algorithms only (RFC 7518 §3.1). "none" is never a signature, and HS*
# would be keyed with a secret the hub shares with the signer, so neither is accepted.
ACCEPTED_SIGNING_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)  # fmt: skip
# SMART App Launch 2.x, Backend Services §Authenticating: client assertions are signed
# RS384 or ES384, the part of the list above every SMART server SHALL support.
BACKEND_SERVICES_ALGORITHMS = ("RS384", "ES384")
# The algorithms a key of each type can verify (RFC 7518 §3.3-3.5, RFC 8037 §3.1); an EC
# key only the one of its curve (RFC 7518 §3.4).
_ALGORITHMS_OF_KEY_TYPE = {
    "RSA": frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}),
    "EC": frozenset({"ES256", "ES384", "ES512"}),
    "OKP": frozenset({"EdDSA"}),
}
_CURVE_OF_ALGORITHM = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
# JWK members that only a private or symmetric key has (RFC 7518 §6.2.2, §6.3.2, §6.4.1).
PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k"})
JWKS_CACHE_SECONDS = 10 * 60


@dataclass(frozen=True)
class PublicKey:
    """One usable public key of a key set, as published."""

    jwk: dict[str, Any]

    @property
    def kid(self) -> str | None:
        kid = self.jwk.get("kid")
        return kid if isinstance(kid, str) else None

    @property
    def algorithms(self) -> frozenset[str]:
        """Return the accepted algorithms this key verifies: its ``alg``, or all its type allows."""
        possible = _ALGORITHMS_OF_KEY_TYPE[self.jwk["kty"]]
        if self.jwk["kty"] == "EC":
            possible = frozenset(a for a in possible if _CURVE_OF_ALGORITHM[a] == self.jwk["crv"])
        alg = self.jwk.get("alg")
        return possible & {alg} if alg else possible

    def describe(self) -> str:
        alg = self.jwk.get("alg") or f"{self.jwk['kty']}, any algorithm"
        return f"{self.kid or '(no kid)'} ({alg})"


@dataclass(frozen=True)
class KeySet:
    """The usable keys of a JWK Set; ``skipped`` says why each other key was left out."""

    source: str
    keys: tuple[PublicKey, ...]
    skipped: tuple[str, ...] = ()
    from_cache: bool = field(default=False, compare=False)

    def describe(self) -> str:
        return ", ".join(key.describe() for key in self.keys)

    def verification_key(
        self, header: dict[str, Any], *, algorithms: Collection[str], what: str
    ) -> jwt.PyJWK:
        """Return the key that verifies the ``what`` with this JOSE ``header``, bound to its alg."""
        alg = header.get("alg")
        if alg not in algorithms:
            raise IdentityNotConfirmed(
                f"The {what} is signed with {alg!r}; the hub accepts only {', '.join(algorithms)}."
            )
        candidates = [key for key in self.keys if alg in key.algorithms]
        kid = header.get("kid")
        if kid is not None:
            candidates = [key for key in candidates if key.kid == kid]
        elif len(candidates) > 1:
            # OIDC Core §10.1: with several keys published, the signer MUST name its kid.
            raise IdentityNotConfirmed(
                f"The {what} names no kid, and the key set at {self.source} holds several "
                f"{alg} keys."
            )
        if not candidates:
            raise SigningKeyUnknown(
                f"The {what} names a key (kid {kid!r}, {alg}) that is not in the key set at "
                f"{self.source}.",
                advice="Check that the signer publishes the key it signs with at that URL.",
            )
        return jwt.PyJWK(candidates[0].jwk, algorithm=alg)


def _key_problem(position: int, raw: dict[str, Any]) -> str:
    """Return why key number ``position`` cannot verify anything the hub accepts, or ""."""
    kty, alg, use = raw.get("kty"), raw.get("alg"), raw.get("use")
    # RFC 7517 §4: these members are strings (JSON lets a hostile key set put anything there).
    for name in ("kty", "alg", "use", "kid", "crv"):
        if name in raw and not isinstance(raw[name], str):
            return f"key {position} has a {name} that is not a string (RFC 7517 §4)"
    if kty not in _ALGORITHMS_OF_KEY_TYPE:
        # RFC 7517 §5: keys of a type the reader does not understand are ignored.
        return f"key {position} has key type {kty!r}, not RSA, EC or OKP"
    if alg is not None and alg not in ACCEPTED_SIGNING_ALGORITHMS:
        return f"key {position} is for {alg!r}, an algorithm the hub does not accept"
    if use is not None and use != "sig":
        return f"key {position} is for {use!r}, not for signatures"
    try:
        jwt.PyJWK(raw)
    except (jwt.PyJWKError, jwt.InvalidKeyError, TypeError, ValueError, KeyError) as exc:
        return f"key {position}: {exc}"
    if not PublicKey(raw).algorithms:
        return f"key {position} is a {kty} key that cannot verify {alg!r}"
    return ""


def key_set_parse(document: dict[str, Any], *, source: str, from_cache: bool = False) -> KeySet:
    """Return the usable keys of a JWK Set document; raise KeySetInvalid if it has none."""
    raw_keys = document.get("keys")
    if not isinstance(raw_keys, list) or not raw_keys:
        raise KeySetInvalid('The key set has no "keys" list, or the list is empty.')
    # RFC 7517 §5: "keys" is an array of JWK objects; anything else is not a JWK Set.
    if not all(isinstance(raw, dict) for raw in raw_keys):
        raise KeySetInvalid("The key set holds keys that are not JSON objects (RFC 7517 §5).")
    if any(PRIVATE_JWK_MEMBERS & set(raw) for raw in raw_keys):
        raise KeySetInvalid(
            "The key set publishes private key material; publish public keys only and "
            "replace these keys now."
        )
    keys: list[PublicKey] = []
    skipped: list[str] = []
    for position, raw in enumerate(raw_keys, start=1):
        problem = _key_problem(position, raw)
        if problem:
            skipped.append(problem)
        else:
            keys.append(PublicKey(raw))
    if not keys:
        raise KeySetInvalid("No key could be read (" + "; ".join(skipped) + ").")
    return KeySet(source=source, keys=tuple(keys), skipped=tuple(skipped), from_cache=from_cache)


def _cache_key(url: str) -> str:
    return "hub.oidc.jwks:" + hashlib.sha256(url.encode()).hexdigest()


def key_set_read(
    *,
    url: str,
    http: PayerHttpClient,
    refresh: bool = False,
    cache_seconds: int = JWKS_CACHE_SECONDS,
) -> KeySet:
    """Return the JWK Set at ``url``: the cached copy, or (``refresh`` or none cached) a fresh
    one, kept ``cache_seconds``."""
    key = _cache_key(url)
    if not refresh:
        cached = cache.get(key)
        if cached is not None:
            return key_set_parse(cached, source=url, from_cache=True)
    document = json_document_fetch(http, url)
    key_set = key_set_parse(document, source=url)
    cache.set(key, document, cache_seconds)
    return key_set


def jwt_header(token: str, *, what: str) -> dict[str, Any]:
    """Return the JOSE header of ``token``, unverified; raise IdentityNotConfirmed if malformed."""
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise IdentityNotConfirmed(f"The {what} is not a JWT ({exc}).") from exc


def jwt_verify(
    token: str,
    key: jwt.PyJWK,
    *,
    what: str,
    audience: str,
    issuer: str,
    required: Sequence[str],
    leeway_seconds: int = 30,
) -> dict[str, Any]:
    """Return the claims of ``token`` once its signature, then its ``iss``, ``aud`` and times
    check out.

    Raise SignatureInvalid when ``key`` does not verify the signature (anyone could have sent
    such a token), TokenExpired when its time is up (anyone holding a copy could have),
    TokenForAnother when its ``aud`` names another party (that party could have), and
    IdentityNotConfirmed when other signed claims are refused (only the signer could have).
    """
    algorithms = [key.algorithm_name]
    try:
        jwt.api_jws.decode(token, key, algorithms=algorithms)
    except jwt.PyJWTError as exc:
        raise SignatureInvalid(f"The {what} was refused: {exc}.") from exc
    try:
        # Verifies the signature again (microseconds): with verify_signature off, PyJWT
        # turns every claim check off too, unless each is turned back on by name.
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            audience=audience,
            issuer=issuer,
            options={"require": list(required)},
            leeway=leeway_seconds,
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenExpired(f"The {what} was refused: {exc}.") from exc
    except jwt.InvalidAudienceError as exc:
        raise TokenForAnother(f"The {what} was refused: {exc}.") from exc
    except jwt.PyJWTError as exc:
        raise IdentityNotConfirmed(f"The {what} was refused: {exc}.") from exc
    except (OverflowError, TypeError, ValueError) as exc:
        # PyJWT reads times with int(): Infinity (which Python's json accepts) overflows.
        raise IdentityNotConfirmed(
            f"The {what} holds a time claim that is no number ({exc})."
        ) from exc
    return claims

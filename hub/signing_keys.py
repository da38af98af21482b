"""Create, rotate, retire and publish the hub's signing keys of each payer.

The hub signs SMART Backend Services client assertions *as* the new payer when it
asks a former payer for data; the former payer verifies them against the JWKS URL
the new payer registered there (SMART App Launch 2.x, Backend Services §Registering
a client: a JWKS URL keeps working across rotations).
"""

import base64
import hashlib
import json
import secrets
import time
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from hub.audit import audit_record
from hub.models import Payer, SigningAlgorithm, SigningKey, SigningKeyStatus, User

RSA_KEY_BITS = 3072
# RFC 7523 §2.2: the client_assertion_type of a JWT client assertion.
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# SMART Backend Services: exp no more than five minutes after the assertion is made.
CLIENT_ASSERTION_LIFETIME_SECONDS = 240
# RFC 7638 §3.2: the members that make up a key's thumbprint, per key type.
_THUMBPRINT_MEMBERS = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """Return the RFC 7638 SHA-256 thumbprint of a public JWK, base64url without padding."""
    members = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode("utf-8")
    digest = hashlib.sha256(canonical).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _generate(algorithm: str) -> tuple[str, dict[str, Any]]:
    """Return (private key PEM, public JWK with kid, alg and use) for a new key."""
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if algorithm == SigningAlgorithm.RS384:
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
        jwk = RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    elif algorithm == SigningAlgorithm.ES384:
        private_key = ec.generate_private_key(ec.SECP384R1())
        jwk = ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    else:
        raise ValueError(f"unsupported signing algorithm {algorithm!r}")
    jwk = {**jwk, "alg": algorithm, "use": "sig", "key_ops": ["verify"]}
    jwk["kid"] = jwk_thumbprint(jwk)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    return pem, jwk


def signing_key_create(*, payer: Payer, algorithm: str) -> SigningKey:
    """Create the payer's active key for ``algorithm`` (there must not be one yet)."""
    pem, jwk = _generate(algorithm)
    return SigningKey.objects.create(
        payer=payer,
        kid=jwk["kid"],
        algorithm=algorithm,
        private_key_pem=pem,
        public_jwk=jwk,
        status=SigningKeyStatus.ACTIVE,
    )


def signing_keys_ensure(*, payer: Payer) -> list[SigningKey]:
    """Give the payer an active key for every supported algorithm; return the active keys."""
    keys = []
    with transaction.atomic():
        for algorithm in SigningAlgorithm.values:
            key = (
                SigningKey.objects.for_payer(payer)
                .filter(algorithm=algorithm, status=SigningKeyStatus.ACTIVE)
                .first()
            )
            keys.append(key or signing_key_create(payer=payer, algorithm=algorithm))
    return keys


def signing_key_rotate(
    *, payer: Payer, algorithm: str, actor: User | None, client_address: str | None = None
) -> SigningKey:
    """Replace the payer's active key; the old one stays published for the grace period."""
    now = timezone.now()
    with transaction.atomic():
        current = (
            SigningKey.objects.for_payer(payer)
            .select_for_update()
            .filter(algorithm=algorithm, status=SigningKeyStatus.ACTIVE)
            .first()
        )
        if current is not None:
            current.status = SigningKeyStatus.PREVIOUS
            current.rotated_at = now
            current.retire_after = now + timedelta(days=settings.SIGNING_KEY_GRACE_DAYS)
            current.save(update_fields=["status", "rotated_at", "retire_after"])
        new_key = signing_key_create(payer=payer, algorithm=algorithm)
        audit_record(
            action="signing_key.rotate",
            obj=new_key,
            payer=payer,
            actor=actor,
            changes={"previous_kid": current.kid if current else None, "kid": new_key.kid},
            client_address=client_address,
        )
    return new_key


def signing_keys_retire_expired(*, now: datetime | None = None) -> int:
    """Stop publishing previous keys whose grace period is over; return how many."""
    now = now or timezone.now()
    retired = 0
    with transaction.atomic():
        expired = (
            SigningKey.objects.across_payers(
                reason="retiring keys past their grace period is housekeeping over every payer"
            )
            .select_for_update()
            .filter(status=SigningKeyStatus.PREVIOUS, retire_after__lte=now)
        )
        for key in expired:
            key.status = SigningKeyStatus.RETIRED
            key.save(update_fields=["status"])
            audit_record(
                action="signing_key.retire", obj=key, payer=key.payer, actor_label="system"
            )
            retired += 1
    return retired


def payer_jwks(*, payer: Payer) -> dict[str, list[dict[str, Any]]]:
    """Return the payer's published JWKS: active and previous public keys, nothing private."""
    keys = (
        SigningKey.objects.for_payer(payer)
        .filter(status__in=[SigningKeyStatus.ACTIVE, SigningKeyStatus.PREVIOUS])
        .order_by("status", "-created_at")
        .values_list("public_jwk", flat=True)
    )
    return {"keys": list(keys)}


def client_assertion_sign(
    *, payer: Payer, client_id: str, audience: str, algorithm: str = SigningAlgorithm.RS384
) -> str:
    """Return a client assertion for ``client_id`` at ``audience``, signed as ``payer``.

    The JWT of RFC 7523 §3 that both SMART Backend Services (§Authenticating) and OpenID
    Connect's private_key_jwt (Core §9) ask for: ``iss`` = ``sub`` = the client id, ``aud``
    = the token endpoint, ``exp`` within five minutes, a unique ``jti``, and the ``kid`` of
    the payer's active key for ``algorithm`` in the header (its keys are created on first use).
    """
    key = next(key for key in signing_keys_ensure(payer=payer) if key.algorithm == algorithm)
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": now,
        "exp": now + CLIENT_ASSERTION_LIFETIME_SECONDS,
        "jti": secrets.token_urlsafe(24),
    }
    return jwt.encode(
        claims,
        key.private_key_pem,
        algorithm=key.algorithm,
        headers={"kid": key.kid, "typ": "JWT"},
    )

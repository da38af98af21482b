"""Hold the sandbox's RS256 signing key (id_tokens) and publish it as a JWKS."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


class SigningKey:
    """An RSA key pair with a stable key id (RFC 7638 thumbprint)."""

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        self.private_key = private_key
        public_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key()))
        canonical = json.dumps(
            {k: public_jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"), sort_keys=True
        )
        digest = hashlib.sha256(canonical.encode()).digest()
        self.kid = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        self.public_jwk: dict[str, Any] = public_jwk | {
            "kid": self.kid,
            "alg": "RS256",
            "use": "sig",
        }

    @classmethod
    def load_or_create(cls, data_dir: Path | None) -> SigningKey:
        """Return the key kept in data_dir (created there if missing), or a fresh one."""
        path = data_dir / "signing-key.pem" if data_dir else None
        if path and path.exists():
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError(f"{path} does not hold an RSA private key")
            return cls(loaded)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            path.chmod(0o600)
        return cls(key)

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """Return the public JSON Web Key Set."""
        return {"keys": [self.public_jwk]}

    def sign(self, claims: dict[str, Any]) -> str:
        """Return claims as an RS256 JWS with this key's kid."""
        return jwt.encode(claims, self.private_key, algorithm="RS256", headers={"kid": self.kid})

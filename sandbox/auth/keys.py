"""Hold the sandbox's signing keys and publish them as JWKS.

Two keys, two purposes: RS256 signs the id_tokens of its identity provider; RS384 signs
the client assertions it sends as a SMART Backend Services client of the hub
(SMART App Launch 2.x, Backend Services: RS384 or ES384).
"""

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

    def __init__(self, private_key: rsa.RSAPrivateKey, *, algorithm: str = "RS256") -> None:
        self.private_key = private_key
        self.algorithm = algorithm
        public_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private_key.public_key()))
        canonical = json.dumps(
            {k: public_jwk[k] for k in ("e", "kty", "n")}, separators=(",", ":"), sort_keys=True
        )
        digest = hashlib.sha256(canonical.encode()).digest()
        self.kid = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        self.public_jwk: dict[str, Any] = public_jwk | {
            "kid": self.kid,
            "alg": algorithm,
            "use": "sig",
        }

    @classmethod
    def load_or_create(
        cls, data_dir: Path | None, *, filename: str = "signing-key.pem", algorithm: str = "RS256"
    ) -> SigningKey:
        """Return the key kept in data_dir/filename (created there if missing), or a fresh one."""
        path = data_dir / filename if data_dir else None
        if path and path.exists():
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError(f"{path} does not hold an RSA private key")
            return cls(loaded, algorithm=algorithm)
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
        return cls(key, algorithm=algorithm)

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """Return the public JSON Web Key Set."""
        return {"keys": [self.public_jwk]}

    def sign(self, claims: dict[str, Any]) -> str:
        """Return claims as a JWS signed with this key's algorithm, naming its kid."""
        return jwt.encode(
            claims, self.private_key, algorithm=self.algorithm, headers={"kid": self.kid}
        )

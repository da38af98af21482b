"""Payer systems as SMART Backend Services clients of the hub: keys, JWKS, tokens, calls.

Each persona payer's enrollment system signs its client assertions with one RSA key whose
public half a stub serves as the payer's registered JWKS (``Payer.client_jwks_url``); the
token comes from the hub's own token endpoint, as in production.
"""

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from django.test import Client

from exchange.consents.endpoint.auth import PAYER_API_SCOPES, token_endpoint_url
from hub.models import Payer
from tests.support.http_stub import http_stub

ALL_SCOPES = tuple(PAYER_API_SCOPES)
KID = "enrollment-system-1"


def _assertion(key: rsa.RSAPrivateKey, client_id: str) -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_endpoint_url(),
        "exp": now + 240,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, key, algorithm="RS384", headers={"kid": KID})


def token_response(key: rsa.RSAPrivateKey, client_id: str, scopes: tuple[str, ...]) -> Any:
    return Client().post(
        "/fhir/auth/token",
        {
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": _assertion(key, client_id),
            "scope": " ".join(scopes),
        },
    )


@dataclass
class PayerSystemClient:
    """A payer's system calling the API with a token of ``scopes``."""

    token: str

    def _headers(self, headers: dict[str, str]) -> dict[str, str]:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.token}"} | {
            f"HTTP_{name.upper().replace('-', '_')}": value for name, value in headers.items()
        }

    def get(self, path: str, **params: Any) -> Any:
        return Client().get(path, params, **self._headers({}))

    def post(self, path: str, body: Any = None, **headers: str) -> Any:
        data = body if isinstance(body, str) else json.dumps(body or {})
        return Client().post(path, data, content_type="application/json", **self._headers(headers))


@dataclass
class PayerSystems:
    """The enrollment systems of the persona payers, registered with their JWKS."""

    key: rsa.RSAPrivateKey

    def client(self, payer: Payer, scopes: tuple[str, ...] = ALL_SCOPES) -> PayerSystemClient:
        response = token_response(self.key, payer.slug, scopes)
        assert response.status_code == 200, response.content
        return PayerSystemClient(token=response.json()["access_token"])


@contextmanager
def payer_systems_registered(*payers: Payer) -> Iterator[PayerSystems]:
    """Register one system key for each of ``payers`` (a JWKS each, served by a stub)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    keys = {"keys": [{**public, "kid": KID, "alg": "RS384"}]}
    with http_stub({f"/{payer.slug}/jwks.json": keys for payer in payers}) as stub:
        for payer in payers:
            payer.client_jwks_url = f"{stub.base}/{payer.slug}/jwks.json"
            payer.save()
        yield PayerSystems(key=key)

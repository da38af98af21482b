"""The hub's token endpoint locks a client id or an address out after refused assertions, tells
it when to come back, and no longer fetches the client's JWKS meanwhile (issue 15)."""

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.cache import cache
from django.test import Client

from exchange.consents.endpoint.auth import token_endpoint_url
from tests.conftest import Tenant
from tests.support.http_stub import HttpStub, http_stub


@pytest.fixture(scope="module")
def keys() -> dict[str, rsa.RSAPrivateKey]:
    return {
        slug: rsa.generate_private_key(public_exponent=65537, key_size=2048)
        for slug in ("north", "south", "stranger")
    }


def _jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    return {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": kid}


@pytest.fixture
def jwks(north: Tenant, south: Tenant, keys: dict[str, Any]) -> Iterator[HttpStub]:
    """North's and South's systems' JWKS, on one loopback stub that counts its requests."""
    documents = {f"/{slug}.json": {"keys": [_jwk(keys[slug], f"{slug}-1")]} for slug in keys}
    # Copies of key sets are kept per URL, and a later stub may get an earlier one's port.
    cache.clear()
    with http_stub(documents) as stub:
        for tenant in (north, south):
            tenant.payer.client_jwks_url = f"{stub.base}/{tenant.payer.slug}.json"
            tenant.payer.save()
        yield stub


def _fetches(stub: HttpStub, slug: str) -> int:
    return sum(1 for r in stub.received if r.path == f"/{slug}.json")


def _assertion(key: Any, client_id: str, *, kid: str | None = None) -> str:
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_endpoint_url(),
        "exp": int(time.time()) + 240,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(claims, key, algorithm="RS384", headers={"kid": kid or f"{client_id}-1"})


def _token(assertion: str, *, address: str) -> Any:
    return Client(REMOTE_ADDR=address).post(
        "/fhir/auth/token",
        {
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
            "scope": "hub/opt-ins.write",
        },
    )


def _told_to_wait(response: Any, *, window_seconds: int) -> None:
    assert response.status_code == 429
    assert response["Cache-Control"] == "no-store"
    wait = int(response["Retry-After"])
    assert 1 <= wait <= window_seconds
    body = response.json()
    assert body["error"] == "invalid_client"
    assert body["error_description"].endswith(f"try again in {wait} seconds")


def test_a_client_id_is_locked_after_refused_assertions_and_its_jwks_no_longer_fetched(
    jwks: HttpStub, keys: dict[str, Any], settings: Any
) -> None:
    settings.TOKEN_FAILURES_PER_CLIENT = 3
    settings.TOKEN_LOCKOUT_MINUTES = 10
    # Someone signing as North with a key of their own, naming kids North never published,
    # from a new address each time (so only the client id's count can stop them).
    for attempt in range(3):
        refused = _token(
            _assertion(keys["stranger"], "north", kid=f"guess-{attempt}"),
            address=f"198.51.100.{attempt + 1}",
        )
        assert refused.status_code == 401, refused.content
    # An unknown kid is looked up in a fresh copy each time (a key rotated in works at once).
    assert _fetches(jwks, "north") == 3

    locked = _token(_assertion(keys["stranger"], "north", kid="guess-4"), address="198.51.100.9")
    _told_to_wait(locked, window_seconds=600)
    assert "too many refused token requests" in locked.json()["error_description"]
    assert _fetches(jwks, "north") == 3  # nothing fetched on the locked client's behalf
    # While locked, North's own key is answered the same way: the lockout is per client id.
    _told_to_wait(
        _token(_assertion(keys["north"], "north"), address="198.51.100.10"), window_seconds=600
    )

    # South's system is not held back by North's lockout, even from an address North's
    # guesser used.
    granted = _token(_assertion(keys["south"], "south"), address="198.51.100.1")
    assert granted.status_code == 200, granted.content
    assert granted.json()["access_token"]


def test_an_address_is_locked_after_refused_requests_whatever_client_they_name(
    jwks: HttpStub, keys: dict[str, Any], settings: Any
) -> None:
    settings.TOKEN_FAILURES_PER_ADDRESS = 4
    guesser = "203.0.113.7"
    for client_id in ("nobody", "north", "not-a-jwt", "south"):
        assertion = (
            "not-a-jwt" if client_id == "not-a-jwt" else _assertion(keys["stranger"], client_id)
        )
        assert _token(assertion, address=guesser).status_code == 401
    fetched = len(jwks.received)

    # The next one, even a good one, waits; and nothing is fetched for it.
    _told_to_wait(_token(_assertion(keys["south"], "south"), address=guesser), window_seconds=600)
    assert len(jwks.received) == fetched
    # The clients themselves, from their own addresses, are unaffected.
    assert _token(_assertion(keys["north"], "north"), address="192.0.2.10").status_code == 200
    assert _token(_assertion(keys["south"], "south"), address="192.0.2.11").status_code == 200


def test_the_jwks_is_read_from_a_copy_and_a_key_rotated_in_works_at_once(
    jwks: HttpStub, keys: dict[str, Any], settings: Any
) -> None:
    settings.TOKEN_FAILURES_PER_CLIENT = 50
    settings.TOKEN_FAILURES_PER_ADDRESS = 50
    address = "192.0.2.20"
    assert _token(_assertion(keys["north"], "north"), address=address).status_code == 200
    assert _fetches(jwks, "north") == 1
    # Forged signatures under North's published kid are checked against the kept copy.
    for _ in range(5):
        forged = _assertion(keys["stranger"], "north", kid="north-1")
        assert _token(forged, address=address).status_code == 401
    assert _token(_assertion(keys["north"], "north"), address=address).status_code == 200
    assert _fetches(jwks, "north") == 1

    # North publishes a second key and signs with it: one fresh read, then granted.
    rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks.documents["/north.json"] = {
        "keys": [_jwk(keys["north"], "north-1"), _jwk(rotated, "north-2")]
    }
    response = _token(_assertion(rotated, "north", kid="north-2"), address=address)
    assert response.status_code == 200, response.content
    assert _fetches(jwks, "north") == 2

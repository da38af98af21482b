"""The hub's token endpoint locks an address out after refused assertions, and a client id
after assertions only its own key could have signed; it tells them when to come back, and
reads a client's JWKS afresh for unknown kids at most once a minute (issue 15)."""

import json
import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.cache import cache
from django.core.cache.backends import locmem
from django.test import Client

from exchange.consents.endpoint.auth import token_endpoint_url
from exchange.consents.endpoint.client_keys import CLIENT_JWKS_REFRESH_SECONDS
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


def _assertion(key: Any, client_id: str, *, kid: str | None = None, **claims: Any) -> str:
    payload = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_endpoint_url(),
        "exp": int(time.time()) + 240,
        "jti": str(uuid.uuid4()),
        **claims,
    }
    return jwt.encode(payload, key, algorithm="RS384", headers={"kid": kid or f"{client_id}-1"})


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


def test_a_stranger_forging_a_clients_assertions_locks_out_their_address_not_the_client(
    jwks: HttpStub, keys: dict[str, Any], settings: Any
) -> None:
    settings.TOKEN_FAILURES_PER_CLIENT = 3
    settings.TOKEN_FAILURES_PER_ADDRESS = 5
    forger = "203.0.113.66"
    # Someone signing as North with a key of their own, under North's kid and under kids
    # North never published: more refusals naming North than North's own limit.
    for attempt in range(5):
        kid = "north-1" if attempt % 2 else f"guess-{attempt}"
        refused = _token(_assertion(keys["stranger"], "north", kid=kid), address=forger)
        assert refused.status_code == 401, refused.content
    # One read, and one fresh read for a kid the copy lacked; the other made-up kid was
    # refused from the copy (client_keys.py: at most one fresh read a minute).
    assert _fetches(jwks, "north") == 2

    locked = _token(_assertion(keys["stranger"], "north", kid="guess-6"), address=forger)
    _told_to_wait(locked, window_seconds=600)
    assert "too many refused token requests" in locked.json()["error_description"]
    assert _fetches(jwks, "north") == 2  # nothing fetched on the locked address's behalf

    # North's own system, from its own address, is not held back by what was sent in its name.
    granted = _token(_assertion(keys["north"], "north"), address="192.0.2.10")
    assert granted.status_code == 200, granted.content
    assert granted.json()["access_token"]


def test_a_client_signing_wrong_assertions_is_locked_out_from_any_address(
    jwks: HttpStub, keys: dict[str, Any], settings: Any
) -> None:
    settings.TOKEN_FAILURES_PER_CLIENT = 3
    # Copies of North's own assertions presented again (used, expired, or addressed to
    # another token endpoint, whose server holds it) are what others could send: they do
    # not count against North.
    used = _assertion(keys["north"], "north")
    assert _token(used, address="192.0.2.10").status_code == 200
    expired = _assertion(keys["north"], "north", exp=int(time.time()) - 60)
    elsewhere = _assertion(keys["north"], "north", aud="https://elsewhere.example/token")
    # As many of each as the client's limit: counted against North, they would lock it out.
    copies = [(used, "already used"), (expired, "expired"), (elsewhere, "Audience")] * 3
    for attempt, (copy, reason) in enumerate(copies):
        refused = _token(copy, address=f"198.51.100.{attempt + 1}")
        assert refused.status_code == 401
        assert reason in refused.json()["error_description"]
    assert _token(_assertion(keys["north"], "north"), address="192.0.2.10").status_code == 200

    # North's system signs for the hub with a subject other than itself, from a new address
    # each time: only North's key could have, so North's count stops it.
    for attempt in range(3):
        wrong = _assertion(keys["north"], "north", sub="someone-else")
        refused = _token(wrong, address=f"198.51.100.{attempt + 10}")
        assert refused.status_code == 401
        assert "sub must equal its iss" in refused.json()["error_description"]
    _told_to_wait(
        _token(_assertion(keys["north"], "north"), address="198.51.100.20"), window_seconds=600
    )
    # South is not held back by North's lockout, even from an address North used.
    assert _token(_assertion(keys["south"], "south"), address="198.51.100.10").status_code == 200


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


def _a_minute_later(monkeypatch: Any) -> None:
    """Let a minute pass for what the hub keeps in its Django cache (each process's memory,
    hub/settings.py CACHES), and for nothing else."""
    later = time.time() + CLIENT_JWKS_REFRESH_SECONDS + 1
    monkeypatch.setattr(locmem, "time", SimpleNamespace(time=lambda: later))


def test_the_jwks_is_read_from_a_copy_and_afresh_for_a_new_kid_at_most_once_a_minute(
    jwks: HttpStub, keys: dict[str, Any], settings: Any, monkeypatch: Any
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

    # Within that minute, made-up kids are refused from the copy: no flood at North.
    for attempt in range(8):
        guess = _assertion(keys["stranger"], "north", kid=f"guess-{attempt}")
        assert _token(guess, address=f"198.51.100.{attempt + 1}").status_code == 401
    assert _fetches(jwks, "north") == 2
    # So is a key North rotates in meanwhile, until the minute is up.
    third = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks.documents["/north.json"]["keys"].append(_jwk(third, "north-3"))
    early = _token(_assertion(third, "north", kid="north-3"), address=address)
    assert early.status_code == 401
    assert "not in the key set" in early.json()["error_description"]
    assert _fetches(jwks, "north") == 2
    _a_minute_later(monkeypatch)
    response = _token(_assertion(third, "north", kid="north-3"), address=address)
    assert response.status_code == 200, response.content
    assert _fetches(jwks, "north") == 3

"""The JWKS URL publishes public keys only; rotation keeps the previous key for a grace period."""

import time
from datetime import timedelta

import jwt
from django.test import Client
from django.utils import timezone

from hub.models import AuditEvent, SigningKey, SigningKeyStatus
from hub.signing_keys import signing_key_rotate, signing_keys_ensure, signing_keys_retire_expired
from tests.conftest import Tenant

PRIVATE_JWK_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def test_jwks_url_serves_public_keys_and_no_private_material(north: Tenant, south: Tenant) -> None:
    signing_keys_ensure(payer=north.payer)
    signing_keys_ensure(payer=south.payer)

    response = Client().get("/p/north/.well-known/jwks.json")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/jwk-set+json"
    keys = response.json()["keys"]
    assert sorted(key["alg"] for key in keys) == ["ES384", "RS384"]
    for key in keys:
        assert not PRIVATE_JWK_MEMBERS & key.keys()
        assert key["use"] == "sig" and key["kid"]
    assert "PRIVATE KEY" not in response.content.decode()
    # Only North's keys: South's are at South's URL.
    north_kids = set(SigningKey.objects.for_payer(north.payer).values_list("kid", flat=True))
    assert {key["kid"] for key in keys} == north_kids
    assert Client().get("/p/nowhere/.well-known/jwks.json").status_code == 404


def test_an_assertion_signed_by_the_hub_verifies_against_the_published_key(north: Tenant) -> None:
    for key in signing_keys_ensure(payer=north.payer):
        claims = {
            "iss": "hub",
            "sub": "hub",
            "aud": "https://payer/token",
            "exp": int(time.time()) + 300,
        }
        token = jwt.encode(
            claims, key.private_key_pem, algorithm=key.algorithm, headers={"kid": key.kid}
        )
        published = Client().get("/p/north/.well-known/jwks.json").json()["keys"]
        jwk = next(k for k in published if k["kid"] == jwt.get_unverified_header(token)["kid"])
        public_key = jwt.PyJWK(jwk).key
        assert jwt.decode(token, public_key, algorithms=[key.algorithm], audience=claims["aud"])


def test_rotation_keeps_the_previous_key_published_until_its_grace_period_ends(
    north: Tenant,
) -> None:
    old_rs, _old_es = signing_keys_ensure(payer=north.payer)

    new_rs = signing_key_rotate(payer=north.payer, algorithm="RS384", actor=north.admin)

    published = {k["kid"] for k in Client().get("/p/north/.well-known/jwks.json").json()["keys"]}
    assert {old_rs.kid, new_rs.kid} <= published
    old_rs.refresh_from_db()
    assert old_rs.status == SigningKeyStatus.PREVIOUS
    assert AuditEvent.objects.for_payer(north.payer).filter(action="signing_key.rotate").exists()

    assert signing_keys_retire_expired(now=timezone.now()) == 0  # still in its grace period
    assert signing_keys_retire_expired(now=timezone.now() + timedelta(days=30)) == 1

    published = {k["kid"] for k in Client().get("/p/north/.well-known/jwks.json").json()["keys"]}
    assert old_rs.kid not in published and new_rs.kid in published


def test_private_keys_are_encrypted_at_rest(north: Tenant) -> None:
    from django.db import connection

    key = signing_keys_ensure(payer=north.payer)[0]
    with connection.cursor() as cursor:
        cursor.execute("SELECT private_key_pem FROM hub_signingkey WHERE id = %s", [key.pk])
        raw = cursor.fetchone()[0]
    assert "PRIVATE KEY" not in raw
    assert (
        SigningKey.objects.for_payer(north.payer)
        .get(pk=key.pk)
        .private_key_pem.startswith("-----BEGIN PRIVATE KEY-----")
    )

"""The one OpenID Connect module: discovery, key sets and JWT checks, over real HTTP on loopback.

Sign-in end to end, against a certified provider, is in tests/members/test_sign_in_oidc_provider.py.
"""

import json
import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.core.cache import cache

from hub.oidc.discovery import discovery_url, provider_metadata_read
from hub.oidc.documents import oidc_http_client
from hub.oidc.errors import (
    IdentityNotConfirmed,
    IssuerMismatch,
    KeySetInvalid,
    MetadataIncomplete,
    ProviderMisconfigured,
    ProviderUnreachable,
    SigningKeyUnknown,
)
from hub.oidc.keys import ACCEPTED_SIGNING_ALGORITHMS, jwt_verify, key_set_parse
from hub.oidc.provider import OpenIdProvider
from tests.support.http_stub import HttpStub, http_stub
from tests.support.net import free_loopback_port

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def _public(key: Any, **members: Any) -> dict[str, Any]:
    algorithm = (
        jwt.algorithms.RSAAlgorithm
        if isinstance(key, rsa.RSAPrivateKey)
        else jwt.algorithms.ECAlgorithm
    )
    return {**json.loads(algorithm.to_jwk(key.public_key())), **members}


def _token(key: Any, alg: str, kid: str | None, **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iss": "https://idp.example/",
        "aud": "hub",
        "sub": "s-1",
        "iat": now,
        "exp": now + 60,
    }
    headers = {"kid": kid} if kid else {}
    return jwt.encode({**payload, **claims}, key, algorithm=alg, headers=headers)


@pytest.fixture(autouse=True)
def _no_cached_documents() -> Iterator[None]:
    cache.clear()
    yield
    cache.clear()


def test_the_discovery_url_drops_a_trailing_slash_but_the_issuer_keeps_it() -> None:
    # Discovery §4.1 builds the URL without the slash; §4.3 compares the issuer as given.
    assert discovery_url("https://idp.example/") == (
        "https://idp.example/.well-known/openid-configuration"
    )
    assert discovery_url("https://idp.example/realms/north") == (
        "https://idp.example/realms/north/.well-known/openid-configuration"
    )


def _discovery(issuer: str, **metadata: Any) -> dict[str, Any]:
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/auth",
        "token_endpoint": f"{issuer}/token",
        "jwks_uri": f"{issuer}/jwks",
        **metadata,
    }


@pytest.fixture
def idp() -> Iterator[HttpStub]:
    with http_stub() as stub:
        yield stub


@pytest.mark.parametrize("configured_ends", ["/", ""])
def test_the_issuer_is_compared_exactly(idp: HttpStub, configured_ends: str) -> None:
    announced = f"{idp.base}/tenant/"
    idp.documents["/tenant/.well-known/openid-configuration"] = _discovery(announced)
    configured = f"{idp.base}/tenant" + configured_ends
    with oidc_http_client() as http:
        if configured == announced:
            assert provider_metadata_read(issuer=configured, http=http).issuer == announced
        else:
            with pytest.raises(IssuerMismatch, match="names the issuer"):
                provider_metadata_read(issuer=configured, http=http)


def test_discovery_is_cached_and_a_refresh_reads_it_again(idp: HttpStub) -> None:
    issuer = idp.base
    idp.documents["/.well-known/openid-configuration"] = _discovery(issuer)
    with oidc_http_client() as http:
        first = provider_metadata_read(issuer=issuer, http=http)
        second = provider_metadata_read(issuer=issuer, http=http)
        assert (first.from_cache, second.from_cache) == (False, True)
        assert first.token_endpoint_auth_methods == ("client_secret_basic",)  # Discovery §3
        idp.documents["/.well-known/openid-configuration"] = _discovery(
            issuer, token_endpoint=f"{issuer}/oauth/token"
        )
        provider = OpenIdProvider(issuer=issuer, http=http)
        assert provider.metadata.token_endpoint == f"{issuer}/token"
        assert provider.refresh() is True
        assert provider.metadata.token_endpoint == f"{issuer}/oauth/token"
        assert provider.refresh() is False
    assert [r.path for r in idp.received].count("/.well-known/openid-configuration") == 3


def test_a_document_that_fails_a_check_is_never_cached(idp: HttpStub) -> None:
    issuer = idp.base
    idp.documents["/.well-known/openid-configuration"] = {"issuer": issuer}
    with oidc_http_client() as http:
        for _ in range(2):
            with pytest.raises(MetadataIncomplete, match="token_endpoint, jwks_uri"):
                provider_metadata_read(issuer=issuer, http=http)
    assert len(idp.received) == 2


def test_an_unreachable_provider_is_worth_retrying_and_a_404_is_not(idp: HttpStub) -> None:
    with oidc_http_client() as http:
        with pytest.raises(ProviderUnreachable, match="Could not reach"):
            provider_metadata_read(issuer=f"http://127.0.0.1:{free_loopback_port()}", http=http)
        with pytest.raises(ProviderMisconfigured, match="answered HTTP 404 instead of 200"):
            provider_metadata_read(issuer=f"{idp.base}/nothing-here", http=http)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"keys": "none"}, 'no "keys" list'),
        ({"keys": [{"kty": "RSA"}, "not-a-key"]}, "not JSON objects"),
        ({"keys": [_public(RSA_KEY, d="AQAB")]}, "private key material"),
        ({"keys": [{"kty": "XYZ", "x": "1"}]}, "key type 'XYZ'"),
        ({"keys": [_public(RSA_KEY, alg="none")]}, "'none', an algorithm the hub does not accept"),
        ({"keys": [_public(RSA_KEY, alg="HS256")]}, "'HS256', an algorithm"),
        ({"keys": [_public(RSA_KEY, use="enc")]}, "for 'enc', not for signatures"),
        ({"keys": [_public(EC_KEY, alg="ES384")]}, "cannot verify 'ES384'"),
        ({"keys": [{"kty": "RSA", "e": "AQAB"}]}, "key 1:"),
    ],
)  # fmt: skip
def test_a_key_set_without_a_usable_key_is_refused_with_the_reason(
    document: dict[str, Any], message: str
) -> None:
    with pytest.raises(KeySetInvalid, match=message):
        key_set_parse(document, source="https://idp.example/jwks")


def test_unusable_keys_are_skipped_beside_usable_ones_and_said_why() -> None:
    key_set = key_set_parse(
        {"keys": [{"kty": "XYZ"}, _public(RSA_KEY, kid="r1"), _public(RSA_KEY, alg="none")]},
        source="https://idp.example/jwks",
    )
    assert [key.kid for key in key_set.keys] == ["r1"]
    assert len(key_set.skipped) == 2
    # A key without "alg" verifies whatever its type allows (RFC 7517 §4.4 makes alg optional).
    token = _token(RSA_KEY, "PS384", "r1")
    key = key_set.verification_key(
        jwt.get_unverified_header(token), algorithms=ACCEPTED_SIGNING_ALGORITHMS, what="id_token"
    )
    claims = jwt_verify(
        token,
        key,
        what="id_token",
        audience="hub",
        issuer="https://idp.example/",
        required=("sub",),
    )
    assert claims["sub"] == "s-1"


def test_a_token_is_checked_against_the_one_list_of_algorithms_and_its_key() -> None:
    key_set = key_set_parse(
        {"keys": [_public(RSA_KEY, kid="r1", alg="RS256"), _public(EC_KEY, kid="e1")]},
        source="https://idp.example/jwks",
    )

    def key_for(token: str) -> jwt.PyJWK:
        header = jwt.get_unverified_header(token)
        return key_set.verification_key(
            header, algorithms=ACCEPTED_SIGNING_ALGORITHMS, what="id_token"
        )

    with pytest.raises(IdentityNotConfirmed, match="signed with 'HS256'"):
        key_for(_token("a-shared-secret-of-enough-length-000", "HS256", "r1"))
    with pytest.raises(SigningKeyUnknown, match="kid 'r2'"):
        key_for(_token(RSA_KEY, "RS256", "r2"))
    with pytest.raises(SigningKeyUnknown):
        key_for(_token(RSA_KEY, "RS384", "r1"))  # r1 is marked RS256 only
    with pytest.raises(IdentityNotConfirmed, match="names no kid"):
        two_rsa = key_set_parse(
            {"keys": [_public(RSA_KEY, kid="a"), _public(RSA_KEY, kid="b")]}, source="s"
        )
        two_rsa.verification_key(
            {"alg": "RS256"}, algorithms=ACCEPTED_SIGNING_ALGORITHMS, what="id_token"
        )
    ec_token = _token(EC_KEY, "ES256", "e1", aud="someone-else")
    with pytest.raises(IdentityNotConfirmed, match="id_token was refused: Audience"):
        jwt_verify(
            ec_token,
            key_for(ec_token),
            what="id_token",
            audience="hub",
            issuer="https://idp.example/",
            required=("sub",),
        )

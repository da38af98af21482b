"""The identity-provider and client-key *Test* checks, against a real sandbox IdP over HTTP."""

from collections.abc import Iterator

import pytest

from hub.models import IdentityProvider, Payer
from hub.signing_keys import payer_jwks, signing_keys_ensure
from plan_admin.connectivity import client_jwks_check, identity_provider_check
from tests.sandbox.harness import RunningSandbox, running_sandbox
from tests.support.http_stub import http_stub
from tests.support.net import free_loopback_port


@pytest.fixture(scope="module")
def idp() -> Iterator[RunningSandbox]:
    with running_sandbox("Identity Plan", "--members", "4") as sandbox:
        yield sandbox


def _failure(report: object) -> str:
    return " ".join(f"{s.name}: {s.detail}" for s in report.steps if not s.ok)


def test_a_working_identity_provider_passes_and_lists_its_keys(idp: RunningSandbox) -> None:
    report = identity_provider_check(
        identity_provider=IdentityProvider(issuer=f"{idp.base}/oidc", client_id="hub")
    )
    assert report.ok, report.as_dict()
    names = [step.name for step in report.steps]
    assert names == [
        "Read the discovery document",
        "Compare the issuer",
        "Check the endpoints",
        "Read the signing keys",
        "Parse the keys",
    ]
    assert "key(s) for ID tokens" in report.steps[-1].detail
    assert "RS256" in report.steps[-1].detail


def test_an_issuer_that_differs_from_the_discovery_document_fails(idp: RunningSandbox) -> None:
    # The discovery document is found (the trailing slash is dropped to build its URL),
    # but its issuer has no slash: ID tokens would not validate, so the check refuses.
    report = identity_provider_check(
        identity_provider=IdentityProvider(issuer=f"{idp.base}/oidc/", client_id="hub")
    )
    assert not report.ok
    assert "names the issuer" in _failure(report)


def test_an_unreachable_identity_provider_fails_clearly() -> None:
    port = free_loopback_port()
    report = identity_provider_check(
        identity_provider=IdentityProvider(issuer=f"http://127.0.0.1:{port}/oidc", client_id="hub")
    )
    assert not report.ok
    assert (
        f"Could not reach http://127.0.0.1:{port}/oidc/.well-known/openid-configuration"
        in _failure(report)
    )


def test_a_url_that_is_not_an_identity_provider_fails_clearly(idp: RunningSandbox) -> None:
    report = identity_provider_check(
        identity_provider=IdentityProvider(issuer=f"{idp.base}/fhir", client_id="hub")
    )
    assert not report.ok
    assert "instead of 200" in _failure(report) or "did not answer with JSON" in _failure(report)


def test_plain_http_beyond_the_allow_list_is_never_called() -> None:
    report = identity_provider_check(
        identity_provider=IdentityProvider(issuer="http://login.example-payer.com", client_id="hub")
    )
    assert not report.ok
    assert "plain http to login.example-payer.com is not allowed" in _failure(report)


def test_the_hubs_own_jwks_passes_as_client_keys(north: object) -> None:
    payer: Payer = north.payer
    keys = signing_keys_ensure(payer=payer)
    with http_stub({"/jwks.json": payer_jwks(payer=payer)}) as stub:
        report = client_jwks_check(jwks_url=f"{stub.base}/jwks.json")
    assert report.ok, report.as_dict()
    listing = report.steps[1].detail
    for key in keys:
        assert f"{key.kid} ({key.algorithm})" in listing
    assert "2 key(s) can sign client assertions" in report.steps[-1].detail


def test_client_keys_without_rs384_or_es384_fail(idp: RunningSandbox) -> None:
    report = client_jwks_check(jwks_url=f"{idp.base}/oidc/jwks")
    assert not report.ok
    assert "No key is marked for RS384 or ES384" in _failure(report)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"keys": []}, "the list is empty"),
        ({"nothing": 1}, 'no "keys" list'),
        ({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB", "d": "AQAB", "alg": "RS384"}]},
         "publishes private key material"),
        ({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}, "publishes private key material"),
        ({"keys": [{"kty": "RSA", "alg": "RS384"}]}, "No key could be read"),
        (["not", "an", "object"], "not an object"),
    ],
)  # fmt: skip
def test_malformed_client_key_sets_fail_with_the_reason(document: object, message: str) -> None:
    with http_stub({"/jwks.json": document}) as stub:
        report = client_jwks_check(jwks_url=f"{stub.base}/jwks.json")
    assert not report.ok
    assert message in _failure(report)

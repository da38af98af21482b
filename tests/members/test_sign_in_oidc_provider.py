"""Sign-in against a certified OpenID Provider: panva's oidc-provider, run by Node on loopback.

The hub's test client follows the real redirects: the hub sends the person to the
provider, a small browser (tests/support/openid_provider.py) signs in and consents there,
and the provider's answer comes back to the hub's callback. Everything the hub does in
between (discovery, the token request, id_token, userinfo, keys) goes over HTTP to the
provider, as it would in production.
"""

import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest
from django.core.cache import cache
from django.http import HttpResponse
from django.test import Client

from hub.models import ClientAuthMethod, IdentityProvider, Role, RoleClaimFormat, User
from hub.signing_keys import payer_jwks, signing_keys_ensure
from plan_admin.connectivity import identity_provider_check
from tests.conftest import Tenant
from tests.support.openid_provider import (
    OpenIdProviderProcess,
    provider_browse,
    running_openid_provider,
)

CALLBACK = "http://testserver/oidc/callback/"
SIGNED_OUT = "http://testserver/p/north/me/signed-out/"
SECRET = "hub-client-secret-value"
ACCOUNTS = {
    "patricia": {
        "given_name": "Patricia",
        "family_name": "Person",
        "birthdate": "1980-04-02",
        "gender": "female",
        "member_id": "M-1001",
        "hub_role": "member",
        "groups": ["newsletter", "hub-members"],
        "realm_access": {"roles": ["offline_access", "hub-member"]},
    },
    "nora": {
        "given_name": "Nora",
        "family_name": "Admin",
        "hub_role": "plan_admin",
        "groups": ["hub-admins"],
        "realm_access": {"roles": ["offline_access", "hub-admin"]},
    },
    "carl": {
        "given_name": "Carl",
        "family_name": "Contractor",
        "hub_role": "contractor",
        "groups": ["contractors"],
        "realm_access": {"roles": ["offline_access"]},
    },
}


@pytest.fixture(scope="module")
def op() -> Iterator[OpenIdProviderProcess]:
    with running_openid_provider() as provider:
        yield provider


@pytest.fixture(autouse=True)
def _no_cached_documents() -> Iterator[None]:
    # One provider serves the module under one issuer, reconfigured by each test; a test
    # about stale copies makes them itself.
    cache.clear()
    yield
    cache.clear()


def _client(**metadata: Any) -> dict[str, Any]:
    """Return the hub's client registration at the provider, with ``metadata`` on top."""
    return {
        "client_id": "hub",
        "client_secret": SECRET,
        "redirect_uris": [CALLBACK],
        "post_logout_redirect_uris": [SIGNED_OUT],
        "token_endpoint_auth_method": "client_secret_basic",
        **metadata,
    }


def _provider(op: OpenIdProviderProcess, *, issuer: str | None = None, **settings: Any) -> str:
    """Configure the provider with the hub's client and the accounts; return its issuer."""
    client = settings.pop("client", _client())
    return op.configure(clients=[client], accounts=ACCOUNTS, issuer=issuer, **settings)


def _connect(tenant: Tenant, issuer: str, **settings: Any) -> IdentityProvider:
    values = {"client_id": "hub", "client_secret": SECRET, "scopes": "openid hub", **settings}
    return IdentityProvider.objects.create(payer=tenant.payer, issuer=issuer, **values)


def _sign_in(client: Client, op: OpenIdProviderProcess, login: str) -> HttpResponse:
    """Sign in at North through the provider as ``login``; return the hub's last answer."""
    start = client.get("/p/north/sign-in/")
    assert start.status_code == 302, start.content.decode()
    back = urlsplit(provider_browse(start["Location"], provider=op, login=login))
    assert back.path == "/oidc/callback/", back
    return client.get(back.path, dict(parse_qsl(back.query)))


def _page(response: HttpResponse) -> str:
    return response.content.decode()


@pytest.mark.parametrize("issuer_ends", ["/", ""], ids=["issuer-with-slash", "issuer-without"])
def test_members_and_administrators_sign_in_whatever_the_issuers_last_character(
    north: Tenant, op: OpenIdProviderProcess, issuer_ends: str
) -> None:
    issuer = _provider(op, issuer=op.base + issuer_ends)
    assert issuer == op.base + issuer_ends
    provider = _connect(north, issuer)

    # The Test button and sign-in agree: both compare the issuer exactly.
    assert identity_provider_check(identity_provider=provider).ok

    member = Client()
    finish = _sign_in(member, op, "patricia")
    assert (finish.status_code, finish["Location"]) == (302, "/p/north/me/")
    patricia = User.objects.get(payer=north.payer, oidc_subject="patricia")
    assert (patricia.role, patricia.first_name, patricia.plan_member_id) == (
        Role.MEMBER,
        "Patricia",
        "M-1001",
    )
    assert patricia.birth_date.isoformat() == "1980-04-02"
    home = member.get("/p/north/me/")
    assert home.status_code == 200
    assert "Signed in as Patricia Person" in _page(home)

    admin = Client()
    finish = _sign_in(admin, op, "nora")
    assert (finish.status_code, finish["Location"]) == (302, "/p/north/admin/")
    assert User.objects.get(payer=north.payer, oidc_subject="nora").role == Role.PLAN_ADMIN
    assert admin.get("/p/north/admin/").status_code == 200
    assert admin.get("/p/north/me/").status_code == 404


@pytest.mark.parametrize(
    ("announced_ends", "configured_ends"),
    [("/", ""), ("", "/")],
    ids=["slash-dropped", "slash-added"],
)
def test_an_issuer_differing_by_its_trailing_slash_fails_the_test_and_sign_in_alike(
    north: Tenant, op: OpenIdProviderProcess, announced_ends: str, configured_ends: str
) -> None:
    _provider(op, issuer=op.base + announced_ends)
    provider = _connect(north, op.base + configured_ends)

    report = identity_provider_check(identity_provider=provider)
    assert not report.ok
    assert [step.name for step in report.steps if not step.ok] == ["Compare the issuer"]

    refused = Client().get("/p/north/sign-in/")
    assert refused.status_code == 503
    page = _page(refused)
    assert "not set up correctly with the hub" in page
    assert f"names the issuer &#x27;{op.base + announced_ends}&#x27;" in page
    assert "Discovery §4.3" in page


@pytest.mark.parametrize(
    ("method", "configured"),
    [
        ("client_secret_basic", ClientAuthMethod.AUTOMATIC),
        ("client_secret_basic", ClientAuthMethod.CLIENT_SECRET_BASIC),
        ("client_secret_post", ClientAuthMethod.AUTOMATIC),
        ("client_secret_post", ClientAuthMethod.CLIENT_SECRET_POST),
    ],
)
def test_client_secret_basic_and_post_are_both_spoken(
    north: Tenant, op: OpenIdProviderProcess, method: str, configured: str
) -> None:
    # The provider takes only ``method``: any other way of sending the secret is refused.
    issuer = _provider(
        op, client=_client(token_endpoint_auth_method=method), client_auth_methods=[method]
    )
    _connect(north, issuer, token_endpoint_auth_method=configured)
    assert _sign_in(Client(), op, "patricia")["Location"] == "/p/north/me/"


def test_a_client_secret_the_provider_refuses_ends_on_a_page_for_the_administrator(
    north: Tenant, op: OpenIdProviderProcess, caplog: pytest.LogCaptureFixture
) -> None:
    issuer = _provider(op, client=_client(client_secret="the-secret-the-provider-knows"))
    _connect(north, issuer)
    with caplog.at_level(logging.WARNING, logger="members.sign_in"):
        refused = _sign_in(Client(), op, "patricia")
    assert refused.status_code == 503
    page = _page(refused)
    assert "refused to complete the sign-in" in page
    assert "invalid_client" in page
    assert "client authentication (client_secret_basic)" in page
    assert SECRET not in page and "the-secret-the-provider-knows" not in page
    (refusal,) = [record for record in caplog.records if record.name == "members.sign_in"]
    assert "invalid_client" in refusal.detail
    logged = " ".join(str(value) for record in caplog.records for value in vars(record).values())
    assert SECRET not in logged and "Patricia" not in logged
    assert not User.objects.filter(oidc_subject="patricia").exists()


def test_private_key_jwt_signs_with_the_payers_own_key(
    north: Tenant, op: OpenIdProviderProcess
) -> None:
    signing_keys_ensure(payer=north.payer)
    published = payer_jwks(payer=north.payer)
    client = _client(token_endpoint_auth_method="private_key_jwt", jwks=published)
    del client["client_secret"]
    issuer = _provider(op, client=client)
    # No secret saved: automatic picks private_key_jwt from the discovery document.
    _connect(north, issuer, client_secret="")
    assert _sign_in(Client(), op, "nora")["Location"] == "/p/north/admin/"


@pytest.mark.parametrize(
    ("claim", "shape", "admin_value", "member_value"),
    [
        ("hub_role", RoleClaimFormat.TEXT, "plan_admin", "member"),
        ("groups", RoleClaimFormat.LIST, "hub-admins", "hub-members"),
        ("realm_access.roles", RoleClaimFormat.LIST, "hub-admin", "hub-member"),
    ],
    ids=["text", "list", "nested-path"],
)
def test_the_role_claim_is_read_as_each_payer_set_it(
    north: Tenant,
    op: OpenIdProviderProcess,
    claim: str,
    shape: str,
    admin_value: str,
    member_value: str,
) -> None:
    issuer = _provider(op)
    _connect(
        north,
        issuer,
        claim_role=claim,
        role_claim_format=shape,
        role_admin_value=admin_value,
        role_member_value=member_value,
    )
    assert _sign_in(Client(), op, "nora")["Location"] == "/p/north/admin/"
    assert _sign_in(Client(), op, "patricia")["Location"] == "/p/north/me/"

    refused = _sign_in(Client(), op, "carl")
    assert refused.status_code == 403
    page = _page(refused)
    assert "not set up for this service" in page
    assert f"The role claim &#x27;{claim}&#x27;" in page
    assert not User.objects.filter(oidc_subject="carl").exists()


def test_a_role_claim_of_another_shape_than_configured_is_refused_with_the_reason(
    north: Tenant, op: OpenIdProviderProcess
) -> None:
    issuer = _provider(op)
    _connect(north, issuer, claim_role="groups", role_claim_format=RoleClaimFormat.TEXT)
    refused = _sign_in(Client(), op, "patricia")
    assert refused.status_code == 403
    assert "not a text value" in _page(refused)


def test_signed_userinfo_is_verified_and_its_claims_used(
    north: Tenant, op: OpenIdProviderProcess
) -> None:
    issuer = _provider(op, client=_client(userinfo_signed_response_alg="RS256"))
    _connect(north, issuer)
    assert _sign_in(Client(), op, "patricia")["Location"] == "/p/north/me/"
    # The id_token carries only sub here (oidc-provider's conformIdTokenClaims), so the
    # names can only have come from the signed userinfo answer.
    assert User.objects.get(oidc_subject="patricia").last_name == "Person"
    assert "GET /me" in op.requests()


def test_without_a_userinfo_endpoint_the_claims_come_from_the_id_token(
    north: Tenant, op: OpenIdProviderProcess
) -> None:
    issuer = _provider(op, userinfo=False)
    _connect(north, issuer)
    served_before = len(op.requests())
    assert _sign_in(Client(), op, "patricia")["Location"] == "/p/north/me/"
    assert "GET /me" not in op.requests()[served_before:]
    assert User.objects.get(oidc_subject="patricia").plan_member_id == "M-1001"


def test_a_rotated_signing_key_is_fetched_when_an_id_token_names_it(
    north: Tenant, op: OpenIdProviderProcess
) -> None:
    issuer = _provider(op)
    _connect(north, issuer)
    served_before = len(op.requests())

    def jwks_reads() -> int:
        return op.requests()[served_before:].count("GET /jwks")

    assert _sign_in(Client(), op, "patricia")["Location"] == "/p/north/me/"
    assert _sign_in(Client(), op, "patricia")["Location"] == "/p/north/me/"
    assert jwks_reads() == 1  # the key set was cached

    op.rotate_keys()
    assert _sign_in(Client(), op, "patricia")["Location"] == "/p/north/me/"
    assert jwks_reads() == 2  # the unknown kid sent the hub back for the new key set


def test_a_token_endpoint_moved_since_discovery_was_cached_is_found_again(
    north: Tenant, op: OpenIdProviderProcess
) -> None:
    issuer = _provider(op)
    _connect(north, issuer)
    assert _sign_in(Client(), op, "patricia")["Location"] == "/p/north/me/"

    _provider(op, routes={"token": "/oauth/token"})
    served_before = len(op.requests())
    assert _sign_in(Client(), op, "patricia")["Location"] == "/p/north/me/"
    served = op.requests()[served_before:]
    assert served.index("POST /token") < served.index("POST /oauth/token")


def test_a_provider_that_is_down_gives_a_page_at_the_start_and_at_the_callback(
    north: Tenant,
) -> None:
    with running_openid_provider() as op:
        issuer = _provider(op)
        _connect(north, issuer)
        client = Client()
        start = client.get("/p/north/sign-in/")
        back = urlsplit(provider_browse(start["Location"], provider=op, login="patricia"))
        op.stop()

        at_callback = client.get(back.path, dict(parse_qsl(back.query)))
        assert at_callback.status_code == 503
        assert "could not be reached" in _page(at_callback)

        cache.clear()
        at_start = Client().get("/p/north/sign-in/")
        assert at_start.status_code == 503
        assert "could not be reached" in _page(at_start)
        assert "Could not reach" in _page(at_start)  # the administrator's part


@pytest.mark.parametrize(
    ("fault", "detail"),
    [
        ("id_token_malformed", "The id_token is not a JWT"),
        ("id_token_wrong_audience", "Audience doesn&#x27;t match"),
        ("id_token_expired", "Signature has expired"),
        ("id_token_bad_signature", "Signature verification failed"),
        ("userinfo_other_subject", "about another person than the id_token"),
    ],
)
def test_an_id_token_or_userinfo_the_hub_cannot_trust_ends_on_a_clear_page(
    north: Tenant, op: OpenIdProviderProcess, fault: str, detail: str
) -> None:
    issuer = _provider(op, fault=fault)
    _connect(north, issuer)
    client = Client()
    refused = _sign_in(client, op, "patricia")
    assert refused.status_code == 403
    page = _page(refused)
    assert "did not confirm who you are" in page
    assert detail in page
    assert "What to check" in page
    assert not User.objects.filter(oidc_subject="patricia").exists()
    assert client.get("/p/north/me/").status_code == 302  # not signed in


def test_a_userinfo_answer_that_is_not_json_ends_on_a_clear_page(
    north: Tenant, op: OpenIdProviderProcess
) -> None:
    issuer = _provider(op, fault="userinfo_not_json")
    _connect(north, issuer)
    refused = _sign_in(Client(), op, "patricia")
    assert refused.status_code == 503
    assert "did not answer with JSON" in _page(refused)


def test_sign_out_ends_the_providers_session_too_and_comes_back(
    north: Tenant, op: OpenIdProviderProcess
) -> None:
    issuer = _provider(op)
    _connect(north, issuer)
    client = Client()
    _sign_in(client, op, "patricia")
    out = client.post("/p/north/me/sign-out/")
    assert out.status_code == 302
    end_session = urlsplit(out["Location"])
    assert f"{end_session.scheme}://{end_session.netloc}{end_session.path}" == (
        f"{op.base}/session/end"
    )
    query = parse_qs(end_session.query)
    assert query["post_logout_redirect_uri"] == [SIGNED_OUT]
    assert query["client_id"] == ["hub"]
    assert query["id_token_hint"][0].count(".") == 2
    assert provider_browse(out["Location"], provider=op) == SIGNED_OUT
    assert client.get("/p/north/me/").status_code == 302

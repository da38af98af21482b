"""Hostile input at every edge ends in a 4xx that names the problem, never a 500, and leaves
nothing behind (issue 15): the anonymous token endpoint, the Consent endpoint, the
payer-system API, the plan administrators' API and forms, the member portal, the sign-in page.

A table of known hostile inputs, each with its sentence; then properties (hypothesis, how many
examples: tests/support/fuzz.py) drawing signed assertions and Subscriptions nobody listed.
"""

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.test import Client
from hypothesis import given
from hypothesis import strategies as st

from exchange.consents.endpoint.auth import PAYER_API_SCOPES, token_endpoint_url
from exchange.models import ConsentSubscription, OptInRecord, UsedClientAssertion
from hub.models import FhirEndpoint, Payer, SftpDestination
from tests.api.conftest import opt_in_body
from tests.api.payer_systems import PayerSystemClient
from tests.conftest import Tenant
from tests.factories import ExchangeRequestFactory
from tests.support.fuzz import fuzz_requests, json_values, mutated
from tests.support.http_stub import HttpStub, http_stub
from tests.support.sessions import signed_in

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
JWK = {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key())), "kid": "k"}
NESTED_TOO_DEEP = "[" * 5000 + "]" * 5000  # past Python's recursion limit
NESTED_DEEP = "[" * 200 + "]" * 200  # within it, past the hub's 64 levels


def _segment(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signed(**claims: Any) -> str:
    payload = {
        "iss": "south",
        "sub": "south",
        "aud": token_endpoint_url(),
        "exp": int(time.time()) + 240,
        "jti": str(uuid.uuid4()),
        **claims,
    }
    return jwt.encode(payload, KEY, algorithm="RS384", headers={"kid": "k"})


def _unsigned(header: bytes, payload: bytes) -> str:
    return f"{_segment(header)}.{_segment(payload)}.{_segment(b'signature')}"


def _token(assertion: str, scope: str = "system/Consent.rs system/Subscription.cruds") -> Any:
    return Client().post(
        "/fhir/auth/token",
        {
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
            "scope": scope,
        },
    )


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[HttpStub]:
    """One loopback server for the module: the persona payers' systems' key sets."""
    with http_stub() as stub:
        yield stub


@pytest.fixture
def south_jwks(north: Tenant, south: Tenant, jwks_server: HttpStub) -> HttpStub:
    """North's and South's systems registered with the key set each signs with."""
    for payer in (north.payer, south.payer):
        jwks_server.documents[f"/{payer.slug}/jwks.json"] = {"keys": [{**JWK, "alg": "RS384"}]}
        payer.client_jwks_url = f"{jwks_server.base}/{payer.slug}/jwks.json"
        payer.save()
    return jwks_server


ASSERTIONS: list[tuple[str, Callable[[], str], str]] = [
    ("alg none", lambda: _unsigned(b'{"alg":"none"}', b'{"iss":"south"}'), "RS384 or ES384"),
    ("header nested too deep", lambda: _unsigned(NESTED_TOO_DEEP.encode(), b"{}"), "not a JWT"),
    (
        "payload nested too deep",
        lambda: _unsigned(b'{"alg":"RS384"}', NESTED_TOO_DEEP.encode()),
        "not a JWT",
    ),
    (
        "NUL in iss",
        lambda: _unsigned(b'{"alg":"RS384"}', b'{"iss":"so\\u0000uth"}'),
        "iss is not the client id",
    ),
    (
        "megabyte iss",
        lambda: _unsigned(b'{"alg":"RS384"}', json.dumps({"iss": "s" * 10**6}).encode()),
        "iss is not the client id",
    ),
    ("exp centuries ahead", lambda: _signed(exp=10**12), "more than five minutes ahead"),
    ("exp past any date", lambda: _signed(exp=10**20), "more than five minutes ahead"),
    (
        "exp an hour ahead",
        lambda: _signed(exp=int(time.time()) + 3600),
        "more than five minutes ahead",
    ),
    ("over-long jti", lambda: _signed(jti="j" * 5000), "jti must be a string of 1 to 255"),
    ("jti not a string", lambda: _signed(jti={"a": 1}), "JWT ID must be a string"),
]


@pytest.mark.parametrize(
    ("what", "assertion", "sentence"), ASSERTIONS, ids=[a[0] for a in ASSERTIONS]
)
def test_the_token_endpoint_refuses_hostile_assertions(
    south_jwks: HttpStub, what: str, assertion: Callable[[], str], sentence: str
) -> None:
    response = _token(assertion())
    assert response.status_code == 401
    assert sentence in response.json()["error_description"]
    assert not UsedClientAssertion.objects.exists()


KEY_SETS: list[tuple[str, Any, str]] = [
    ("kty a list", {"keys": [{**JWK, "kty": ["RSA"]}]}, "kty that is not a string"),
    ("kty an object", {"keys": [{**JWK, "kty": {}}]}, "kty that is not a string"),
    ("alg none", {"keys": [{**JWK, "alg": "none"}]}, "an algorithm the hub does not accept"),
    ("kid a list", {"keys": [{**JWK, "kid": ["k"]}]}, "kid that is not a string"),
    ("a key that is no object", {"keys": ["k"]}, "not JSON objects"),
    ("keys an object", {"keys": {"k": JWK}}, 'no "keys" list'),
    ("nested deep", {"keys": [JWK], "x": json.loads(NESTED_DEEP)}, "nested deeper than 64 levels"),
    ("NUL in kid", {"keys": [{**JWK, "kid": "k\x00"}]}, "NUL character"),
]


@pytest.mark.parametrize(("what", "key_set", "sentence"), KEY_SETS, ids=[k[0] for k in KEY_SETS])
def test_the_token_endpoint_refuses_a_key_set_that_is_not_what_it_claims(
    south_jwks: HttpStub, what: str, key_set: Any, sentence: str
) -> None:
    south_jwks.documents["/south/jwks.json"] = key_set
    response = _token(_signed())
    assert response.status_code == 401
    assert sentence in response.json()["error_description"]
    assert not UsedClientAssertion.objects.exists()


@pytest.fixture
def subscriber(north: Tenant, south: Tenant, south_jwks: HttpStub) -> tuple[dict[str, str], int]:
    """South's bearer token, and the id of a Consent naming South as the former payer."""
    exchange_request = ExchangeRequestFactory(
        consent__member=north.member, consent__former_payer=south.payer
    )
    token = _token(_signed()).json()["access_token"]
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}, exchange_request.consent.pk


def _subscription(consent_id: int, **channel: Any) -> dict[str, Any]:
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "Consent status changes",
        "criteria": f"Consent?_id={consent_id}",
        "channel": {
            "type": "rest-hook",
            "endpoint": "https://hooks.example-payer.com/consents",
            "payload": "application/fhir+json",
            **channel,
        },
    }


SUBSCRIPTIONS: list[tuple[str, Callable[[int], str], int, str]] = [
    ("nested too deep", lambda c: NESTED_TOO_DEEP, 400, "nested deeper than 64 levels"),
    (
        "nested deep",
        lambda c: json.dumps({**_subscription(c), "x": json.loads(NESTED_DEEP)}),
        400,
        "nested deeper than 64 levels",
    ),
    (
        "NUL in reason",
        lambda c: json.dumps({**_subscription(c), "reason": "a\x00"}),
        400,
        "NUL character (\\u0000) at reason",
    ),
    (
        "NUL in endpoint",
        lambda c: json.dumps(_subscription(c, endpoint="https://h.example.com/\x00")),
        400,
        "NUL character",
    ),
    (
        "private endpoint",
        lambda c: json.dumps(_subscription(c, endpoint="https://10.0.0.1/h")),
        422,
        "10.0.0.1 is a private or reserved",
    ),
    (
        "NAT64 endpoint",
        lambda c: json.dumps(_subscription(c, endpoint="https://[64:ff9b::a00:1]/h")),
        422,
        "NAT64 address (RFC 6052) standing for 10.0.0.1",
    ),
    (
        "loopback name",
        lambda c: json.dumps(_subscription(c, endpoint="https://localhost/h")),
        422,
        "localhost names this machine",
    ),
    (
        "unparseable host",
        lambda c: json.dumps(_subscription(c, endpoint="https://\u2603.example.com/h")),
        422,
        "Invalid IDNA hostname",
    ),
    (
        "port out of range",
        lambda c: json.dumps(_subscription(c, endpoint="https://h.example.com:99999/")),
        422,
        "Port out of range",
    ),
    (
        "eleven headers",
        lambda c: json.dumps(_subscription(c, header=[f"X-{n}: v" for n in range(11)])),
        422,
        "holds 11 headers; the hub sends at most 10",
    ),
    (
        "a header over 1 KiB",
        lambda c: json.dumps(_subscription(c, header=["X: " + "v" * 1100])),
        422,
        "longer than 1024 bytes",
    ),
    (
        "a header of two lines",
        lambda c: json.dumps(_subscription(c, header=["X: a\r\nY: b"])),
        422,
        "one 'Name: value' line",
    ),
    (
        "a header not ASCII",
        lambda c: json.dumps(_subscription(c, header=["X: caf\u00e9"])),
        422,
        "printable ASCII",
    ),
]


@pytest.mark.parametrize(
    ("what", "body", "status", "sentence"), SUBSCRIPTIONS, ids=[s[0] for s in SUBSCRIPTIONS]
)
def test_the_consent_endpoint_refuses_hostile_subscriptions(
    subscriber: tuple[dict[str, str], int],
    what: str,
    body: Callable[[int], str],
    status: int,
    sentence: str,
) -> None:
    bearer, consent_id = subscriber
    north = Payer.objects.get(slug="north")
    response = Client().post(
        "/p/north/fhir/Subscription",
        body(consent_id),
        content_type="application/fhir+json",
        **bearer,
    )
    assert response.status_code == status
    assert response.json()["resourceType"] == "OperationOutcome"
    assert sentence in response.json()["issue"][0]["diagnostics"]
    assert not ConsentSubscription.objects.for_payer(north).exists()


def test_ten_short_headers_are_kept_and_another_payer_gets_a_404(
    subscriber: tuple[dict[str, str], int],
) -> None:
    bearer, consent_id = subscriber
    body = json.dumps(_subscription(consent_id, header=[f"X-{n}: v" for n in range(10)]))
    other = Client().post(
        "/p/south/fhir/Subscription", body, content_type="application/fhir+json", **bearer
    )
    assert other.status_code == 404
    created = Client().post(
        "/p/north/fhir/Subscription", body, content_type="application/fhir+json", **bearer
    )
    assert created.status_code == 201
    north = Payer.objects.get(slug="north")
    assert ConsentSubscription.objects.for_payer(north).get().headers.count("\n") == 9


@pytest.fixture
def north_system(south_jwks: HttpStub) -> PayerSystemClient:
    """North's enrollment system with a token of every API scope."""
    response = _token(_signed(iss="north", sub="north"), scope=" ".join(PAYER_API_SCOPES))
    return PayerSystemClient(token=response.json()["access_token"])


def _cursor(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


API_CALLS: list[tuple[str, Callable[[PayerSystemClient], Any], int, str]] = [
    (
        "nested too deep",
        lambda c: c.post("/api/v1/opt-ins", NESTED_TOO_DEEP, Idempotency_Key="a"),
        400,
        "nested deeper than 64 levels",
    ),
    (
        "nested deep",
        lambda c: c.post(
            "/api/v1/opt-ins",
            json.dumps(opt_in_body(x=json.loads(NESTED_DEEP))),
            Idempotency_Key="b",
        ),
        400,
        "nested deeper than 64 levels",
    ),
    (
        "NUL in a name",
        lambda c: c.post(
            "/api/v1/opt-ins",
            json.dumps(opt_in_body(member={"family_name": "a\x00"})),
            Idempotency_Key="c",
        ),
        400,
        "NUL character (\\u0000) at member.family_name",
    ),
    (
        "NUL in a member name",
        lambda c: c.post(
            "/api/v1/opt-ins", json.dumps(opt_in_body(**{"a\x00": 1})), Idempotency_Key="d"
        ),
        400,
        "NUL character (\\u0000) in a member name",
    ),
    (
        "not JSON",
        lambda c: c.post("/api/v1/opt-ins", "{", Idempotency_Key="e"),
        400,
        "is not JSON",
    ),
    (
        "NUL in a query",
        lambda c: c.get("/api/v1/requests", status="\x00"),
        422,
        "is not a valid choice",
    ),
    (
        "a cursor of text",
        lambda c: c.get("/api/v1/requests", cursor=_cursor("p=abc")),
        422,
        "Give the cursor as",
    ),
    (
        "a cursor past bigint",
        lambda c: c.get("/api/v1/requests", cursor=_cursor("p=" + "9" * 30)),
        422,
        "Give the cursor as",
    ),
    (
        "a cursor with NUL",
        lambda c: c.get("/api/v1/requests", cursor=_cursor("p=1%00")),
        422,
        "Give the cursor as",
    ),
]


@pytest.mark.parametrize(
    ("what", "call", "status", "sentence"), API_CALLS, ids=[a[0] for a in API_CALLS]
)
def test_the_payer_system_api_refuses_hostile_input(
    north_system: PayerSystemClient,
    what: str,
    call: Callable[[PayerSystemClient], Any],
    status: int,
    sentence: str,
) -> None:
    response = call(north_system)
    assert response.status_code == status
    assert sentence in response.json()["detail"]
    assert not OptInRecord.objects.for_payer(Payer.objects.get(slug="north")).exists()


def test_a_huge_limit_on_the_administrators_api_is_clamped(north: Tenant, south: Tenant) -> None:
    for _ in range(3):
        ExchangeRequestFactory(consent__member=north.member, consent__former_payer=south.payer)
    nora = signed_in(north.admin)
    huge = nora.get("/p/north/api/exchange-requests/", {"limit": "9" * 30})
    assert huge.status_code == 200
    assert len(huge.json()["results"]) == 3
    past_the_end = nora.get("/p/north/api/exchange-requests/", {"offset": "9" * 30, "limit": 5})
    assert past_the_end.status_code == 200
    assert past_the_end.json()["results"] == []
    assert signed_in(south.admin).get("/p/north/api/exchange-requests/").status_code == 404


FHIR = {"base_url": "https://fhir.example-payer.com/r4", "offers_backend_services": "on"}
SFTP = {
    "host": "sftp.example-payer.com",
    "port": "22",
    "username": "hub",
    "password": "p",
    "remote_directory": "/inbound",
    "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
}
FORMS: list[tuple[str, str, dict[str, str], str]] = [
    (
        "a host IDNA refuses",
        "fhir-endpoint",
        {**FHIR, "base_url": "https://\u2603.example.com/r4"},
        "Invalid IDNA hostname",
    ),
    (
        "a port out of range",
        "fhir-endpoint",
        {**FHIR, "base_url": "https://fhir.example.com:99999/r4"},
        "Port out of range",
    ),
    (
        "a NUL in a URL",
        "fhir-endpoint",
        {**FHIR, "base_url": "https://fhir.example.com/\x00"},
        "Null characters are not allowed",
    ),
    (
        "a public key not ASCII",
        "sftp-destination",
        {**SFTP, "host_key": "ssh-ed25519 AAAAC3Nz\u00e9"},
        "holds the character",
    ),
    (
        "a key type not ASCII",
        "sftp-destination",
        {**SFTP, "host_key": "ssh-\u00e9d25519 AAAA"},
        "holds the character",
    ),
    (
        "a private key not ASCII",
        "sftp-destination",
        {
            **SFTP,
            "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\n\u00e9\n-----END OPENSSH PRIVATE KEY-----",
        },
        "holds the character",
    ),
    (
        "an unknown key type",
        "sftp-destination",
        {**SFTP, "host_key": "ssh-foo AAAA"},
        "not an SSH key type the hub knows",
    ),
]


@pytest.mark.parametrize(("what", "part", "data", "sentence"), FORMS, ids=[f[0] for f in FORMS])
def test_the_settings_forms_refuse_hostile_input(
    north: Tenant, what: str, part: str, data: dict[str, str], sentence: str
) -> None:
    response = signed_in(north.admin).post(f"/p/north/admin/settings/{part}/", data)
    assert response.status_code == 400
    assert sentence in response.content.decode().replace("&#x27;", "'")
    assert not FhirEndpoint.objects.for_payer(north.payer).exists()
    assert not SftpDestination.objects.for_payer(north.payer).exists()


PAGES: list[tuple[str, str, str]] = [
    ("member", "/p/north/me/plans/?q=a%00b", "Null characters are not allowed"),
    ("admin", "/p/north/admin/requests/?member=a%00b", "Null characters are not allowed"),
    ("admin", "/p/north/admin/directory/?q=a%00b", "Null characters are not allowed"),
    ("admin", "/p/north/admin/recurring-pulls/?member=a%00b", "Null characters are not allowed"),
    ("anonymous", "/oidc/callback/?state=%00&code=%00", ""),
]


@pytest.mark.parametrize(("who", "path", "sentence"), PAGES)
def test_pages_refuse_a_nul_byte_in_the_query(
    north: Tenant, who: str, path: str, sentence: str
) -> None:
    client = {"member": signed_in(north.member), "admin": signed_in(north.admin)}.get(who, Client())
    response = client.get(path)
    assert 400 <= response.status_code < 500
    assert sentence in response.content.decode()


# Property-based (hypothesis): the hostile inputs nobody listed above (issue 15 item 4).
CLAIMS = {
    "iss": "south",
    "sub": "south",
    "aud": "set per example",
    "exp": 0,
    "jti": "set per example",
}


def _signed_as_is(header: dict[str, Any], claims: Any) -> str:
    """Return a JWT with exactly this header and payload, signed with South's key (RS384):
    PyJWT would refuse to write some of what a hostile client may send."""
    header_part = _segment(json.dumps(header).encode())
    signing_input = f"{header_part}.{_segment(json.dumps(claims).encode())}"
    signature = KEY.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA384())
    return f"{signing_input}.{_segment(signature)}"


@fuzz_requests
@given(
    claims=mutated(CLAIMS),
    header=st.dictionaries(
        st.sampled_from(["kid", "typ", "jku", "x5u", "cty"]), json_values, max_size=3
    ),
)
def test_any_signed_assertion_gets_a_token_or_a_refusal_under_500(
    south_jwks: Any, settings: Any, claims: Any, header: dict[str, Any]
) -> None:
    # Refusals here are the point: the lockout (tested on its own) must not end the draw.
    settings.TOKEN_FAILURES_PER_CLIENT = settings.TOKEN_FAILURES_PER_ADDRESS = 10**6
    if isinstance(claims, dict):
        claims = {
            **claims,
            "aud": claims["aud"]
            if claims.get("aud") != "set per example"
            else token_endpoint_url(),
            "exp": claims["exp"] if claims.get("exp") != 0 else int(time.time()) + 240,
            "jti": claims["jti"] if claims.get("jti") != "set per example" else str(uuid.uuid4()),
        }
    used_before = UsedClientAssertion.objects.count()
    response = _token(_signed_as_is({"alg": "RS384", "kid": "k", **header}, claims))

    assert response.status_code < 500, response.content
    if response.status_code != 200:
        assert response.json()["error_description"].strip()
        assert UsedClientAssertion.objects.count() == used_before


@fuzz_requests
@given(data=st.data())
def test_any_subscription_is_kept_or_refused_under_500_leaving_nothing(
    subscriber: tuple[dict[str, str], int], data: st.DataObject
) -> None:
    bearer, consent_id = subscriber
    north = Payer.objects.get(slug="north")
    body = data.draw(mutated(_subscription(consent_id)))
    before = ConsentSubscription.objects.for_payer(north).count()

    response = Client().post(
        "/p/north/fhir/Subscription",
        json.dumps(body),
        content_type="application/fhir+json",
        **bearer,
    )

    assert response.status_code < 500, response.content
    after = ConsentSubscription.objects.for_payer(north).count()
    if response.status_code >= 400:
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["diagnostics"].strip()
        assert after == before
    else:
        assert after == before + 1

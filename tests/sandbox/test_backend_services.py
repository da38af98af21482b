"""SMART Backend Services: registration, signed assertions, refusals, and scopes at the API."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest

from tests.sandbox.harness import (
    NPI,
    BackendClient,
    RunningSandbox,
    current_consent,
    match_request,
    matched_patient,
    new_private_key,
)
from tests.support.net import free_loopback_port

PAYER_NPI = "1234567893"


@pytest.fixture(scope="module")
def client(former_payer: RunningSandbox) -> BackendClient:
    return BackendClient(former_payer, PAYER_NPI).register()


def refusal(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "invalid_client"
    return str(body["error_description"])


def test_rs384_assertion_gets_a_system_token(client: BackendClient) -> None:
    response = client.token_response("system/*.rs")

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "system/*.rs"
    assert 0 < body["expires_in"] <= 300
    assert response.headers["cache-control"] == "no-store"


def test_es384_assertion_gets_a_system_token(former_payer: RunningSandbox) -> None:
    es = BackendClient(former_payer, PAYER_NPI, algorithm="ES384").register()

    assert es.token_response("system/*.read").status_code == 200


def test_assertion_signed_by_an_unregistered_key_is_refused(client: BackendClient) -> None:
    other_key = new_private_key("RS384")

    assert "does not verify" in refusal(
        client.token_response(assertion=client.assertion(key=other_key))
    )


def test_expired_assertion_is_refused(client: BackendClient) -> None:
    stale = client.assertion(exp=int(time.time()) - 60)

    assert "expired" in refusal(client.token_response(assertion=stale))


def test_assertion_living_longer_than_five_minutes_is_refused(client: BackendClient) -> None:
    long_lived = client.assertion(exp=int(time.time()) + 600)

    assert "five minutes" in refusal(client.token_response(assertion=long_lived))


def test_replayed_assertion_is_refused(client: BackendClient) -> None:
    assertion = client.assertion()
    assert client.token_response(assertion=assertion).status_code == 200

    assert "already used" in refusal(client.token_response(assertion=assertion))


def test_assertion_for_another_audience_is_refused(client: BackendClient) -> None:
    wrong_aud = client.assertion(aud="http://127.0.0.1:1/auth/token")

    assert "aud" in refusal(client.token_response(assertion=wrong_aud))


def test_assertion_whose_sub_is_not_the_client_is_refused(client: BackendClient) -> None:
    assert "iss and sub" in refusal(
        client.token_response(assertion=client.assertion(sub="someone"))
    )


def test_assertion_without_kid_or_with_unknown_kid_is_refused(client: BackendClient) -> None:
    assert "no kid" in refusal(client.token_response(assertion=client.assertion(kid="")))
    assert "no registered key" in refusal(
        client.token_response(assertion=client.assertion(kid="nope"))
    )


def test_assertion_signed_with_a_shared_secret_is_refused(client: BackendClient) -> None:
    forged = jwt.encode(
        {
            "iss": client.client_id,
            "sub": client.client_id,
            "aud": client.sandbox.token_url,
            "exp": int(time.time()) + 60,
            "jti": "x",
        },
        "a-shared-secret-long-enough-for-hmac-sha256",
        algorithm="HS256",
        headers={"kid": client.kid},
    )

    assert "not allowed" in refusal(client.token_response(assertion=forged))


def test_scope_the_client_may_not_have_is_refused(former_payer: RunningSandbox) -> None:
    narrow = BackendClient(former_payer, PAYER_NPI, scope="system/Coverage.rs").register()

    refused = narrow.token_response("system/*.rs")
    granted = narrow.token_response("system/*.rs system/Coverage.rs")

    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_scope"
    assert granted.json()["scope"] == "system/Coverage.rs"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"organization_identifier": {"system": NPI}}, "organization_identifier"),
        ({"jwks": {"keys": []}}, "jwks"),
        ({"grant_types": ["password"]}, "grant_types"),
        ({"token_endpoint_auth_method": "client_secret_basic"}, "private_key_jwt"),
    ],
)
def test_registration_with_bad_metadata_is_refused(
    former_payer: RunningSandbox, change: dict[str, Any], problem: str
) -> None:
    body = BackendClient(former_payer, PAYER_NPI).registration()
    body.update(change)
    body = {k: v for k, v in body.items() if v is not None}

    response = httpx.post(f"{former_payer.base}/auth/register", json=body)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client_metadata"
    assert problem in response.json()["error_description"]


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, dict[str, Any]]]:
    """Serve a JWKS over HTTP, the way a payer publishes its keys at a jwks_uri."""
    published: dict[str, Any] = {"keys": []}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(published).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_loopback_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", published
    finally:
        server.shutdown()
        server.server_close()


def test_keys_are_fetched_from_the_jwks_uri(
    former_payer: RunningSandbox, jwks_server: tuple[str, dict[str, Any]]
) -> None:
    url, published = jwks_server
    remote = BackendClient(former_payer, PAYER_NPI)
    body = remote.registration(jwks_uri=url)
    del body["jwks"]
    response = httpx.post(f"{former_payer.base}/auth/register", json=body)
    assert response.status_code == 201
    remote.client_id = response.json()["client_id"]

    assert "no registered key" in refusal(remote.token_response())
    published["keys"] = [remote.public_jwk()]
    assert remote.token_response().status_code == 200


def test_fhir_api_refuses_missing_invalid_and_underscoped_tokens(
    former_payer: RunningSandbox, client: BackendClient
) -> None:
    member = former_payer.member_list()["members"][3]
    with client.http() as full:
        patient_id = matched_patient(full, member, current_consent(recipient_npi=PAYER_NPI))

    no_token = httpx.get(f"{former_payer.fhir}/Patient/{patient_id}")
    bad_token = httpx.get(
        f"{former_payer.fhir}/Patient/{patient_id}", headers={"Authorization": "Bearer nope"}
    )
    with client.http("system/Coverage.rs") as coverage_only:
        coverage = coverage_only.get("/Coverage", params={"patient": patient_id})
        patient = coverage_only.get(f"/Patient/{patient_id}")
        match = coverage_only.post(
            "/Patient/$member-match", json=match_request(member, consent=None)
        )

    assert no_token.status_code == 401
    assert "Bearer" in no_token.headers["www-authenticate"]
    assert bad_token.status_code == 401
    assert coverage.status_code == 200
    assert coverage.json()["total"] == 1
    assert patient.status_code == 403
    assert patient.json()["issue"][0]["code"] == "forbidden"
    assert match.status_code == 403


def test_one_clients_token_never_reaches_another_clients_member(
    former_payer: RunningSandbox, client: BackendClient
) -> None:
    member = former_payer.member_list()["members"][4]
    with client.http() as mine:
        patient_id = matched_patient(mine, member, current_consent(recipient_npi=PAYER_NPI))
        assert mine.get(f"/Patient/{patient_id}").status_code == 200
        condition_ids = [
            e["resource"]["id"]
            for e in mine.get("/Condition", params={"patient": patient_id}).json().get("entry", [])
        ]

    other = BackendClient(former_payer, "1555555557").register()
    with other.http() as theirs:
        reads = [theirs.get(f"/Patient/{patient_id}")] + [
            theirs.get(f"/Condition/{cid}") for cid in condition_ids[:3]
        ]
        search = theirs.get("/Condition", params={"patient": patient_id})
        everything = theirs.get(f"/Patient/{patient_id}/$everything")
        listing = theirs.get("/Patient")

    assert all(r.status_code == 404 for r in reads)
    assert search.status_code == 404
    assert everything.status_code == 404
    assert listing.json()["total"] == 0

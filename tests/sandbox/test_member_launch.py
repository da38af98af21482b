"""SMART standalone launch: a member signs in at the sandbox and shares their own record."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import jwt
import pytest

from tests.sandbox.harness import RunningSandbox, pkce_pair, query_of

APP_REDIRECT = "http://127.0.0.1:9/callback"
SCOPES = "launch/patient openid fhirUser offline_access patient/*.rs"


@pytest.fixture(scope="module")
def app(former_payer: RunningSandbox) -> str:
    """Register a public member-facing app (RFC 7591) and return its client_id."""
    response = httpx.post(
        f"{former_payer.base}/auth/register",
        json={
            "client_name": "member app",
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
            "redirect_uris": [APP_REDIRECT],
        },
    )
    assert response.status_code == 201, response.text
    return str(response.json()["client_id"])


def authorize_params(
    sandbox: RunningSandbox, client_id: str, challenge: str, state: str
) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": APP_REDIRECT,
        "scope": SCOPES,
        "state": state,
        "aud": sandbox.fhir,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }


def sign_in(
    sandbox: RunningSandbox, params: dict[str, str], username: str, password: str
) -> httpx.Response:
    page = httpx.get(f"{sandbox.base}/auth/authorize", params=params)
    assert page.status_code == 200
    assert 'name="password"' in page.text
    return httpx.post(
        f"{sandbox.base}/auth/authorize",
        data=params | {"username": username, "password": password, "action": "sign-in"},
    )


def launch(sandbox: RunningSandbox, client_id: str, member: dict[str, Any]) -> dict[str, Any]:
    verifier, challenge = pkce_pair()
    state = secrets.token_hex(8)
    redirect = sign_in(
        sandbox,
        authorize_params(sandbox, client_id, challenge, state),
        member["username"],
        member["password"],
    )
    assert redirect.status_code == 302
    query = query_of(redirect.headers["location"])
    assert query["state"] == state
    token = httpx.post(
        sandbox.token_url,
        data={
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": APP_REDIRECT,
            "client_id": client_id,
            "code_verifier": verifier,
        },
    )
    assert token.status_code == 200, token.text
    return dict(token.json())


def test_member_signs_in_and_reads_only_their_own_record(
    former_payer: RunningSandbox, app: str
) -> None:
    member = former_payer.member_list()["members"][10]
    tokens = launch(former_payer, app, member)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    someone_else = former_payer.member_list()["members"][11]["patient_id"]

    own = httpx.get(f"{former_payer.fhir}/Patient/{tokens['patient']}", headers=headers)
    own_claims = httpx.get(f"{former_payer.fhir}/ExplanationOfBenefit", headers=headers)
    other = httpx.get(f"{former_payer.fhir}/Patient/{someone_else}", headers=headers)
    other_search = httpx.get(
        f"{former_payer.fhir}/Condition", params={"patient": someone_else}, headers=headers
    )

    assert tokens["patient"] == member["patient_id"]
    assert set(tokens["scope"].split()) == set(SCOPES.split())
    assert own.status_code == 200
    assert own_claims.status_code == 200 and own_claims.json()["total"] > 0
    assert other.status_code == 404
    assert other_search.status_code == 404
    claims = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert claims["fhirUser"].endswith(f"/Patient/{member['patient_id']}")


def test_refresh_token_rotates_and_the_old_one_stops_working(
    former_payer: RunningSandbox, app: str
) -> None:
    tokens = launch(former_payer, app, former_payer.member_list()["members"][12])

    refreshed = httpx.post(
        former_payer.token_url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": app,
        },
    )
    replayed = httpx.post(
        former_payer.token_url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": app,
        },
    )

    assert refreshed.status_code == 200
    assert refreshed.json()["patient"] == tokens["patient"]
    assert refreshed.json()["refresh_token"] != tokens["refresh_token"]
    assert replayed.status_code == 400
    assert replayed.json()["error"] == "invalid_grant"


def test_wrong_password_and_wrong_verifier_are_refused(
    former_payer: RunningSandbox, app: str
) -> None:
    member = former_payer.member_list()["members"][13]
    verifier, challenge = pkce_pair()
    params = authorize_params(former_payer, app, challenge, "s1")

    wrong_password = sign_in(former_payer, params, member["username"], "guess")
    redirect = sign_in(former_payer, params, member["username"], member["password"])
    code = query_of(redirect.headers["location"])["code"]
    wrong_verifier = httpx.post(
        former_payer.token_url,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": APP_REDIRECT,
            "client_id": app,
            "code_verifier": pkce_pair()[0],
        },
    )
    reused = httpx.post(
        former_payer.token_url,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": APP_REDIRECT,
            "client_id": app,
            "code_verifier": verifier,
        },
    )

    assert wrong_password.status_code == 401
    assert "wrong password" in wrong_password.text
    assert wrong_verifier.status_code == 400
    assert wrong_verifier.json()["error"] == "invalid_grant"
    assert reused.status_code == 400  # a code is single-use, even after a failed attempt


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"aud": "http://127.0.0.1:1/fhir"}, "invalid_request"),
        ({"scope": "openid"}, "invalid_scope"),
        ({"response_type": "token"}, "unsupported_response_type"),
    ],
)
def test_bad_authorization_requests_are_sent_back_with_an_error(
    former_payer: RunningSandbox, app: str, change: dict[str, str | None], error: str
) -> None:
    params = authorize_params(former_payer, app, pkce_pair()[1], "s2") | change
    response = httpx.get(
        f"{former_payer.base}/auth/authorize",
        params={k: v for k, v in params.items() if v is not None},
    )

    assert response.status_code == 302
    assert query_of(response.headers["location"])["error"] == error


def test_unregistered_redirect_uri_is_never_redirected_to(
    former_payer: RunningSandbox, app: str
) -> None:
    params = authorize_params(former_payer, app, pkce_pair()[1], "s3") | {
        "redirect_uri": "http://127.0.0.1:9/elsewhere"
    }

    response = httpx.get(f"{former_payer.base}/auth/authorize", params=params)

    assert response.status_code == 400
    assert "location" not in response.headers

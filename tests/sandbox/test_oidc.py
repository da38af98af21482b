"""The sandbox as an OpenID Connect provider for the hub: discovery, sign-in, id_token, userinfo."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from tests.sandbox.harness import RunningSandbox, pkce_pair, query_of, running_sandbox

HUB_CALLBACK = "http://127.0.0.1:8000/oidc/callback/"
CLIENT_ID, CLIENT_SECRET = "hub", "hub-demo-secret"


@pytest.fixture(scope="module")
def idp() -> Iterator[RunningSandbox]:
    with running_sandbox(
        "Identity Plan", "--members", "8", "--redirect-uri", HUB_CALLBACK
    ) as sandbox:
        yield sandbox


def discovery(idp: RunningSandbox) -> dict[str, Any]:
    return dict(httpx.get(f"{idp.base}/oidc/.well-known/openid-configuration").json())


def sign_in_code(idp: RunningSandbox, username: str, nonce: str) -> tuple[str, str]:
    verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": HUB_CALLBACK,
        "scope": "openid profile",
        "state": "st",
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    authorize = discovery(idp)["authorization_endpoint"]
    assert httpx.get(authorize, params=params).status_code == 200
    redirect = httpx.post(
        authorize, data=params | {"username": username, "password": "sandbox-demo"}
    )
    assert redirect.status_code == 302, redirect.text
    return query_of(redirect.headers["location"])["code"], verifier


def exchange(idp: RunningSandbox, code: str, verifier: str) -> httpx.Response:
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    return httpx.post(
        discovery(idp)["token_endpoint"],
        headers={"Authorization": f"Basic {basic}"},
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": HUB_CALLBACK,
            "code_verifier": verifier,
        },
    )


def verified_id_token(idp: RunningSandbox, token: str) -> dict[str, Any]:
    config = discovery(idp)
    keys = jwt.PyJWKSet.from_dict(httpx.get(config["jwks_uri"]).json())
    key = keys[jwt.get_unverified_header(token)["kid"]]
    return dict(
        jwt.decode(
            token, key.key, algorithms=["RS256"], audience=CLIENT_ID, issuer=config["issuer"]
        )
    )


def test_discovery_is_served_at_the_issuer_and_the_root(idp: RunningSandbox) -> None:
    config = discovery(idp)
    root = httpx.get(f"{idp.base}/.well-known/openid-configuration").json()

    assert config == root
    assert config["issuer"] == f"{idp.base}/oidc"
    assert config["id_token_signing_alg_values_supported"] == ["RS256"]
    assert "S256" in config["code_challenge_methods_supported"]


def test_member_signs_in_and_the_id_token_carries_the_claims_the_hub_maps(
    idp: RunningSandbox,
) -> None:
    member = idp.member_list()["members"][4]
    nonce = secrets.token_hex(8)
    code, verifier = sign_in_code(idp, member["username"], nonce)

    tokens = exchange(idp, code, verifier).json()
    claims = verified_id_token(idp, tokens["id_token"])
    userinfo = httpx.get(
        discovery(idp)["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    ).json()

    assert claims["nonce"] == nonce
    assert claims["sub"] == member["patient_id"]
    assert claims["member_id"] == member["member_id"]
    assert (claims["given_name"], claims["family_name"]) == (member["given"][0], member["family"])
    assert (claims["birthdate"], claims["gender"]) == (member["birth_date"], member["gender"])
    assert claims["hub_role"] == "member"
    assert userinfo["member_id"] == member["member_id"]
    fhir = httpx.get(
        f"{idp.fhir}/Patient/{member['patient_id']}",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert fhir.status_code == 403  # a sign-in token is not a FHIR token


def test_plan_administrator_gets_the_plan_admin_role(idp: RunningSandbox) -> None:
    code, verifier = sign_in_code(idp, "admin", "n")

    claims = verified_id_token(idp, exchange(idp, code, verifier).json()["id_token"])

    assert claims["hub_role"] == "plan_admin"
    assert "member_id" not in claims


def test_wrong_client_secret_is_refused(idp: RunningSandbox) -> None:
    code, verifier = sign_in_code(idp, idp.member_list()["members"][5]["username"], "n")
    basic = base64.b64encode(f"{CLIENT_ID}:wrong".encode()).decode()

    response = httpx.post(
        discovery(idp)["token_endpoint"],
        headers={"Authorization": f"Basic {basic}"},
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": HUB_CALLBACK,
            "code_verifier": verifier,
        },
    )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_clients_can_register_redirect_uris_dynamically(idp: RunningSandbox) -> None:
    response = httpx.post(
        discovery(idp)["registration_endpoint"],
        json={
            "client_name": "another hub",
            "redirect_uris": ["http://127.0.0.1:8001/cb"],
            "grant_types": ["authorization_code"],
            "token_endpoint_auth_method": "client_secret_basic",
        },
    )

    assert response.status_code == 201
    assert response.json()["client_secret"]
    assert response.json()["redirect_uris"] == ["http://127.0.0.1:8001/cb"]


def test_idp_down_fault_makes_every_idp_endpoint_503() -> None:
    with running_sandbox("Down Plan", "--members", "3", "--faults", "idp-down") as down:
        answers = [
            httpx.get(f"{down.base}/oidc/.well-known/openid-configuration"),
            httpx.get(f"{down.base}/oidc/authorize"),
            httpx.post(f"{down.base}/oidc/token"),
            httpx.get(f"{down.base}/oidc/jwks"),
        ]
        fhir_metadata = httpx.get(f"{down.fhir}/metadata")

    assert [a.status_code for a in answers] == [503, 503, 503, 503]
    assert fhir_metadata.status_code == 200

"""SMART Backend Services at a running sandbox payer: registration, assertions, tokens."""

import json
from typing import Any

import httpx
import jwt
import pytest
from django.db import connection

from exchange.fhir.errors import FhirPermanentError
from exchange.models import HolderRegistration, RegistrationMethod
from exchange.smart.backend_services import backend_access_token
from exchange.smart.registration import hub_jwks_url
from hub.models import AuditEvent, SigningAlgorithm, SigningKey, SigningKeyStatus
from hub.signing_keys import (
    client_assertion_sign,
    signing_key_create,
    signing_key_rotate,
    signing_keys_ensure,
)
from tests.conftest import Tenant
from tests.exchange.holder_proxy import holder_proxy, on_path
from tests.exchange.holders import endpoint_of, former_payer_of, hub_url
from tests.sandbox.harness import NPI, RunningSandbox


@pytest.fixture
def hub(live_server: Any, settings: Any) -> str:
    """The hub serving the JWKS the sandbox fetches (jwks_uri registration)."""
    settings.HUB_PUBLIC_URL = hub_url(live_server)
    return str(settings.HUB_PUBLIC_URL)


def fhir_get(sandbox: RunningSandbox, path: str, token: str) -> httpx.Response:
    return httpx.get(f"{sandbox.fhir}/{path}", headers={"Authorization": f"Bearer {token}"})


def test_the_hub_registers_the_new_payer_and_gets_a_token_it_reuses(
    hub: str, holder: RunningSandbox, north: Tenant
) -> None:
    signing_keys_ensure(payer=north.payer)
    former = former_payer_of(holder)

    token = backend_access_token(payer=north.payer, former_payer=former)

    registration = HolderRegistration.objects.for_payer(north.payer).get(former_payer=former)
    assert registration.method == RegistrationMethod.DYNAMIC
    assert registration.backend_client_id.startswith("client-")
    # The holder accepts the token for system-level reads.
    assert fhir_get(holder, "Consent", token).status_code == 200
    # Cached until shortly before it ends; a forced refresh gets a new one.
    assert backend_access_token(payer=north.payer, former_payer=former) == token
    renewed = backend_access_token(payer=north.payer, former_payer=former, force_refresh=True)
    assert renewed != token
    assert fhir_get(holder, "Consent", renewed).status_code == 200
    # Stored encrypted: the raw column never holds the token.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT backend_access_token FROM exchange_holderregistration WHERE id = %s",
            [registration.pk],
        )
        (raw,) = cursor.fetchone()
    assert renewed not in raw
    assert AuditEvent.objects.filter(
        payer=north.payer, action="holder_registration.create"
    ).exists()


def test_registration_names_the_new_payer_by_npi_and_its_hub_jwks_url(
    hub: str, holder: RunningSandbox, north: Tenant
) -> None:
    signing_keys_ensure(payer=north.payer)
    with holder_proxy(holder) as proxy:
        # Route registration through the proxy too, to see what the hub sends.
        register_url = f"{holder.base}/auth/register".encode()
        proxy.rewrites.append(
            on_path(
                "smart-configuration",
                lambda body: body.replace(register_url, f"{proxy.base}/auth/register".encode()),
            )
        )
        former = former_payer_of(holder, base_url=proxy.fhir)
        backend_access_token(payer=north.payer, former_payer=former)

    (sent,) = [
        json.loads(body) for method, path, body in proxy.received if path == "/auth/register"
    ]
    assert sent["grant_types"] == ["client_credentials"]
    assert sent["token_endpoint_auth_method"] == "private_key_jwt"
    assert sent["organization_identifier"] == {"system": NPI, "value": north.payer.npi}
    assert sent["jwks_uri"] == f"{hub}/p/north/.well-known/jwks.json"
    assert "jwks" not in sent
    # The hub serves that JWKS: every active key of the payer, public halves only.
    published = httpx.get(sent["jwks_uri"]).json()
    assert {k["kid"] for k in published["keys"]} == set(
        SigningKey.objects.for_payer(north.payer).values_list("kid", flat=True)
    )
    assert not any("d" in key for key in published["keys"])


def test_client_assertion_follows_smart_backend_services(north: Tenant) -> None:
    rs384, _ = signing_keys_ensure(payer=north.payer)
    token_url = "https://former.example/auth/token"
    first = client_assertion_sign(payer=north.payer, client_id="client-1", audience=token_url)
    second = client_assertion_sign(payer=north.payer, client_id="client-1", audience=token_url)

    header = jwt.get_unverified_header(first)
    assert header["alg"] == "RS384"
    assert header["kid"] == rs384.kid
    claims = jwt.decode(
        first,
        jwt.PyJWK(rs384.public_jwk).key,
        algorithms=["RS384"],
        audience=token_url,
    )
    assert claims["iss"] == claims["sub"] == "client-1"
    assert claims["exp"] - claims["iat"] <= 300
    assert claims["jti"] != jwt.decode(second, options={"verify_signature": False})["jti"]


def test_an_es384_key_works_and_a_rotated_key_needs_no_new_registration(
    hub: str, holder: RunningSandbox, north: Tenant
) -> None:
    signing_key_create(payer=north.payer, algorithm=SigningAlgorithm.ES384)
    former = former_payer_of(holder)
    token = backend_access_token(payer=north.payer, former_payer=former)
    assert fhir_get(holder, "Consent", token).status_code == 200
    client_id = HolderRegistration.objects.get(payer=north.payer).backend_client_id

    signing_key_rotate(payer=north.payer, algorithm=SigningAlgorithm.ES384, actor=north.admin)
    assert (
        SigningKey.objects.filter(payer=north.payer, status=SigningKeyStatus.PREVIOUS).count() == 1
    )

    rotated = backend_access_token(payer=north.payer, former_payer=former, force_refresh=True)
    assert fhir_get(holder, "Consent", rotated).status_code == 200
    # jwks_uri: the holder fetched the new key from the hub; the client stayed the same.
    assert HolderRegistration.objects.get(payer=north.payer).backend_client_id == client_id


def test_a_holder_that_forgot_the_client_gets_a_new_registration(
    hub: str, holder: RunningSandbox, north: Tenant
) -> None:
    signing_keys_ensure(payer=north.payer)
    former = former_payer_of(holder)
    backend_access_token(payer=north.payer, former_payer=former)
    HolderRegistration.objects.filter(payer=north.payer).update(backend_client_id="client-gone")

    token = backend_access_token(payer=north.payer, former_payer=former, force_refresh=True)

    assert fhir_get(holder, "Consent", token).status_code == 200
    assert HolderRegistration.objects.get(payer=north.payer).backend_client_id != "client-gone"


def without_registration_endpoint(body: bytes) -> bytes:
    return body.replace(b'"registration_endpoint"', b'"x_no_registration"')


def test_a_holder_without_registration_uses_the_configured_client_id(
    hub: str, holder: RunningSandbox, north: Tenant
) -> None:
    signing_keys_ensure(payer=north.payer)
    # Registered out of band, the way such a holder's administrators would.
    answer = httpx.post(
        f"{holder.base}/auth/register",
        json={
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks_uri": hub_jwks_url(payer=north.payer),
            "organization_identifier": {"system": NPI, "value": north.payer.npi},
        },
    )
    with holder_proxy(holder) as proxy:
        proxy.rewrites.append(on_path("smart-configuration", without_registration_endpoint))
        former = former_payer_of(holder, base_url=proxy.fhir)
        endpoint = endpoint_of(former)

        with pytest.raises(FhirPermanentError) as refused:
            backend_access_token(payer=north.payer, former_payer=former)
        assert refused.value.code == "no_client"
        assert "no payer-to-payer client id is set" in refused.value.message

        endpoint.backend_client_id = answer.json()["client_id"]
        endpoint.save()
        token = backend_access_token(payer=north.payer, former_payer=former)

    assert fhir_get(holder, "Consent", token).status_code == 200
    registration = HolderRegistration.objects.get(payer=north.payer)
    assert registration.method == RegistrationMethod.CONFIGURED
    assert registration.backend_client_id == endpoint.backend_client_id


def test_a_payer_without_signing_key_gets_one_on_first_use(
    hub: str, holder: RunningSandbox, north: Tenant
) -> None:
    former = former_payer_of(holder)
    assert not SigningKey.objects.for_payer(north.payer).exists()
    token = backend_access_token(payer=north.payer, former_payer=former)
    assert fhir_get(holder, "Consent", token).status_code == 200
    assert (
        SigningKey.objects.for_payer(north.payer).filter(status=SigningKeyStatus.ACTIVE).count()
        == 2
    )

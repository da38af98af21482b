"""The hub's registration at a former payer: manual client ids honoured over RFC 7591.

Against a real sandbox whose advertised registration endpoint refuses RFC 7591 (the
``registration-refused`` fault, as the SMART reference bulk-data-server does): automatic
registration fails and says why; the client id the holder issued out of band (for the
hub's JWKS URL of the new payer) then carries a real ``$member-match``.
"""

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from django.core.exceptions import ValidationError

from exchange.fhir.errors import FhirPermanentError
from exchange.member_match import member_match_run
from exchange.models import (
    AuthorizationMode,
    ExchangeStatus,
    HolderRegistration,
    RegistrationChoice,
    RegistrationMethod,
)
from exchange.smart import backend_services
from exchange.smart.backend_services import backend_access_token
from exchange.smart.member_launch import member_launch_begin, member_launch_complete
from exchange.smart.registration import hub_jwks_url
from exchange.smart.registration_settings import (
    holder_registration_configure,
    holder_registration_register_again,
)
from hub.models import AuditEvent
from hub.signing_keys import client_assertion_sign
from tests.conftest import Tenant
from tests.exchange.holder_proxy import holder_proxy, on_path
from tests.exchange.holders import former_payer_of, member_request, ordinary_member
from tests.sandbox.harness import FORMER, NEW, NPI, SEED, RunningSandbox, running_sandbox
from tests.support.sandbox_sign_in import sandbox_sign_in


@pytest.fixture(scope="module")
def refusing_holder() -> Iterator[RunningSandbox]:
    """A former payer that advertises a registration endpoint but refuses RFC 7591."""
    with running_sandbox(
        FORMER, "--seed", SEED, "--members", "10", "--peer", NEW,
        "--faults", "registration-refused",
    ) as sandbox:  # fmt: skip
        yield sandbox


def out_of_band_client(sandbox: RunningSandbox, tenant: Tenant, client_id: str = "") -> str:
    """Register the new payer's JWKS URL at the holder its own way; return the issued id."""
    body = {
        "client_name": tenant.payer.name,
        "grant_types": ["client_credentials"],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks_uri": hub_jwks_url(payer=tenant.payer),
        "organization_identifier": {"system": NPI, "value": tenant.payer.npi},
    }
    if client_id:
        body["client_id"] = client_id
    response = httpx.post(f"{sandbox.base}/sandbox/clients", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["client_id"])


def test_a_manual_client_id_is_honoured_where_rfc_7591_is_refused(
    hub: Tenant, refusing_holder: RunningSandbox
) -> None:
    former = former_payer_of(refusing_holder)
    member = ordinary_member(refusing_holder)

    # Automatic: the holder refuses the hub's RFC 7591 request; the reason is kept.
    with pytest.raises(FhirPermanentError, match="refused the hub's client registration"):
        backend_access_token(payer=hub.payer, former_payer=former)
    failed = HolderRegistration.objects.for_payer(hub.payer).get(former_payer=former)
    assert "dynamic registration (RFC 7591)" in failed.last_error
    assert failed.last_error_at is not None
    assert not failed.backend_client_id

    client_id = out_of_band_client(refusing_holder, hub)
    holder_registration_configure(
        payer=hub.payer,
        former_payer=former,
        choice=RegistrationChoice.MANUAL,
        backend_client_id=client_id,
        actor=hub.admin,
    )
    outcome = member_match_run(
        exchange_request=member_request(tenant=hub, former_payer=former, member=member)
    )

    assert outcome.status == ExchangeStatus.MATCHED
    assert outcome.patient_id == member["patient_id"]
    registration = HolderRegistration.objects.for_payer(hub.payer).get(former_payer=former)
    assert registration.method == RegistrationMethod.MANUAL
    assert registration.backend_client_id == client_id
    assert registration.last_error == ""
    assert AuditEvent.objects.filter(
        payer=hub.payer, action="holder_registration.manual", actor=hub.admin
    ).exists()


def test_a_manual_client_id_wins_over_an_advertised_registration_endpoint(
    hub: Tenant, holder: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The holder would register the hub by RFC 7591; the administrator's id is used instead,
    whole: 1,000 characters in the assertion's ``iss`` and ``sub`` the holder accepts."""
    signed: list[str] = []

    def sign_and_keep(**kwargs: Any) -> str:
        signed.append(client_assertion_sign(**kwargs))
        return signed[-1]

    monkeypatch.setattr(backend_services, "client_assertion_sign", sign_and_keep)
    long_id = "manual-" + "k" * 993
    out_of_band_client(holder, hub, client_id=long_id)
    with holder_proxy(holder) as proxy:
        # Route registration through the proxy, to see that the hub never calls it.
        register_url = f"{holder.base}/auth/register".encode()
        proxy.rewrites.append(
            on_path(
                "smart-configuration",
                lambda body: body.replace(register_url, f"{proxy.base}/auth/register".encode()),
            )
        )
        former = former_payer_of(holder, base_url=proxy.fhir)
        holder_registration_configure(
            payer=hub.payer,
            former_payer=former,
            choice=RegistrationChoice.MANUAL,
            backend_client_id=long_id,
            actor=hub.admin,
        )
        token = backend_access_token(payer=hub.payer, former_payer=former)

    assert httpx.get(
        f"{holder.fhir}/Consent", headers={"Authorization": f"Bearer {token}"}
    ).is_success
    assert any("smart-configuration" in path for _, path, _ in proxy.received)
    assert not any("register" in path for _, path, _ in proxy.received)
    (assertion,) = signed
    claims = jwt.decode(assertion, options={"verify_signature": False})
    assert claims["iss"] == claims["sub"] == long_id
    assert len(claims["iss"]) == 1000


def test_a_manual_id_the_holder_does_not_know_is_recorded_as_the_last_error(
    hub: Tenant, refusing_holder: RunningSandbox
) -> None:
    former = former_payer_of(refusing_holder)
    holder_registration_configure(
        payer=hub.payer,
        former_payer=former,
        choice=RegistrationChoice.MANUAL,
        backend_client_id="never-issued",
        actor=hub.admin,
    )

    registration = holder_registration_register_again(
        payer=hub.payer, former_payer=former, actor=hub.admin
    )

    assert "invalid_client" in registration.last_error
    assert AuditEvent.objects.filter(
        payer=hub.payer, action="holder_registration.register_again"
    ).exists()


def test_register_again_replaces_a_dynamic_registration(
    hub: Tenant, holder: RunningSandbox
) -> None:
    former = former_payer_of(holder)
    backend_access_token(payer=hub.payer, former_payer=former)
    first = HolderRegistration.objects.for_payer(hub.payer).get(former_payer=former)
    assert first.method == RegistrationMethod.DYNAMIC

    again = holder_registration_register_again(
        payer=hub.payer, former_payer=former, actor=hub.admin
    )

    assert again.method == RegistrationMethod.DYNAMIC
    assert again.backend_client_id and again.backend_client_id != first.backend_client_id
    assert again.last_error == ""
    assert again.backend_access_token and again.backend_access_token != first.backend_access_token
    event = AuditEvent.objects.get(payer=hub.payer, action="holder_registration.register_again")
    assert event.actor == hub.admin
    assert event.changes["backend_client_id"] == first.backend_client_id


@pytest.mark.parametrize(
    ("client_id", "problem"),
    [
        (" padded", "starts or ends with a space"),
        ("padded\n", "starts or ends with a space"),
        ("tab\there", "control character"),
        ("caf\u00e9", "printable ASCII"),
    ],
)
def test_a_client_id_with_whitespace_or_control_characters_is_refused(
    north: Tenant, south: Tenant, client_id: str, problem: str
) -> None:
    with pytest.raises(ValidationError, match=problem):
        holder_registration_configure(
            payer=north.payer,
            former_payer=south.payer,
            choice=RegistrationChoice.MANUAL,
            backend_client_id=client_id,
            actor=north.admin,
        )

    assert not HolderRegistration.objects.for_payer(north.payer).exists()
    assert (
        not AuditEvent.objects.for_payer(north.payer)
        .filter(action__startswith="holder_registration")
        .exists()
    )


CALLBACK = "http://127.0.0.1:8000/p/north/me/launch/callback/"


def test_a_manual_member_client_carries_a_member_sign_in_where_rfc_7591_is_refused(
    north: Tenant, refusing_holder: RunningSandbox
) -> None:
    former = former_payer_of(refusing_holder)
    member = ordinary_member(refusing_holder, 2)
    request = member_request(
        tenant=north,
        former_payer=former,
        member=member,
        mode=AuthorizationMode.MEMBER_AUTHORIZED,
    )
    holder_registration_configure(
        payer=north.payer,
        former_payer=former,
        choice=RegistrationChoice.MANUAL,
        backend_client_id="only-a-backend-client",
        actor=north.admin,
    )
    # Manual, without a member client id: the administrator is told what to enter.
    with pytest.raises(FhirPermanentError, match="no member sign-in client id is entered"):
        member_launch_begin(exchange_request=request, redirect_uri=CALLBACK)

    issued = httpx.post(
        f"{refusing_holder.base}/sandbox/clients",
        json={
            "client_name": north.payer.name,
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
            "redirect_uris": [CALLBACK],
        },
    ).json()["client_id"]
    holder_registration_configure(
        payer=north.payer,
        former_payer=former,
        choice=RegistrationChoice.MANUAL,
        backend_client_id="only-a-backend-client",
        member_client_id=issued,
        actor=north.admin,
    )
    authorize_url = member_launch_begin(exchange_request=request, redirect_uri=CALLBACK)
    callback = parse_qs(urlsplit(sandbox_sign_in(authorize_url, member["username"])).query)
    completed = member_launch_complete(
        payer=north.payer,
        member=north.member,
        state=callback["state"][0],
        code=callback["code"][0],
        redirect_uri=CALLBACK,
    )

    assert completed.pk == request.pk
    assert parse_qs(urlsplit(authorize_url).query)["client_id"] == [issued]

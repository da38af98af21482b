"""Integration settings, *Former payers we ask*: the hub's registration at each former payer.

Nora (North's administrator) chooses manual registration at a former payer whose
registration endpoint refuses RFC 7591 (a real sandbox with ``registration-refused``),
pastes the 1,000-character client id it issued, and the hub's token request carries it
whole; a padded or broken id is refused with a sentence and nothing saved; the page shows
the state and last error, and *Register again* re-registers. Sam (South's) gets 404.
"""

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest
from django.test import Client

from exchange.models import HolderRegistration, RegistrationChoice, RegistrationMethod
from exchange.smart import backend_services
from exchange.smart.backend_services import backend_access_token
from exchange.smart.registration import hub_jwks_url
from hub.models import AuditEvent, Payer, User
from hub.signing_keys import client_assertion_sign, signing_keys_ensure
from tests.conftest import Tenant
from tests.exchange.holders import former_payer_of, hub_url
from tests.factories import FhirEndpointFactory
from tests.plan_admin.conftest import admin_url
from tests.sandbox.harness import FORMER, NEW, NPI, SEED, RunningSandbox, running_sandbox


@pytest.fixture(scope="module")
def refusing_holder() -> Iterator[RunningSandbox]:
    """A former payer that advertises a registration endpoint but refuses RFC 7591."""
    with running_sandbox(
        FORMER, "--seed", SEED, "--members", "10", "--peer", NEW,
        "--faults", "registration-refused",
    ) as sandbox:  # fmt: skip
        yield sandbox


@pytest.fixture
def hub(live_server: Any, settings: Any, north: Tenant) -> Tenant:
    """North, with its JWKS served over HTTP where the holder fetches it."""
    settings.HUB_PUBLIC_URL = hub_url(live_server)
    signing_keys_ensure(payer=north.payer)
    return north


@pytest.fixture
def south_endpoint(south: Tenant) -> Payer:
    """South as a former payer North's members can ask (it has a FHIR endpoint)."""
    FhirEndpointFactory(payer=south.payer, base_url="https://fhir.south.example/r4")
    return south.payer


def page_url(former: Payer, name: str = "former-payer") -> str:
    return admin_url(name, former_payer_slug=former.slug)


def test_the_list_shows_each_former_payer_with_its_registration_and_last_error(
    north: Tenant, south_endpoint: Payer, signed_in: Callable[[User], Client]
) -> None:
    HolderRegistration.objects.create(
        payer=north.payer,
        former_payer=south_endpoint,
        last_error="Southern Cross Health refused the hub's client registration.",
    )

    page = signed_in(north.admin).get(admin_url("former-payers"))

    assert page.status_code == 200
    text = page.content.decode()
    assert "Southern Cross Health" in text
    assert "refused the hub&#x27;s client registration" in text
    settings_page = signed_in(north.admin).get(admin_url("settings")).content.decode()
    assert admin_url("former-payers") in settings_page


def test_another_payers_administrator_gets_404(
    north: Tenant, south: Tenant, south_endpoint: Payer, signed_in: Callable[[User], Client]
) -> None:
    sam = signed_in(south.admin)
    nora = signed_in(north.admin)

    assert sam.get(admin_url("former-payers")).status_code == 404
    assert sam.get(page_url(south_endpoint)).status_code == 404
    assert sam.post(page_url(south_endpoint), {"choice": "automatic"}).status_code == 404
    again = page_url(south_endpoint, "former-payer-register-again")
    assert sam.post(again).status_code == 404
    # A payer that is not a former payer to ask (North itself, or unknown) is 404 too.
    assert nora.get(admin_url("former-payer", former_payer_slug="north")).status_code == 404
    assert nora.get(admin_url("former-payer", former_payer_slug="nowhere")).status_code == 404
    assert not HolderRegistration.objects.for_payer(north.payer).exists()


@pytest.mark.parametrize(
    ("client_id", "sentence"),
    [
        (" hub-north", "starts or ends with a space or line break"),
        ("hub-north\r\n", "starts or ends with a space or line break"),
        ("hub\tnorth", "control character (such as a tab or line break) at position 4"),
        ("x" * 2049, "at most 2048 characters"),
    ],
)
def test_a_broken_client_id_is_refused_with_a_sentence_and_nothing_saved(
    north: Tenant,
    south_endpoint: Payer,
    signed_in: Callable[[User], Client],
    client_id: str,
    sentence: str,
) -> None:
    response = signed_in(north.admin).post(
        page_url(south_endpoint), {"choice": "manual", "backend_client_id": client_id}
    )

    assert response.status_code == 400
    assert sentence in response.content.decode()
    assert not HolderRegistration.objects.for_payer(north.payer).exists()
    assert (
        not AuditEvent.objects.for_payer(north.payer)
        .filter(action__startswith="holder_registration")
        .exists()
    )


def test_manual_without_any_client_id_is_refused(
    north: Tenant, south_endpoint: Payer, signed_in: Callable[[User], Client]
) -> None:
    response = signed_in(north.admin).post(page_url(south_endpoint), {"choice": "manual"})

    assert response.status_code == 400
    assert "Manual registration needs the client id the former payer issued" in (
        response.content.decode()
    )
    assert not HolderRegistration.objects.for_payer(north.payer).exists()


def test_a_1000_character_client_id_goes_from_the_form_to_the_token_request_whole(
    hub: Tenant,
    refusing_holder: RunningSandbox,
    signed_in: Callable[[User], Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    signed: list[str] = []

    def sign_and_keep(**kwargs: Any) -> str:
        signed.append(client_assertion_sign(**kwargs))
        return signed[-1]

    monkeypatch.setattr(backend_services, "client_assertion_sign", sign_and_keep)
    former = former_payer_of(refusing_holder)
    nora = signed_in(hub.admin)
    page = nora.get(page_url(former)).content.decode()
    # What Nora registers at the former payer out of band: the hub's JWKS URL of North.
    assert hub_jwks_url(payer=hub.payer) in page
    long_id = "oob." + "Z" * 996
    issued = httpx.post(
        f"{refusing_holder.base}/sandbox/clients",
        json={
            "client_id": long_id,
            "grant_types": ["client_credentials"],
            "jwks_uri": hub_jwks_url(payer=hub.payer),
            "organization_identifier": {"system": NPI, "value": hub.payer.npi},
        },
    )
    assert issued.status_code == 201, issued.text

    saved = nora.post(page_url(former), {"choice": "manual", "backend_client_id": long_id})

    assert saved.status_code == 302
    registration = HolderRegistration.objects.for_payer(hub.payer).get(former_payer=former)
    assert registration.choice == RegistrationChoice.MANUAL
    assert registration.backend_client_id == long_id
    assert backend_access_token(payer=hub.payer, former_payer=former)
    claims = jwt.decode(signed[-1], options={"verify_signature": False})
    assert claims["iss"] == claims["sub"] == long_id
    shown = nora.get(page_url(former)).content.decode()
    assert long_id in shown
    assert "Client ids entered by your administrator" in shown
    event = AuditEvent.objects.get(payer=hub.payer, action="holder_registration.manual")
    assert event.actor == hub.admin
    assert event.changes["backend_client_id"] == long_id


def test_register_again_shows_the_holders_refusal_then_registers_a_manual_id(
    hub: Tenant, refusing_holder: RunningSandbox, signed_in: Callable[[User], Client]
) -> None:
    former = former_payer_of(refusing_holder)
    nora = signed_in(hub.admin)

    refused = nora.post(page_url(former, "former-payer-register-again"), follow=True)

    assert refused.status_code == 200
    text = refused.content.decode()
    assert "Registering again at Former Health Plan failed" in text
    assert "does not take dynamic registration (RFC 7591)" in text
    registration = HolderRegistration.objects.for_payer(hub.payer).get(former_payer=former)
    assert registration.last_error and registration.last_error_at
    assert AuditEvent.objects.filter(
        payer=hub.payer, action="holder_registration.register_again", actor=hub.admin
    ).exists()

    client_id = httpx.post(
        f"{refusing_holder.base}/sandbox/clients",
        json={
            "grant_types": ["client_credentials"],
            "jwks_uri": hub_jwks_url(payer=hub.payer),
        },
    ).json()["client_id"]
    nora.post(page_url(former), {"choice": "manual", "backend_client_id": client_id})
    again = nora.post(page_url(former, "former-payer-register-again"), follow=True)

    assert "Registered again at Former Health Plan." in again.content.decode()
    registration.refresh_from_db()
    assert registration.method == RegistrationMethod.MANUAL
    assert registration.last_error == ""
    assert registration.backend_access_token


def test_register_again_through_htmx_reloads_the_page(
    north: Tenant, south_endpoint: Payer, signed_in: Callable[[User], Client]
) -> None:
    response = signed_in(north.admin).post(
        page_url(south_endpoint, "former-payer-register-again"), headers={"HX-Request": "true"}
    )

    assert response.status_code == 200
    assert response["HX-Redirect"] == page_url(south_endpoint)

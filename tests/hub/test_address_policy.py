"""One address policy for every outbound path (hub/address_policy.py): public unicast passes;
every other class, IPv6 forms embedding an IPv4 address included, is refused with a sentence
naming it, at save time for a literal in a stored URL or host, and before any connection
where the hub calls out (FHIR base, identity provider, client JWKS, SFTP, redirects)."""

import ipaddress
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core.cache import caches
from django.core.exceptions import ValidationError
from django.test import Client

from exchange.delivery.protocol import DeliveryFailed
from exchange.delivery.sftp import sftp_host_key_fetch
from hub.address_policy import address_refusal
from hub.models import FhirEndpoint, SftpDestination
from hub.outbound import DestinationForbidden, PayerHttpClient, vet_destination
from hub.validators import validate_payer_url, validate_public_host
from tests.conftest import Tenant
from tests.factories import IdentityProviderFactory, SftpDestinationFactory
from tests.support.sessions import signed_in

PUBLIC = [
    "8.8.8.8",
    "93.184.216.34",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",  # IPv4-mapped: decided by the IPv4 address it carries
    "64:ff9b::808:808",  # NAT64 (RFC 6052) of a public address: DNS64 networks need it
]

REFUSED = [
    ("10.0.0.1", "10.0.0.1 is a private or reserved network address"),
    ("127.0.0.2", "private or reserved"),
    ("169.254.169.254", "private or reserved"),
    ("100.64.0.1", "private or reserved"),
    ("224.0.0.251", "multicast"),
    ("::1", "::1 is a private or reserved"),
    ("fe80::1", "private or reserved"),
    ("fc00::1", "private or reserved"),
    ("2001:db8::1", "private or reserved"),
    ("::ffff:10.0.0.1", "IPv4-mapped address standing for 10.0.0.1"),
    ("64:ff9b::a00:1", "NAT64 address (RFC 6052) standing for 10.0.0.1"),
    ("64:ff9b::7f00:1", "standing for 127.0.0.1"),
    ("64:ff9b:1::808:808", "local-use NAT64 address (RFC 8215)"),
    ("::ffff:0:a00:1", "IPv4-translated SIIT address"),
    ("::ffff:0:808:808", "IPv4-translated SIIT address"),
    ("2002:a00:1::1", "6to4 address"),
    ("2002:808:808::1", "6to4 address"),
    ("2001::1", "Teredo address"),
    ("::a00:1", "IPv4-compatible address"),
    ("fec0::1", "site-local address"),
    ("ff02::1", "multicast address"),
    ("ff0e::1", "multicast address"),
    ("3fff::1", "documentation address"),
    ("5f00::1", "private or reserved"),
]


@pytest.mark.parametrize("literal", PUBLIC)
def test_public_unicast_passes(literal: str) -> None:
    assert address_refusal(ipaddress.ip_address(literal)) == ""


@pytest.mark.parametrize(("literal", "sentence"), REFUSED)
def test_each_denied_class_is_refused_with_its_sentence(literal: str, sentence: str) -> None:
    address = ipaddress.ip_address(literal)
    assert sentence in address_refusal(address)
    with pytest.raises(DestinationForbidden, match="the hub does not call it"):
        vet_destination(literal, 443)
    with pytest.raises(ValidationError) as refused:
        validate_payer_url(f"https://[{literal}]/r4" if ":" in literal else f"https://{literal}/r4")
    assert sentence in " ".join(refused.value.messages)


@pytest.mark.parametrize("host", ["localhost", "api.localhost", "LOCALHOST."])
def test_names_that_always_mean_this_machine_are_refused(host: str) -> None:
    with pytest.raises(ValidationError, match="names this machine"):
        validate_public_host(host)


def test_a_public_nat64_url_is_accepted() -> None:
    validate_payer_url("https://[64:ff9b::808:808]/r4")


def _connections(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record every address a socket of this test tries to connect to.

    The hub's own Redis (the rate-limit counts) is connected to first, so that only what the
    hub tries towards payers is recorded, whichever case of the run opened that connection.
    """
    caches["rate_limits"].get("connected")
    tried: list[Any] = []
    guarded = socket.socket.connect

    def recording(self: socket.socket, address: Any) -> None:
        tried.append(address)
        guarded(self, address)

    monkeypatch.setattr(socket.socket, "connect", recording)
    return tried


def test_a_stored_url_with_a_denied_literal_is_refused_at_save(north: Tenant) -> None:
    response = signed_in(north.admin).post(
        "/p/north/admin/settings/fhir-endpoint/",
        {"base_url": "https://[64:ff9b::a00:1]/r4", "offers_backend_services": "on"},
    )
    assert response.status_code == 400
    assert "NAT64 address (RFC 6052) standing for 10.0.0.1" in response.content.decode()
    assert not FhirEndpoint.objects.for_payer(north.payer).exists()


def test_a_stored_sftp_host_with_a_denied_literal_is_refused_at_save(north: Tenant) -> None:
    destination = SftpDestinationFactory.build(payer=north.payer, host="2002:a00:1::1")
    with pytest.raises(ValidationError) as refused:
        destination.full_clean()
    assert "6to4 address" in " ".join(refused.value.message_dict["host"])
    assert not SftpDestination.objects.for_payer(north.payer).exists()


def test_the_sign_in_page_does_not_call_an_issuer_on_a_denied_address(
    north: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Saved before the policy existed (factories skip validation): the call is refused too.
    IdentityProviderFactory(payer=north.payer, issuer="https://[64:ff9b::7f00:1]/")
    tried = _connections(monkeypatch)
    response = Client().get("/p/north/sign-in/")
    assert response.status_code >= 400
    assert "North Star Health" in response.content.decode()
    assert tried == []


def test_the_token_endpoint_does_not_fetch_a_jwks_on_a_denied_address(
    south: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    south.payer.client_jwks_url = "https://[::ffff:0:7f00:1]/jwks.json"
    south.payer.save()
    tried = _connections(monkeypatch)
    response = Client().post(
        "/fhir/auth/token",
        {
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            # Signed with anything: the key set is never fetched, so nothing verifies it.
            "client_assertion": "eyJhbGciOiJSUzM4NCIsImtpZCI6ImsifQ.eyJpc3MiOiJzb3V0aCJ9.AAAA",
            "scope": "system/Consent.rs",
        },
    )
    assert response.status_code == 401
    assert "IPv4-translated SIIT address" in response.json()["error_description"]
    assert tried == []


def test_the_sftp_client_vets_the_address_it_connects_to(monkeypatch: pytest.MonkeyPatch) -> None:
    tried = _connections(monkeypatch)
    with pytest.raises(DeliveryFailed) as refused:
        sftp_host_key_fetch(host="64:ff9b::7f00:1", port=22)
    assert refused.value.code == "destination_forbidden"
    assert "standing for 127.0.0.1" in refused.value.message
    assert tried == []


@pytest.fixture
def redirecting_server() -> Iterator[str]:
    """A loopback server that redirects every GET to a NAT64 form of a private address."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", "https://[64:ff9b::a9fe:a9fe]/latest/meta-data/")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_redirect_to_a_denied_address_is_refused(redirecting_server: str) -> None:
    with (
        PayerHttpClient() as client,
        pytest.raises(DestinationForbidden, match=r"standing for 169\.254\.169\.254"),
    ):
        client.get(f"{redirecting_server}/metadata")

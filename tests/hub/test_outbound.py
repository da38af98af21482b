"""The one outbound client refuses private destinations, also after redirects (issue 2 §6)."""

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import override_settings

from hub.outbound import DestinationForbidden, PayerHttpClient, ResponseTooLarge, TransportFailure


class _Handler(BaseHTTPRequestHandler):
    """A tiny payer: /ok answers, /redirect?to=URL redirects, /big sends 2 MB."""

    def do_GET(self) -> None:
        if self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("Location", self.path.removeprefix("/redirect?to="))
            self.end_headers()
        elif self.path == "/big":
            self.send_response(200)
            self.end_headers()  # no Content-Length: the client must count as it reads
            for _ in range(32):
                self.wfile.write(b"x" * 65536)
        else:
            body = f"host={self.headers['Host']}".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def payer_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_allow_listed_loopback_is_reached(payer_server: str) -> None:
    with PayerHttpClient() as client:
        response = client.get(f"{payer_server}/ok")
    assert response.status_code == 200
    assert response.text.startswith("host=127.0.0.1:")


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
        "https://10.0.0.1/fhir/metadata",  # private
        "https://192.168.1.10/fhir",  # private
        "https://100.64.0.1/fhir",  # shared address space
        "https://[::1]/fhir",  # IPv6 loopback
        "https://[fd00::1]/fhir",  # IPv6 unique local
        "https://[::ffff:10.0.0.1]/fhir",  # IPv4-mapped private
        "https://0.0.0.0/fhir",
    ],
)
def test_private_and_reserved_destinations_are_refused(url: str) -> None:
    with PayerHttpClient() as client, pytest.raises(DestinationForbidden):
        client.get(url)


def test_loopback_is_refused_when_not_allow_listed(payer_server: str) -> None:
    with (
        override_settings(OUTBOUND_ALLOWED_HOSTS=[]),
        PayerHttpClient() as client,
        pytest.raises(DestinationForbidden),
    ):
        client.get(f"{payer_server.replace('http:', 'https:')}/ok")


def test_plain_http_is_refused_for_hosts_not_allow_listed() -> None:
    with PayerHttpClient() as client, pytest.raises(DestinationForbidden, match="plain http"):
        client.get("http://8.8.8.8/fhir")


@pytest.mark.parametrize(
    "target",
    ["http://10.0.0.1/steal", "https://169.254.169.254/latest/meta-data/", "http://127.0.0.2:9/x"],
)
def test_a_redirect_from_an_allowed_host_to_a_forbidden_one_is_refused(
    payer_server: str, target: str
) -> None:
    with PayerHttpClient() as client, pytest.raises(DestinationForbidden):
        client.get(f"{payer_server}/redirect?to={target}")


def test_a_redirect_within_the_allowed_host_is_followed(payer_server: str) -> None:
    with PayerHttpClient() as client:
        response = client.get(f"{payer_server}/redirect?to={payer_server}/ok")
    assert response.status_code == 200
    assert len(response.history) == 1


def test_a_response_over_the_size_limit_is_refused(payer_server: str) -> None:
    with PayerHttpClient(max_response_bytes=1024 * 1024) as client:
        with pytest.raises(ResponseTooLarge):
            client.get(f"{payer_server}/big")
        assert len(client.get(f"{payer_server}/ok").content) < 100


def test_a_closed_port_is_a_transient_failure() -> None:
    from tests.support.net import free_loopback_port

    with PayerHttpClient() as client, pytest.raises(TransportFailure) as failure:
        client.get(f"http://127.0.0.1:{free_loopback_port()}/fhir")
    assert failure.value.permanent is False

"""The one HTTP client for every call to a payer or an identity provider.

What it guarantees (ARCHITECTURE.md "Security model"):
- TLS certificates are verified; plain HTTP only to hosts in OUTBOUND_ALLOWED_HOSTS;
- connect and read timeouts; a response larger than the limit is cut off and refused;
- no private, loopback, link-local (cloud metadata at 169.254.169.254), shared or
  reserved destination unless allow-listed — checked on the *resolved* address, and
  the connection goes to the very address that was checked, so a DNS answer that
  changes between check and connect (rebinding) cannot slip through;
- every redirect hop passes the same checks, because each hop goes through the
  same transport.
"""

import functools
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from django.conf import settings

from hub.validators import host_is_allow_listed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class OutboundError(Exception):
    """A call to a payer failed. ``permanent`` says whether retrying could help (STYLE.md #6)."""

    permanent = True


class DestinationForbidden(OutboundError):
    """The URL points somewhere the hub must not call."""


class ResponseTooLarge(OutboundError):
    """The answer exceeded the configured size limit."""


class TransportFailure(OutboundError):
    """The network failed (refused, reset, timed out); worth retrying later."""

    permanent = False


def _address_is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    # is_global is False for private, loopback, link-local, shared (100.64/10),
    # reserved, documentation and unspecified ranges alike.
    return address.is_global and not address.is_multicast


def vet_destination(host: str, port: int) -> str:
    """Return the address to connect to for ``host``, or raise DestinationForbidden.

    An allow-listed host is used as resolved; any other host must resolve only to
    public addresses (one bad answer among good ones refuses the whole host).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TransportFailure(f"cannot resolve {host}: {exc.strerror}") from None
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not addresses:
        raise TransportFailure(f"{host} has no address")
    if host_is_allow_listed(host):
        return str(addresses[0])
    for address in addresses:
        if not _address_is_public(address) and not host_is_allow_listed(str(address)):
            raise DestinationForbidden(
                f"{host} resolves to {address}, a private or reserved address the hub does not call"
            )
    return str(addresses[0])


class _VettedTransport(httpx.HTTPTransport):
    """Vet each request's destination and connect to the vetted address."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        host = url.host
        if url.scheme not in ("http", "https"):
            raise DestinationForbidden(f"the hub only calls http(s) URLs, not {url.scheme}:")
        if url.scheme == "http" and not host_is_allow_listed(host):
            raise DestinationForbidden(
                f"plain http to {host} is not allowed; payer traffic uses TLS"
            )
        port = url.port or (443 if url.scheme == "https" else 80)
        address = vet_destination(host, port)
        if address != host:
            # Send a copy aimed at the vetted address. The Host header keeps the name,
            # and TLS verifies the certificate against the name given as SNI; the
            # original request stays as it was, so redirects resolve against the name.
            request = httpx.Request(
                request.method,
                url.copy_with(host=address),
                headers=request.headers,
                stream=request.stream,
                extensions={**request.extensions, "sni_hostname": host},
            )
        try:
            return super().handle_request(request)
        except httpx.TransportError as exc:
            raise TransportFailure(f"{host}: {exc.__class__.__name__}: {exc}") from None


@functools.cache
def _verifying_tls_context() -> ssl.SSLContext:
    """Return the one TLS context of outbound calls: certificates verified against the trust
    store httpx would use (SSL_CERT_FILE / SSL_CERT_DIR, else certifi). Built once per
    process: loading the trust store costs tens of milliseconds, and a worker opens a client
    for every poll of a bulk job."""
    return httpx.create_ssl_context(verify=True)


class PayerHttpClient:
    """Make calls to payers and identity providers. Use as a context manager."""

    def __init__(self, *, max_response_bytes: int | None = None) -> None:
        self.max_response_bytes = max_response_bytes or settings.OUTBOUND_MAX_RESPONSE_BYTES
        self._client = httpx.Client(
            transport=_VettedTransport(verify=_verifying_tls_context(), retries=0),
            timeout=httpx.Timeout(
                connect=settings.OUTBOUND_CONNECT_TIMEOUT_SECONDS,
                read=settings.OUTBOUND_READ_TIMEOUT_SECONDS,
                write=settings.OUTBOUND_READ_TIMEOUT_SECONDS,
                pool=settings.OUTBOUND_CONNECT_TIMEOUT_SECONDS,
            ),
            follow_redirects=True,
            max_redirects=settings.OUTBOUND_MAX_REDIRECTS,
            headers={"User-Agent": "payer-hub/1"},
        )

    def __enter__(self) -> "PayerHttpClient":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send a request and return the response with its body read (within the size limit)."""
        with self.stream(method, url, **kwargs) as response:
            return self.read(response)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    @contextmanager
    def stream(self, method: str, url: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """Open a response without reading its body; read it with ``iter_limited``."""
        try:
            with self._client.stream(method, url, **kwargs) as response:
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > self.max_response_bytes:
                    raise ResponseTooLarge(
                        f"{response.url.host} announced {declared} bytes; the limit is "
                        f"{self.max_response_bytes}"
                    )
                yield response
        except httpx.TooManyRedirects:
            raise DestinationForbidden(
                f"more than {settings.OUTBOUND_MAX_REDIRECTS} redirects"
            ) from None
        except httpx.TransportError as exc:
            raise TransportFailure(f"{exc.__class__.__name__}: {exc}") from None

    def read(self, response: httpx.Response) -> httpx.Response:
        """Return an open response of ``stream`` as an ordinary one, its body read within the limit."""
        body = b"".join(self.iter_limited(response))
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            content=body,
            request=response.request,
            history=response.history,
        )

    def iter_limited(self, response: httpx.Response) -> Iterator[bytes]:
        """Yield the body's chunks, refusing to go past the size limit."""
        received = 0
        try:
            for chunk in response.iter_bytes():
                received += len(chunk)
                if received > self.max_response_bytes:
                    raise ResponseTooLarge(
                        f"{response.url.host} sent more than {self.max_response_bytes} bytes"
                    )
                yield chunk
        except httpx.TransportError as exc:
            raise TransportFailure(f"{exc.__class__.__name__}: {exc}") from None

"""The one HTTP client for every call to a payer or an identity provider.

What it guarantees (ARCHITECTURE.md "Security model"):
- TLS certificates are verified; plain HTTP only to hosts in OUTBOUND_ALLOWED_HOSTS;
- connect and read timeouts; a response larger than the limit is cut off and refused;
- no private, loopback, link-local (cloud metadata at 169.254.169.254), shared or
  reserved destination unless allow-listed — checked on the *resolved* address, and
  the connection goes to the very address that was checked, so a DNS answer that
  changes between check and connect (rebinding) cannot slip through;
- every redirect hop passes the same checks, because each hop goes through the
  same transport;
- a requesting payer's client certificate (mutual TLS, hub.client_certificates) is offered
  to holders that ask for one, and a holder refusing the connection for want of one, or
  refusing the one offered, is told apart from a network fault.
"""

import functools
import ipaddress
import os
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from django.conf import settings

from hub.address_policy import address_literal, address_refusal
from hub.validators import host_is_allow_listed


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


# TLS alerts a server sends when it wants a client certificate and got none (TLS 1.3
# certificate_required, RFC 8446 §4.4.2.4; TLS 1.2 servers answer handshake_failure).
_CERTIFICATE_MISSING_ALERTS = frozenset(
    {"TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_HANDSHAKE_FAILURE"}
)
# TLS alerts about the client certificate that was sent (RFC 8446 §6.2).
_CERTIFICATE_REFUSED_ALERTS = frozenset(
    {
        "TLSV1_ALERT_UNKNOWN_CA",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "SSLV3_ALERT_CERTIFICATE_REVOKED",
        "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
        "TLSV1_ALERT_ACCESS_DENIED",
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    }
)


class ClientCertificateRefused(OutboundError):
    """The server ended the TLS handshake over the client certificate: it required one and
    none was presented (``presented`` False), or it refused the one presented. Permanent:
    retrying cannot help until the payer's administrator uploads a certificate it accepts."""

    def __init__(self, message: str, *, host: str, presented: bool, alert: str) -> None:
        super().__init__(message)
        self.host = host
        self.presented = presented
        self.alert = alert


def _tls_alert(exc: BaseException) -> str:
    """Return the reason of the ssl.SSLError under ``exc`` (httpx and httpcore wrap it), or ""."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return str(seen.reason or "")
        seen = seen.__cause__ or seen.__context__
    return ""


def _certificate_refusal(
    exc: BaseException, *, host: str, presented: bool
) -> ClientCertificateRefused | None:
    """Return the ClientCertificateRefused a TLS failure amounts to, or None for another fault."""
    alert = _tls_alert(exc)
    if not presented and alert in _CERTIFICATE_MISSING_ALERTS:
        return ClientCertificateRefused(
            f"{host} requires a client certificate (TLS alert {alert})",
            host=host,
            presented=False,
            alert=alert,
        )
    if presented and alert in _CERTIFICATE_REFUSED_ALERTS:
        return ClientCertificateRefused(
            f"{host} refused the client certificate (TLS alert {alert})",
            host=host,
            presented=True,
            alert=alert,
        )
    return None


def vet_destination(host: str, port: int) -> str:
    """Return the address to connect to for ``host``, or raise DestinationForbidden.

    An allow-listed host is used as resolved; any other host must resolve only to
    addresses the one address policy (hub/address_policy.py) calls public unicast: one
    bad answer among good ones refuses the whole host.
    """
    if not 0 < port < 65536:
        raise DestinationForbidden(f"{port} is not a TCP port; ports run from 1 to 65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TransportFailure(f"cannot resolve {host}: {exc.strerror}") from None
    except UnicodeError as exc:
        # A name the IDNA codec cannot encode (a label over 63 characters, say): no lookup
        # could ever succeed, so it is no network fault.
        raise DestinationForbidden(
            f"{host} is not a host name the hub can look up ({exc})"
        ) from None
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not addresses:
        raise TransportFailure(f"{host} has no address")
    if host_is_allow_listed(host):
        return str(addresses[0])
    for address in addresses:
        refusal = address_refusal(address)
        if refusal and not host_is_allow_listed(str(address)):
            if address_literal(host) is not None:
                raise DestinationForbidden(f"{refusal}; the hub does not call it")
            raise DestinationForbidden(
                f"{host} resolves to {address}, which the hub does not call: {refusal}"
            )
    return str(addresses[0])


class _VettedTransport(httpx.HTTPTransport):
    """Vet each request's destination and connect to the vetted address."""

    def __init__(self, *, presents_certificate: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.presents_certificate = presents_certificate

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
            refusal = _certificate_refusal(exc, host=host, presented=self.presents_certificate)
            if refusal is not None:
                raise refusal from None
            raise TransportFailure(f"{host}: {exc.__class__.__name__}: {exc}") from None


@dataclass(frozen=True)
class ClientTlsIdentity:
    """A client certificate chain (PEM, leaf first) and its private key, for mutual TLS."""

    fingerprint_sha256: str
    certificate_chain_pem: str
    private_key_pem: str = field(repr=False)


def _new_verifying_context(ca_file: str) -> ssl.SSLContext:
    """Return a context verifying servers against the trust store httpx would use
    (SSL_CERT_FILE / SSL_CERT_DIR, else certifi), plus the OUTBOUND_CA_FILE bundle when set:
    a private CA is added to the public ones, never put in their place."""
    context = httpx.create_ssl_context(verify=True)
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


@functools.cache
def _verifying_tls_context(ca_file: str) -> ssl.SSLContext:
    """Return the TLS context of outbound calls that present no client certificate. Built
    once per process (and trust setting): loading the trust store costs tens of milliseconds,
    and a worker opens a client for every poll of a bulk job."""
    return _new_verifying_context(ca_file)


def _load_identity(context: ssl.SSLContext, identity: ClientTlsIdentity) -> None:
    """Load the certificate chain and key into ``context`` without the key touching a disk.

    ``SSLContext.load_cert_chain`` reads only from paths, so the PEM goes into an anonymous
    in-memory file (memfd_create, Linux) read through /proc/self/fd; elsewhere into a 0600
    temporary file removed as soon as it has been read.
    """
    pem = f"{identity.certificate_chain_pem.strip()}\n{identity.private_key_pem.strip()}\n"
    data = pem.encode("ascii")
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        descriptor = os.memfd_create("payer-client-certificate", os.MFD_CLOEXEC)
        try:
            os.write(descriptor, data)
            context.load_cert_chain(f"/proc/self/fd/{descriptor}")
        finally:
            os.close(descriptor)
        return
    descriptor, path = tempfile.mkstemp(prefix="payer-client-certificate-")  # mode 0600
    try:
        os.write(descriptor, data)
        os.close(descriptor)
        context.load_cert_chain(path)
    finally:
        os.unlink(path)


_identity_contexts: dict[tuple[str, str], ssl.SSLContext] = {}
_identity_contexts_lock = threading.Lock()


def _identity_tls_context(identity: ClientTlsIdentity, ca_file: str) -> ssl.SSLContext:
    """Return the verifying context that also offers ``identity``, one per process per
    certificate (keyed by its fingerprint): a replaced certificate gets a context of its own."""
    key = (identity.fingerprint_sha256, ca_file)
    with _identity_contexts_lock:
        context = _identity_contexts.get(key)
        if context is None:
            context = _new_verifying_context(ca_file)
            _load_identity(context, identity)
            _identity_contexts[key] = context
        return context


class PayerHttpClient:
    """Make calls to payers and identity providers. Use as a context manager.

    ``client_identity`` is the requesting payer's client certificate, for holders that
    require mutual TLS (seed 002: the mTLS connection carries registration and
    ``$member-match``). Offering it to every holder is harmless: a TLS client sends its
    certificate only when the server asks for one (CertificateRequest, RFC 8446 §4.3.2),
    so a holder that does not ask never sees it.
    """

    def __init__(
        self,
        *,
        max_response_bytes: int | None = None,
        client_identity: ClientTlsIdentity | None = None,
    ) -> None:
        self.max_response_bytes = max_response_bytes or settings.OUTBOUND_MAX_RESPONSE_BYTES
        ca_file = settings.OUTBOUND_CA_FILE
        tls_context = (
            _identity_tls_context(client_identity, ca_file)
            if client_identity is not None
            else _verifying_tls_context(ca_file)
        )
        self._client = httpx.Client(
            transport=_VettedTransport(
                verify=tls_context,
                retries=0,
                presents_certificate=client_identity is not None,
            ),
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
            httpx.URL(url)
        except (httpx.InvalidURL, UnicodeError) as exc:
            # A URL stored before validate_payer_url parsed URLs as httpx does (idna raises
            # a UnicodeError of its own for a bad A-label): no retry can help.
            raise DestinationForbidden(f"the URL {url!r} cannot be used: {exc}") from None
        try:
            with self._client.stream(method, url, **kwargs) as response:
                declared = response.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) > self.max_response_bytes:
                    raise ResponseTooLarge(
                        f"{response.url.host} announced {declared} bytes; the limit is "
                        f"{self.max_response_bytes}"
                    )
                yield response
        except httpx.UnsupportedProtocol as exc:
            raise DestinationForbidden(f"the URL cannot be used: {exc}") from None
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

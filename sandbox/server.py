"""Serve a WSGI application on 127.0.0.1 with one thread per connection, over HTTP or HTTPS.

With a TLS context each connection's handshake runs on that connection's own thread, so
one slow or refused client (no certificate, an unknown CA) never holds up the others.
"""

from __future__ import annotations

import socket
import socketserver
import ssl
import sys
from pathlib import Path
from types import TracebackType
from typing import IO, Any, cast
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from sandbox.faults import DroppedConnection

ExcInfo = tuple[type[BaseException], BaseException, TracebackType]


class _Handler(ServerHandler):
    def log_exception(self, exc_info: Any) -> None:
        # A dropped connection is an injected fault, not an error worth a traceback.
        if not isinstance(exc_info[1], DroppedConnection):
            super().log_exception(exc_info)


class _RequestHandler(WSGIRequestHandler):
    verbose = False

    def log_message(self, format: str, *args: Any) -> None:
        if self.verbose:
            super().log_message(format, *args)

    def get_environ(self) -> dict[str, Any]:
        environ = super().get_environ()
        if getattr(self.server, "tls_context", None) is not None:
            environ["HTTPS"] = "on"  # wsgi.url_scheme follows it (wsgiref.util.guess_scheme)
        return environ

    def handle(self) -> None:
        """Handle one request like wsgiref does, with a fault-aware, multithreaded handler."""
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.send_error(414)
            return
        if not self.parse_request():
            return
        handler = _Handler(
            self.rfile,
            cast(IO[bytes], self.wfile),
            sys.stderr,
            self.get_environ(),
            multithread=True,
        )
        handler.request_handler = self  # type: ignore[attr-defined]
        handler.run(self.server.get_app())  # type: ignore[attr-defined]


# A client that has not finished its TLS handshake by then is dropped.
HANDSHAKE_TIMEOUT_S = 10


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """A WSGIServer that answers each connection on its own daemon thread."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    tls_context: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls_context is None:
            super().finish_request(request, client_address)
            return
        raw = cast(socket.socket, request)
        raw.settimeout(HANDSHAKE_TIMEOUT_S)
        try:
            secured = self.tls_context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            # The refusal reached the client as a TLS alert (no certificate, unknown CA).
            if self.tls_context.verify_mode == ssl.CERT_REQUIRED:
                print(f"sandbox: TLS handshake refused: {exc}", file=sys.stderr, flush=True)
            return
        try:
            secured.settimeout(None)
            super().finish_request(secured, client_address)
        finally:
            secured.close()


def tls_context(*, cert: Path, key: Path, client_ca: Path | None) -> ssl.SSLContext:
    """Return the server context: HTTPS with ``cert``; with ``client_ca``, mutual TLS that
    requires a client certificate signed by that CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=client_ca)
    return context


def serve(app: Any, *, port: int, verbose: bool, tls: ssl.SSLContext | None = None) -> None:
    """Serve app on 127.0.0.1:port until interrupted (HTTPS when ``tls`` is given)."""
    handler = type("RequestHandler", (_RequestHandler,), {"verbose": verbose})
    with ThreadingWSGIServer(("127.0.0.1", port), handler) as server:
        server.tls_context = tls
        server.set_app(app)
        server.serve_forever(poll_interval=0.2)

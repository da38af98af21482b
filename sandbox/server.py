"""Serve a WSGI application on 127.0.0.1 with one thread per connection."""

from __future__ import annotations

import socketserver
import sys
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


class ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    """A WSGIServer that answers each connection on its own daemon thread."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def serve(app: Any, *, port: int, verbose: bool) -> None:
    """Serve app on 127.0.0.1:port until interrupted."""
    handler = type("RequestHandler", (_RequestHandler,), {"verbose": verbose})
    with ThreadingWSGIServer(("127.0.0.1", port), handler) as server:
        server.set_app(app)
        server.serve_forever(poll_interval=0.2)

"""A tiny HTTP server on loopback for the other side of a conversation the hub starts:
a payer's JWKS URL, a subscriber's rest-hook endpoint. It serves fixed JSON documents
and records every request it receives."""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpStub:
    base: str
    documents: dict[str, Any]
    received: list[Received] = field(default_factory=list)
    # Statuses to answer POSTs with, in order; 200 once they are used up.
    post_statuses: list[int] = field(default_factory=list)


@contextmanager
def http_stub(documents: dict[str, Any] | None = None) -> Iterator[HttpStub]:
    stub = HttpStub(base="", documents=documents or {})

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            stub.received.append(
                Received(self.command, self.path, dict(self.headers), self.rfile.read(length))
            )

        def do_GET(self) -> None:
            self._record()
            document = stub.documents.get(self.path)
            body = json.dumps(document).encode() if document is not None else b"{}"
            self.send_response(200 if document is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            self._record()
            status = stub.post_statuses.pop(0) if stub.post_statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    stub.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()

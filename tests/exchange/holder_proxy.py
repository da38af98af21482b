"""A reverse proxy in front of a sandbox payer's FHIR base that misbehaves on purpose.

The sandbox is a well-behaved holder; some holders are not. The proxy forwards every
request under ``/fhir`` to the real sandbox (tokens, paging and data stay the sandbox's
own), rewrites the sandbox's FHIR base in answers to its own, and lets a test alter an
answer: drop ``$everything`` from the CapabilityStatement, send malformed JSON, a Bundle
of another type, another FHIR version; or answer a request with a status of its own (a
bulk file gone with 410 before it expired); or hold requests until the test lets them go (a
page on its way while a worker is killed).
"""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from tests.sandbox.harness import RunningSandbox

# (path with query, body after base rewriting) -> the body to send instead.
Rewrite = Callable[[str, bytes], bytes]
# (method, path with query, request body) -> (status, body) to answer instead of
# forwarding, or None.
Refusal = Callable[[str, str, bytes], tuple[int, bytes] | None]
FORWARDED_HEADERS = ("Authorization", "Accept", "Content-Type", "Prefer", "Range")
ANSWER_HEADERS = ("Content-Type", "Retry-After", "WWW-Authenticate", "X-Progress", "Content-Range")


@dataclass
class Hold:
    """Requests whose path contains ``fragment`` wait at the proxy until ``released`` is set."""

    fragment: str
    released: threading.Event = field(default_factory=threading.Event)
    # How many requests have come to wait, released or not.
    arrived: int = 0


@dataclass
class HolderProxy:
    base: str
    rewrites: list[Rewrite] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    # (method, path with query, request body) of every request, in order.
    received: list[tuple[str, str, bytes]] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)

    def hold(self, fragment: str) -> Hold:
        """Hold every later request whose path contains ``fragment`` until released."""
        hold = Hold(fragment)
        self.holds.append(hold)
        return hold

    @property
    def fhir(self) -> str:
        return f"{self.base}/fhir"


@contextmanager
def holder_proxy(sandbox: RunningSandbox) -> Iterator[HolderProxy]:
    proxy = HolderProxy(base="")
    upstream = httpx.Client(base_url=sandbox.base, timeout=30)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            content = self.rfile.read(length) if length else b""
            proxy.received.append((self.command, self.path, content))
            for hold in proxy.holds:
                if hold.fragment in self.path:
                    hold.arrived += 1
                    hold.released.wait(timeout=120)
            for refusal in proxy.refusals:
                refused = refusal(self.command, self.path, content)
                if refused is not None:
                    status, refusal_body = refused
                    self.send_response(status)
                    self.send_header("Content-Type", "application/fhir+json")
                    self.send_header("Content-Length", str(len(refusal_body)))
                    self.end_headers()
                    self.wfile.write(refusal_body)
                    return
            answer = upstream.request(
                self.command,
                self.path,
                content=content or None,
                headers={h: self.headers[h] for h in FORWARDED_HEADERS if self.headers.get(h)},
            )
            body = answer.content.replace(sandbox.fhir.encode(), proxy.fhir.encode())
            for rewrite in proxy.rewrites:
                body = rewrite(self.path, body)
            self.send_response(answer.status_code)
            for name in ANSWER_HEADERS:
                if name in answer.headers:
                    self.send_header(name, answer.headers[name])
            if "Content-Location" in answer.headers:
                location = answer.headers["Content-Location"].replace(sandbox.fhir, proxy.fhir)
                self.send_header("Content-Location", location)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            # The client may be gone (a worker killed while its request was held).
            with suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(body)

        do_GET = _forward
        do_POST = _forward
        do_DELETE = _forward

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    proxy.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        upstream.close()


def on_path(fragment: str, replace: Callable[[bytes], bytes]) -> Rewrite:
    """Return a rewrite that applies ``replace`` to answers whose path contains ``fragment``."""

    def rewrite(path: str, body: bytes) -> bytes:
        return replace(body) if fragment in path else body

    return rewrite

"""A payer system's webhook endpoint, on a free loopback port, for the tests.

It verifies every message with the documented recipe (``webhook_verify``) against the
secrets it was given and the clock the test sets — as a real receiver would, answering 400
to a message that fails — and can be told to fail its first deliveries (500) or answer a
status with ``Retry-After``.
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from django.utils import timezone

from exchange.webhooks.signing import WebhookVerificationError, webhook_verify


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    status: int
    payload: dict[str, Any] | None
    error: str


@dataclass
class WebhookReceiver:
    url: str = ""
    secrets: list[str] = field(default_factory=list)
    # Statuses to answer the next verified deliveries with (then 204), and a Retry-After.
    fail_with: list[int] = field(default_factory=list)
    retry_after: str = ""
    # The receiver's clock: the tests advance it with the hub's.
    now: datetime = field(default_factory=timezone.now)
    received: list[Delivery] = field(default_factory=list)

    @property
    def accepted(self) -> list[Delivery]:
        return [delivery for delivery in self.received if 200 <= delivery.status < 300]


@contextmanager
def webhook_receiver(*, secrets: list[str] | None = None) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(secrets=list(secrets or []))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = dict(self.headers)
            payload, error = None, ""
            try:
                payload = webhook_verify(
                    secrets=receiver.secrets, headers=headers, body=body, now=receiver.now
                )
            except WebhookVerificationError as exc:
                error = str(exc)
            if error:
                status = 400
            elif receiver.fail_with:
                status = receiver.fail_with.pop(0)
            else:
                status = 204
            receiver.received.append(Delivery(headers, body, status, payload, error))
            self.send_response(status)
            if status >= 400 and receiver.retry_after:
                self.send_header("Retry-After", receiver.retry_after)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()

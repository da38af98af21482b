"""A mail server on a free loopback port, for the tests: it speaks enough SMTP (RFC 5321) for
Django's SMTP backend, keeps every message it accepts, and can be told to refuse recipients.

The standard library's ``smtpd`` is gone from Python 3.12, and a real server is not worth
installing for this: the hub only ever sends a message to one recipient, unauthenticated on
loopback.
"""

import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message


@dataclass
class SmtpServer:
    port: int = 0
    # Addresses answered 550 at RCPT TO (smtplib then raises SMTPRecipientsRefused).
    refused: set[str] = field(default_factory=set)
    received: list[Message] = field(default_factory=list)

    @property
    def environment(self) -> dict[str, str]:
        """The hub's settings (hub/settings.py) that send mail here, for a worker process."""
        return {
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(self.port),
        }


@contextmanager
def running_smtp_server() -> Iterator[SmtpServer]:
    server_state = SmtpServer()

    class Session(socketserver.StreamRequestHandler):
        def reply(self, line: str) -> None:
            self.wfile.write(f"{line}\r\n".encode())

        def handle(self) -> None:
            self.reply("220 127.0.0.1 test mail server")
            while raw := self.rfile.readline():
                command = raw.decode("ascii", "replace").strip()
                verb = command.split(" ", 1)[0].upper()
                if verb in {"EHLO", "HELO"}:
                    self.reply("250 127.0.0.1")
                elif verb == "RCPT":
                    address = command.partition(":")[2].strip().strip("<>")
                    refused = address in server_state.refused
                    self.reply("550 5.1.1 no such mailbox" if refused else "250 OK")
                elif verb == "DATA":
                    self.reply("354 end with <CRLF>.<CRLF>")
                    lines = []
                    while (line := self.rfile.readline()) not in (b".\r\n", b""):
                        # RFC 5321 §4.5.2: a leading dot was doubled by the sender.
                        lines.append(line[1:] if line.startswith(b"..") else line)
                    server_state.received.append(message_from_bytes(b"".join(lines)))
                    self.reply("250 OK queued")
                elif verb == "QUIT":
                    self.reply("221 bye")
                    return
                else:  # MAIL, RSET, NOOP
                    self.reply("250 OK")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Session)
    server.daemon_threads = True
    server_state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        server.shutdown()
        server.server_close()

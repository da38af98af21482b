"""A slow network link in front of a real server: a loopback TCP relay that throttles uploads.

Deliveries to the test sshd finish in milliseconds; a test that must act while a file is on
its way (kill the worker mid-upload) puts this relay between the hub and the sshd. Bytes
from the client towards the server pass at ``upload_rate`` bytes per second, answers pass at
full speed; the rate can change while connections are open (``None``: no limit). The SSH
session runs end to end through it, so the host key and sign-in are the server's own.
"""

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

_CHUNK = 4096


@dataclass
class SlowLink:
    port: int
    upload_rate: int | None


def _pump(source: socket.socket, sink: socket.socket, link: SlowLink, *, throttled: bool) -> None:
    try:
        while chunk := source.recv(_CHUNK):
            sink.sendall(chunk)
            rate = link.upload_rate if throttled else None
            if rate:
                time.sleep(len(chunk) / rate)
    except OSError:
        pass
    finally:
        # One side hung up (or was killed): the link goes down in both directions.
        for end in (source, sink):
            with suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()


def _serve(listener: socket.socket, target_port: int, link: SlowLink) -> None:
    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return  # the listener was closed: the link is gone
        server = socket.create_connection(("127.0.0.1", target_port))
        for source, sink, throttled in ((client, server, True), (server, client, False)):
            threading.Thread(
                target=_pump,
                args=(source, sink, link),
                kwargs={"throttled": throttled},
                daemon=True,
            ).start()


@contextmanager
def slow_link(*, target_port: int, upload_rate: int | None) -> Iterator[SlowLink]:
    """Relay 127.0.0.1:<link.port> to 127.0.0.1:``target_port`` for the duration of the block."""
    listener = socket.create_server(("127.0.0.1", 0))
    link = SlowLink(port=listener.getsockname()[1], upload_rate=upload_rate)
    threading.Thread(target=_serve, args=(listener, target_port, link), daemon=True).start()
    try:
        yield link
    finally:
        # Shutting the listener down wakes the accept() it is blocked in.
        with suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()

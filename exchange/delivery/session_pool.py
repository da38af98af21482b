"""Keep a worker's SFTP sessions to a payer's server open between deliveries.

Opening a session costs an SSH handshake, a host-key check and a sign-in — about 0.1-0.2 s
each on a loaded machine — and a cohort delivers to one payer's server once per member, so
a thousand members would spend minutes shaking hands. A worker process keeps each session
it used, idle, for ``IDLE_SECONDS``, and the next delivery to the same destination with the
same credentials and pinned host key takes it (after a round trip proving it still
answers) instead of opening one. A session that failed is closed, never kept; a changed
destination (another key, host key, account) gets sessions of its own.
"""

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import paramiko

from exchange.delivery.sftp import sftp_session
from hub.models import SftpDestination

IDLE_SECONDS = 30.0


@dataclass
class _Session:
    sftp: paramiko.SFTPClient
    closer: ExitStack
    idle_since: float = field(default_factory=time.monotonic)

    def answers(self) -> bool:
        """Return whether the server still answers on this session (one SFTP round trip)."""
        try:
            self.sftp.normalize(".")
        except (OSError, EOFError, paramiko.SSHException):
            return False
        return True

    def close(self) -> None:
        self.closer.close()


_lock = threading.Lock()
_idle: dict[tuple[object, ...], list[_Session]] = {}


def _identity(destination: SftpDestination) -> tuple[object, ...]:
    """Return what a kept session must have been opened with to serve ``destination``."""
    secrets = "\0".join((destination.private_key, destination.password, destination.host_key))
    digest = hashlib.sha256(secrets.encode()).hexdigest()
    return (destination.payer_id, destination.host, destination.port, destination.username, digest)


def _take(identity: tuple[object, ...]) -> _Session | None:
    now = time.monotonic()
    expired: list[_Session] = []
    taken = None
    with _lock:
        for key, sessions in list(_idle.items()):
            fresh = [s for s in sessions if now - s.idle_since < IDLE_SECONDS]
            expired += [s for s in sessions if now - s.idle_since >= IDLE_SECONDS]
            if key == identity and fresh and taken is None:
                taken = fresh.pop()
            _idle[key] = fresh
    for session in expired:
        session.close()
    return taken


@contextmanager
def pooled_sftp_session(destination: SftpDestination) -> Iterator[paramiko.SFTPClient]:
    """Yield an SFTP client signed in to ``destination``: a kept one that still answers, or
    a new one (``sftp_session``: pinned host key checked). Kept again if the caller's work
    on it ended without an error."""
    identity = _identity(destination)
    session = _take(identity)
    if session is not None and not session.answers():
        session.close()
        session = None
    if session is None:
        closer = ExitStack()
        session = _Session(sftp=closer.enter_context(sftp_session(destination)), closer=closer)
    try:
        yield session.sftp
    except BaseException:
        session.close()
        raise
    session.idle_since = time.monotonic()
    with _lock:
        _idle.setdefault(identity, []).append(session)


def pooled_sessions_close() -> None:
    """Close every kept session (a worker shutting down, or a test ending)."""
    with _lock:
        sessions = [s for kept in _idle.values() for s in kept]
        _idle.clear()
    for session in sessions:
        session.close()

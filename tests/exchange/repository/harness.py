"""The hub's SFTP repository server on a free loopback port, and clients to talk to it.

The server runs in this process on its own event loop thread, exactly as the management
command runs it; its database work happens in Django's thread for async code, so tests
using it need committed data (``django_db(transaction=True)``).
"""

import asyncio
import io
import subprocess
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncssh
import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from exchange.repository.host_key import repository_host_key_load_or_create
from exchange.repository.server import (
    repository_server_release_database,
    repository_server_start,
)
from hub.ssh_keys import parse_public_key_line
from tests.support.net import free_loopback_port

_T = TypeVar("_T")


@dataclass
class RunningRepository:
    port: int
    host_key_line: str
    known_hosts: Path


@contextmanager
def running_repository(*, workdir: Path) -> Iterator[RunningRepository]:
    """Start the repository server on 127.0.0.1; stop it (and its DB connection) afterwards."""
    host_key = repository_host_key_load_or_create(path=workdir / "host_key")
    host_key_line = host_key.export_public_key().decode().strip()
    port = free_loopback_port()
    known_hosts = workdir / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_key_line}\n")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coroutine: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=30)

    acceptor = run(repository_server_start(host="127.0.0.1", port=port, host_key=host_key))
    try:
        yield RunningRepository(port=port, host_key_line=host_key_line, known_hosts=known_hosts)
    finally:
        run(_stop(acceptor))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


async def _stop(acceptor: asyncssh.SSHAcceptor) -> None:
    """Stop listening, end the sessions clients left open, close the database connection."""
    acceptor.close()  # on the loop's own thread: asyncio is not thread-safe
    await acceptor.wait_closed()
    await repository_server_release_database()
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class ClientKey:
    private_text: str
    public_line: str
    path: Path

    @property
    def pkey(self) -> paramiko.PKey:
        return paramiko.Ed25519Key.from_private_key(io.StringIO(self.private_text))


def client_key(directory: Path, name: str) -> ClientKey:
    """Make an ed25519 key pair, its private half in a mode-600 file the OpenSSH client accepts."""
    private = ed25519.Ed25519PrivateKey.generate()
    private_text = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public_line = (
        private.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    path = directory / name
    path.write_text(private_text)
    path.chmod(0o600)
    return ClientKey(private_text=private_text, public_line=public_line, path=path)


def paramiko_transport(repository: RunningRepository) -> paramiko.Transport:
    """Connect and check the repository's host key; no sign-in yet."""
    transport = paramiko.Transport(("127.0.0.1", repository.port))
    transport.start_client(timeout=10)
    pinned = parse_public_key_line(repository.host_key_line)
    assert transport.get_remote_server_key().asbytes() == pinned.asbytes()
    return transport


@contextmanager
def paramiko_sftp(
    repository: RunningRepository, username: str, key: ClientKey
) -> Iterator[paramiko.SFTPClient]:
    """Sign in with ``key`` as ``username`` and yield an SFTP client (paramiko)."""
    transport = paramiko_transport(repository)
    try:
        transport.auth_publickey(username, key.pkey)
        sftp = paramiko.SFTPClient.from_transport(transport)
        assert sftp is not None
        yield sftp
    finally:
        transport.close()


def openssh_sftp(
    repository: RunningRepository, username: str, key: ClientKey, commands: str, cwd: Path
) -> subprocess.CompletedProcess[str]:
    """Run OpenSSH's ``sftp`` in batch mode with ``commands``; host key checked strictly."""
    return subprocess.run(
        [
            "sftp", "-F", "/dev/null", "-P", str(repository.port), "-i", str(key.path),
            "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "PasswordAuthentication=no",
            "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={repository.known_hosts}",
            "-o", "LogLevel=ERROR", "-b", "-", f"{username}@127.0.0.1",
        ],
        input=commands,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )  # fmt: skip

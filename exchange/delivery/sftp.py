"""Push deliveries to a payer's own SFTP server with paramiko, and the portal's SFTP checks.

Every connection goes where ``hub.outbound.vet_destination`` allows (no private,
loopback or link-local address unless allow-listed) and to the very address it
vetted; the server must present the pinned host key (ARCHITECTURE.md "Security
model"), compared before any credential is sent.
"""

import hashlib
import posixpath
import secrets
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import paramiko
from django.conf import settings

from exchange.delivery.protocol import DeliveryFailed
from exchange.repository.temporary_names import temporary_name
from hub.connectivity import ConnectivityReport
from hub.models import SftpDestination
from hub.outbound import DestinationForbidden, TransportFailure, vet_destination
from hub.ssh_keys import SshKeyError, load_private_key, parse_public_key_line, public_key_line

_T = TypeVar("_T")
_READ_BLOCK = 32 * 1024
# paramiko names RSA host key algorithms by signature hash; "ssh-rsa" keys sign with these.
_RSA_HOST_KEY_ALGORITHMS = ["rsa-sha2-512", "rsa-sha2-256"]


def _where(host: str, port: int) -> str:
    return f"{host}:{port}"


def _open_transport(host: str, port: int, *, pinned: paramiko.PKey | None) -> paramiko.Transport:
    """Connect to the vetted address and finish the SSH handshake (no authentication yet)."""
    where = _where(host, port)
    try:
        address = vet_destination(host, port)
    except DestinationForbidden as exc:
        raise DeliveryFailed(
            "destination_forbidden",
            f"The hub does not connect to {where}: {exc}. Give the SFTP server's public host name.",
            permanent=True,
        ) from None
    except TransportFailure as exc:
        raise DeliveryFailed("network", f"Cannot reach {where}: {exc}.", permanent=False) from None
    timeout = settings.OUTBOUND_CONNECT_TIMEOUT_SECONDS
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
    except OSError as exc:
        raise DeliveryFailed(
            "network",
            f"Could not connect to the SFTP server at {where} ({exc.strerror or exc}); "
            "the hub will try again.",
            permanent=False,
        ) from None
    # SFTP is request/response in small packets (open, stat, rename, close): with Nagle's
    # algorithm each waits for the previous one's acknowledgement (RFC 896), which costs
    # milliseconds a file. OpenSSH's own client sets TCP_NODELAY for interactive sessions.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    transport = paramiko.Transport(sock)
    if pinned is not None:
        # Ask for the pinned key's type first, so a server holding several host keys
        # shows the one that was pinned (as OpenSSH does with known_hosts).
        preferred = (
            _RSA_HOST_KEY_ALGORITHMS if pinned.get_name() == "ssh-rsa" else [pinned.get_name()]
        )
        options = transport.get_security_options()
        options.key_types = preferred + [t for t in options.key_types if t not in preferred]
    try:
        transport.start_client(timeout=timeout)
    except (paramiko.SSHException, OSError, EOFError) as exc:
        transport.close()
        raise DeliveryFailed(
            "network",
            f"The SSH handshake with {where} failed ({exc}); the hub will try again.",
            permanent=False,
        ) from None
    return transport


def _check_host_key(transport: paramiko.Transport, pinned: paramiko.PKey, where: str) -> None:
    offered = transport.get_remote_server_key()
    if offered.get_name() != pinned.get_name() or offered.asbytes() != pinned.asbytes():
        raise DeliveryFailed(
            "host_key_mismatch",
            f"The SFTP server at {where} presented the host key {offered.fingerprint} "
            f"({offered.get_name()}), but the pinned host key is {pinned.fingerprint} "
            f"({pinned.get_name()}). Nothing was sent. If the payer replaced its server's key, "
            "confirm the new fingerprint with them and update the pinned host key; otherwise "
            "the connection may have been intercepted.",
            permanent=True,
        )


def _authenticate(transport: paramiko.Transport, destination: SftpDestination) -> None:
    where = _where(destination.host, destination.port)
    method = "private key" if destination.private_key else "password"
    try:
        if destination.private_key:
            transport.auth_publickey(
                destination.username, load_private_key(destination.private_key)
            )
        else:
            transport.auth_password(destination.username, destination.password)
    except SshKeyError as exc:
        raise DeliveryFailed(
            "authentication_failed",
            f"The stored private key for {where} cannot be used ({exc}); upload it again.",
            permanent=True,
        ) from None
    except paramiko.BadAuthenticationType as exc:
        raise DeliveryFailed(
            "authentication_failed",
            f"The SFTP server at {where} does not accept {method} sign-in "
            f"(it accepts: {', '.join(exc.allowed_types) or 'nothing offered'}). "
            "Change the credentials in the SFTP destination settings.",
            permanent=True,
        ) from None
    except paramiko.AuthenticationException:
        raise DeliveryFailed(
            "authentication_failed",
            f"The SFTP server at {where} refused the {method} of user "
            f"{destination.username!r}. Check the user name and {method} in the SFTP "
            "destination settings, and that the server has the hub's public key.",
            permanent=True,
        ) from None
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise DeliveryFailed(
            "network", f"Signing in to {where} was cut off ({exc}).", permanent=False
        ) from None


def _pinned_key(destination: SftpDestination) -> paramiko.PKey:
    try:
        return parse_public_key_line(destination.host_key)
    except SshKeyError as exc:
        raise DeliveryFailed(
            "host_key_invalid",
            f"The pinned host key of the SFTP destination is not usable ({exc}); "
            "fetch the server's key again and confirm it.",
            permanent=True,
        ) from None


def _ignore_progress(step: str, detail: str) -> None:
    """Progress reporter of a delivery, which has no one to tell."""


@contextmanager
def sftp_session(
    destination: SftpDestination, *, progress: Callable[[str, str], None] = _ignore_progress
) -> Iterator[paramiko.SFTPClient]:
    """Yield an SFTP client signed in to ``destination`` after its host key matched the pin.

    ``progress(step, detail)`` hears of each step that succeeded (the connectivity check
    reports them); a step that fails raises ``DeliveryFailed``.
    """
    pinned = _pinned_key(destination)
    where = _where(destination.host, destination.port)
    transport = _open_transport(destination.host, destination.port, pinned=pinned)
    progress("Connect", f"Reached {where} and completed the SSH handshake.")
    try:
        _check_host_key(transport, pinned, where)
        progress("Host key", f"The server presented the pinned key {pinned.fingerprint}.")
        _authenticate(transport, destination)
        progress("Sign in", f"Signed in as {destination.username}.")
        reason = "the channel closed"
        try:
            sftp = paramiko.SFTPClient.from_transport(transport)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            sftp, reason = None, str(exc)
        if sftp is None:
            raise DeliveryFailed(
                "sftp_unavailable",
                f"{where} accepted the sign-in but would not start SFTP ({reason}); "
                "ask the payer to enable the SFTP subsystem for this account.",
                permanent=True,
            )
        sftp.get_channel().settimeout(settings.OUTBOUND_READ_TIMEOUT_SECONDS)  # type: ignore[union-attr]
        progress("Start SFTP", "The server started an SFTP session.")
        yield sftp
    finally:
        transport.close()


def _remote_failure(exc: BaseException, doing: str) -> DeliveryFailed:
    """Return the DeliveryFailed an SFTP error raised while ``doing`` something amounts to."""
    if isinstance(exc, PermissionError):
        return DeliveryFailed(
            "permission_denied",
            f"The SFTP server refused permission to {doing}. Ask the payer to let the hub's "
            "account write to that folder, or change the remote directory.",
            permanent=True,
        )
    if isinstance(exc, FileNotFoundError):
        return DeliveryFailed(
            "remote_path_missing",
            f"The SFTP server has no such folder or file when trying to {doing}; "
            "check the remote directory setting.",
            permanent=True,
        )
    if isinstance(exc, TimeoutError | socket.timeout):
        return DeliveryFailed(
            "timeout",
            f"The SFTP server stopped answering while trying to {doing}.",
            permanent=False,
        )
    return DeliveryFailed(
        "network", f"The connection failed while trying to {doing} ({exc}).", permanent=False
    )


def _remote(doing: str, operation: Callable[[], _T]) -> _T:
    try:
        return operation()
    except (OSError, paramiko.SSHException, EOFError) as exc:
        raise _remote_failure(exc, doing) from None


class SftpTarget:
    """A folder on a payer's SFTP server, as a ``DeliveryTarget``."""

    def __init__(self, sftp: paramiko.SFTPClient, directory: str) -> None:
        self.sftp = sftp
        self.directory = directory

    def _path(self, name: str) -> str:
        return posixpath.join(self.directory, name)

    def prepare(self) -> None:
        self._folder_ensure(self.directory)

    def _folder_ensure(self, folder: str) -> None:
        """Make ``folder`` exist, the deepest first: a new request's folder under its former
        payer's costs one look and one mkdir; its parents are made only when it cannot be."""
        if folder in ("", "/"):
            return
        try:
            self.sftp.stat(folder)
            return
        except FileNotFoundError:
            pass
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise _remote_failure(exc, f"open the folder {folder}") from None
        try:
            self.sftp.mkdir(folder)
        except FileNotFoundError:
            self._folder_ensure(posixpath.dirname(folder))
            _remote(f"create the folder {folder}", lambda: self.sftp.mkdir(folder))
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise _remote_failure(exc, f"create the folder {folder}") from None

    def existing_size(self, name: str) -> int | None:
        try:
            return self.sftp.stat(self._path(name)).st_size
        except FileNotFoundError:
            return None
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise _remote_failure(exc, f"look at {self._path(name)}") from None

    def sha256(self, name: str) -> str:
        def read() -> str:
            digest = hashlib.sha256()
            with self.sftp.open(self._path(name), "rb") as remote:
                remote.prefetch()
                while block := remote.read(_READ_BLOCK):
                    digest.update(block)
            return digest.hexdigest()

        return _remote(f"read back {self._path(name)}", read)

    def write_temporary(self, name: str, chunks: Iterator[bytes]) -> None:
        path = self._path(temporary_name(name))

        def write() -> None:
            with self.sftp.open(path, "wb") as remote:
                remote.set_pipelined(True)
                for chunk in chunks:
                    remote.write(chunk)

        _remote(f"upload {path}", write)

    def temporary_size(self, name: str) -> int:
        path = self._path(temporary_name(name))
        return _remote(f"check the size of {path}", lambda: self.sftp.stat(path).st_size or 0)

    def publish(self, name: str, *, size: int, sha256: str) -> None:
        source, final = self._path(temporary_name(name)), self._path(name)
        _remote(f"rename {source} to {final}", lambda: self.sftp.posix_rename(source, final))

    def remove(self, name: str) -> None:
        path = self._path(name)
        try:
            self.sftp.remove(path)
        except FileNotFoundError:
            return
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise _remote_failure(exc, f"remove {path}") from None


def sftp_host_key_fetch(*, host: str, port: int) -> str:
    """Return the host key ``host:port`` presents, as an OpenSSH public key line to confirm.

    Raises ``DeliveryFailed`` when the server cannot be reached or is not allowed.
    """
    transport = _open_transport(host, port, pinned=None)
    try:
        return public_key_line(transport.get_remote_server_key())
    finally:
        transport.close()


_CHECK_STEPS = ["Connect", "Host key", "Sign in", "Start SFTP", "Write", "Rename", "Delete"]


def sftp_destination_check(*, destination: SftpDestination) -> ConnectivityReport:
    """Try ``destination`` as a delivery would: connect, pin, sign in, write, rename, delete."""
    report = ConnectivityReport(subject=f"SFTP destination {destination}")
    folder = destination.remote_directory
    try:
        with sftp_session(destination, progress=report.passed) as sftp:
            target = SftpTarget(sftp, folder)
            probe = f"hub-connectivity-check-{secrets.token_hex(4)}"
            target.write_temporary(probe, iter([b"payer-to-payer hub connectivity check\n"]))
            report.passed("Write", f"Wrote a test file under a temporary name in {folder}.")
            target.publish(probe, size=0, sha256="")
            report.passed("Rename", "Renamed it to its final name, as deliveries do.")
            target.remove(probe)
            report.passed("Delete", "Removed the test file.")
    except DeliveryFailed as exc:
        report.failed(_CHECK_STEPS[len(report.steps)], exc.message)
    return report

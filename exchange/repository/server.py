"""The repository's SFTP server (asyncssh), started by ``manage.py sftp_repository``.

A payer's system signs in as the payer's slug with a registered key (no passwords, no
certificates), sees its payer's folder as ``/``, and may list, stat, read and remove
delivered files. Everything else (write, mkdir, rename, links, setstat) is refused with
SFTP's permission-denied status, and no path can leave the folder (``paths.py``), nor
go through a link planted on disk (the local storage refuses links: PayloadLinkRefused).
Everything goes through the storage interface, so the same server serves a local folder
or an object store (several servers behind one address then serve the same files). Files
still being delivered (``*.uploading``, and the storage's own ``*.partial``) are neither
listed nor served. Reads and removals are audited (``services.py``).

Files are decrypted only as they are served: each read decrypts the 64 KiB chunks it
touches (a few are kept per open file, as clients read in 32 KiB pieces).

A revoked (or expired) key's sessions end within about a second: revocation happens in a
web process, so the server asks the database, once a second for all its sessions at once,
which of their keys may no longer sign in (``LiveSessions``).
"""

import asyncio
import logging
import os
import stat
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any, NoReturn, TypeVar

import asyncssh
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connections

from exchange.payloads.storage import (
    CHUNK_SIZE,
    PayloadCorrupt,
    PayloadLinkRefused,
    PayloadReader,
    StoredFile,
)
from exchange.repository.limits import RepositoryLimits
from exchange.repository.models import RepositoryKey
from exchange.repository.paths import PathMalformed, PathOutsideFolder, repository_relative_path
from exchange.repository.selectors import (
    repository_key_for_sign_in,
    repository_keys_no_longer_active,
)
from exchange.repository.services import (
    repository_file_record_read,
    repository_file_remove,
    repository_key_mark_used,
)
from exchange.repository.storage import repository_storage, repository_storage_name
from exchange.repository.temporary_names import is_temporary

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
# A connection that fails this many keys is closed (OpenSSH's MaxAuthTries default).
MAX_SIGN_IN_ATTEMPTS_PER_CONNECTION = 6
LOGIN_TIMEOUT_SECONDS = 30
_CACHED_CHUNKS = 8
_READ_ONLY = "the repository is read-only: files can be listed, downloaded and removed"
_THROUGH_A_LINK = "the path goes through a link; the repository follows none"
# How often the server asks whether the keys of its live sessions were revoked or expired.
KEY_CHECK_SECONDS = 1.0
_WATCHES: set["asyncio.Task[None]"] = set()


async def _in_database(function: Callable[..., _T], **kwargs: Any) -> _T:
    """Run a service or selector in Django's database thread, with a healthy connection."""

    def run() -> _T:
        close_old_connections()
        return function(**kwargs)

    return await sync_to_async(run, thread_sensitive=True)()


class LiveSessions:
    """The signed-in connections of one server by key, ended when their key stops being active."""

    def __init__(self) -> None:
        self._by_key: dict[int, set[RepositorySSHServer]] = {}
        self._keys: dict[int, RepositoryKey] = {}

    def add(self, server: "RepositorySSHServer", key: RepositoryKey) -> None:
        self._by_key.setdefault(key.pk, set()).add(server)
        self._keys[key.pk] = key

    def discard(self, server: "RepositorySSHServer", key: RepositoryKey) -> None:
        servers = self._by_key.get(key.pk)
        if servers is None:
            return
        servers.discard(server)
        if not servers:
            del self._by_key[key.pk]
            del self._keys[key.pk]

    async def end_sessions_of_inactive_keys(self) -> None:
        """Disconnect every session whose key was revoked or has expired since it signed in."""
        if not self._keys:
            return
        ended = await _in_database(repository_keys_no_longer_active, keys=list(self._keys.values()))
        for key_id in ended:
            for server in list(self._by_key.get(key_id, ())):
                server.end(
                    "this key was revoked or has expired; sign in with an active key "
                    "registered by your plan administrator"
                )

    async def watch(self, acceptor: asyncssh.SSHAcceptor) -> None:
        """Check the live sessions' keys every KEY_CHECK_SECONDS while ``acceptor`` serves."""
        while acceptor.is_serving():
            await asyncio.sleep(KEY_CHECK_SECONDS)
            try:
                await self.end_sessions_of_inactive_keys()
            except Exception:
                # A database hiccup must not stop the checks; the next round tries again.
                logger.exception("sftp repository could not check its sessions' keys")


class RepositorySSHServer(asyncssh.SSHServer):
    """One connection: who it comes from, which key signed in, how long it has been idle."""

    def __init__(self, limits: RepositoryLimits, sessions: LiveSessions) -> None:
        self.limits = limits
        self.sessions = sessions
        self.address = ""
        self.key: RepositoryKey | None = None
        self.failed_attempts = 0
        self.last_activity = 0.0
        self._connection: asyncssh.SSHServerConnection | None = None
        self._session_counted = False
        self._idle_timer: asyncio.TimerHandle | None = None
        self._counted = False

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._connection = conn
        peer = conn.get_extra_info("peername")
        self.address = str(peer[0]) if peer else ""
        self._counted = True
        refused = self.limits.connection_opened(self.address)
        if refused:
            logger.warning("sftp repository refused a connection: %s", refused)
            conn.disconnect(asyncssh.DISC_TOO_MANY_CONNECTIONS, refused)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._counted:
            self.limits.connection_closed(self.address)
            self._counted = False
        if self._session_counted and self.key is not None:
            self.limits.session_closed(self.key.payer_id)
            self.sessions.discard(self, self.key)
            self._session_counted = False
        if self._idle_timer is not None:
            self._idle_timer.cancel()

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        if self.limits.sign_in_blocked(self.address):
            self._disconnect(
                asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE, "too many failed sign-ins"
            )
            return False
        found = await _in_database(
            repository_key_for_sign_in,
            username=username,
            fingerprint=key.get_fingerprint("sha256"),
            public_key=key.export_public_key().decode("ascii"),
            source_address=self.address,
        )
        if found is None:
            self.limits.sign_in_failed(self.address)
            self.failed_attempts += 1
            if self.failed_attempts >= MAX_SIGN_IN_ATTEMPTS_PER_CONNECTION:
                self._disconnect(
                    asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE, "too many keys tried"
                )
            return False
        # asyncssh checks the signature after this; the last key accepted is the one that
        # signed in, since a client's attempts on one connection come one after another.
        self.key = found
        return True

    async def auth_completed(self) -> None:
        assert self.key is not None  # noqa: S101 - auth completes only after a key was accepted
        if not self.limits.session_opened(self.key.payer_id):
            self._disconnect(
                asyncssh.DISC_TOO_MANY_CONNECTIONS,
                f"{self.key.payer.slug} already has {self.limits.max_sessions_per_payer} "
                "sessions open; close one and try again",
            )
            return
        self._session_counted = True
        self.sessions.add(self, self.key)
        await _in_database(repository_key_mark_used, key=self.key)
        self.touch()
        self._schedule_idle_check()

    def touch(self) -> None:
        self.last_activity = asyncio.get_running_loop().time()

    def _schedule_idle_check(self) -> None:
        timeout = settings.SFTP_REPOSITORY_IDLE_TIMEOUT_SECONDS
        loop = asyncio.get_running_loop()
        delay = max(0.5, self.last_activity + timeout - loop.time())
        self._idle_timer = loop.call_later(delay, self._idle_check)

    def _idle_check(self) -> None:
        timeout = settings.SFTP_REPOSITORY_IDLE_TIMEOUT_SECONDS
        if asyncio.get_running_loop().time() - self.last_activity >= timeout:
            self._disconnect(asyncssh.DISC_BY_APPLICATION, f"idle for {timeout} seconds")
        else:
            self._schedule_idle_check()

    def _disconnect(self, code: int, reason: str) -> None:
        if self._connection is not None:
            self._connection.disconnect(code, reason)

    def end(self, reason: str) -> None:
        """End this connection now, telling the client why."""
        logger.info("sftp repository ended a session: %s", reason)
        self._disconnect(asyncssh.DISC_BY_APPLICATION, reason)


class _ServedFile:
    """An open file: decrypts the chunks reads touch, and tracks which bytes were read."""

    def __init__(self, reader: PayloadReader, path: str) -> None:
        self.reader = reader
        self.path = path
        self.size = reader.size
        self.read_requested = False
        self._chunks: OrderedDict[int, bytes] = OrderedDict()
        # Bytes [0, _contiguous) were read; _ahead holds ranges read out of order.
        self._contiguous = 0
        self._ahead: dict[int, int] = {}

    def _chunk(self, index: int) -> bytes:
        chunk = self._chunks.get(index)
        if chunk is None:
            chunk = self.reader.read_at(index * CHUNK_SIZE, CHUNK_SIZE)
            self._chunks[index] = chunk
            if len(self._chunks) > _CACHED_CHUNKS:
                self._chunks.popitem(last=False)
        return chunk

    def read(self, offset: int, size: int) -> bytes:
        self.read_requested = True
        end = min(self.size, offset + size)
        parts = []
        position = offset
        while position < end:
            index, start = divmod(position, CHUNK_SIZE)
            piece = self._chunk(index)[start : start + end - position]
            parts.append(piece)
            position += len(piece)
        if position > offset:
            self._note_read(offset, position)
        return b"".join(parts)

    def _note_read(self, start: int, end: int) -> None:
        if start > self._contiguous:
            self._ahead[start] = max(end, self._ahead.get(start, 0))
            return
        self._contiguous = max(self._contiguous, end)
        while True:
            caught_up = [s for s in self._ahead if s <= self._contiguous]
            if not caught_up:
                return
            for s in caught_up:
                self._contiguous = max(self._contiguous, self._ahead.pop(s))

    @property
    def bytes_read(self) -> int:
        return self._contiguous

    @property
    def complete(self) -> bool:
        return self.read_requested and self._contiguous >= self.size

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        # For asyncssh's sparse-ranges extension: every stored file is one data range.
        if whence == os.SEEK_DATA:
            if offset >= self.size:
                raise OSError(6, "no data past the end")  # ENXIO
            return offset
        if whence == os.SEEK_HOLE:
            return self.size
        return offset

    def close(self) -> None:
        self.reader.close()


def _directory_attrs() -> asyncssh.SFTPAttrs:
    return asyncssh.SFTPAttrs(
        type=asyncssh.FILEXFER_TYPE_DIRECTORY, permissions=stat.S_IFDIR | 0o555
    )


class RepositorySFTPServer(asyncssh.SFTPServer):
    """The SFTP session of one signed-in system, confined to its payer's folder."""

    def __init__(self, chan: asyncssh.SSHServerChannel) -> None:
        super().__init__(chan)
        owner = chan.get_connection().get_owner()
        assert isinstance(owner, RepositorySSHServer) and owner.key is not None  # noqa: S101
        self.owner = owner
        self.key: RepositoryKey = owner.key
        self.storage = repository_storage()

    # --- paths -------------------------------------------------------------------------

    def _relative(self, path: bytes) -> str:
        self.owner.touch()
        try:
            return repository_relative_path(path)
        except PathOutsideFolder as exc:
            raise asyncssh.SFTPPermissionDenied(str(exc)) from None
        except PathMalformed as exc:
            raise asyncssh.SFTPNoSuchFile(str(exc)) from None

    def _name(self, relative: str) -> str:
        """Return the storage name of ``relative``; refuse names the storage would refuse."""
        if is_temporary(relative):
            raise asyncssh.SFTPNoSuchFile("no such file")
        name = repository_storage_name(payer_slug=self.key.payer.slug, path=relative)
        try:
            return self.storage.validate(name)
        except ValueError:
            raise asyncssh.SFTPNoSuchFile("no such file") from None

    def _file(self, relative: str) -> StoredFile | None:
        """Return the stored file at ``relative``, or None; permission denied through a link."""
        try:
            return self.storage.stat(self._name(relative))
        except PayloadLinkRefused:
            raise asyncssh.SFTPPermissionDenied(_THROUGH_A_LINK) from None

    def _is_folder(self, relative: str) -> bool:
        try:
            return self.storage.is_folder(self._name(relative))
        except PayloadLinkRefused:
            raise asyncssh.SFTPPermissionDenied(_THROUGH_A_LINK) from None

    def _attrs(self, relative: str) -> asyncssh.SFTPAttrs:
        if relative == "":
            return _directory_attrs()
        stored = self._file(relative)
        if stored is None:
            if self._is_folder(relative):
                return _directory_attrs()
            raise asyncssh.SFTPNoSuchFile("no such file")
        modified = int(stored.modified_at.timestamp())
        return asyncssh.SFTPAttrs(
            type=asyncssh.FILEXFER_TYPE_REGULAR,
            size=stored.size,
            permissions=stat.S_IFREG | 0o444,
            mtime=modified,
            atime=modified,
        )

    def realpath(self, path: bytes) -> bytes:
        return b"/" + self._relative(path).encode("utf-8")

    def stat(self, path: bytes) -> asyncssh.SFTPAttrs:
        return self._attrs(self._relative(path))

    def lstat(self, path: bytes) -> asyncssh.SFTPAttrs:
        return self._attrs(self._relative(path))

    async def scandir(self, path: bytes) -> AsyncIterator[asyncssh.SFTPName]:
        relative = self._relative(path)
        # A payer with nothing delivered yet still has its (empty) root folder.
        if relative and not self._is_folder(relative):
            raise asyncssh.SFTPNoSuchFile("no such folder")
        try:
            entries = self.storage.children(self._name(relative))
        except PayloadLinkRefused:
            raise asyncssh.SFTPPermissionDenied(_THROUGH_A_LINK) from None
        for dot in (b".", b".."):
            yield asyncssh.SFTPName(dot, attrs=_directory_attrs())
        for entry in entries:
            child = f"{relative}/{entry.name}" if relative else entry.name
            try:
                attrs = self._attrs(child)
            except asyncssh.SFTPError:
                continue  # temporary, partial or otherwise unservable names stay hidden
            yield asyncssh.SFTPName(entry.name.encode("utf-8"), attrs=attrs)

    # --- reading and removing ----------------------------------------------------------

    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> _ServedFile:
        relative = self._relative(path)
        writing = asyncssh.FXF_WRITE | asyncssh.FXF_APPEND | asyncssh.FXF_CREAT
        if pflags & (writing | asyncssh.FXF_TRUNC | asyncssh.FXF_EXCL):
            raise asyncssh.SFTPPermissionDenied(_READ_ONLY)
        return self._open_for_reading(relative)

    def open56(
        self, path: bytes, desired_access: int, flags: int, attrs: asyncssh.SFTPAttrs
    ) -> _ServedFile:
        relative = self._relative(path)
        readable = asyncssh.ACE4_READ_DATA | asyncssh.ACE4_READ_ATTRIBUTES
        disposition = flags & asyncssh.FXF_ACCESS_DISPOSITION
        if desired_access & ~readable or disposition != asyncssh.FXF_OPEN_EXISTING:
            raise asyncssh.SFTPPermissionDenied(_READ_ONLY)
        return self._open_for_reading(relative)

    def _open_for_reading(self, relative: str) -> _ServedFile:
        if relative == "" or (self._file(relative) is None and self._is_folder(relative)):
            raise asyncssh.SFTPFailure("that is a folder; open the files inside it")
        try:
            return _ServedFile(self.storage.open(self._name(relative)), relative)
        except (FileNotFoundError, IsADirectoryError):
            raise asyncssh.SFTPNoSuchFile("no such file") from None
        except PayloadLinkRefused:
            # Also a link planted after the path was checked: the reader refused to follow it.
            raise asyncssh.SFTPPermissionDenied(_THROUGH_A_LINK) from None
        except PayloadCorrupt:
            logger.error("repository file failed its integrity check", extra={"path": relative})
            raise asyncssh.SFTPFailure(
                "this file failed its integrity check; ask the hub's operators"
            ) from None

    def read(self, file_obj: object, offset: int, size: int) -> bytes:
        assert isinstance(file_obj, _ServedFile)  # noqa: S101 - only _ServedFile handles exist
        self.owner.touch()
        try:
            return file_obj.read(offset, size)
        except PayloadCorrupt:
            logger.error(
                "repository file failed its integrity check", extra={"path": file_obj.path}
            )
            raise asyncssh.SFTPFailure("this file failed its integrity check") from None

    def fstat(self, file_obj: object) -> asyncssh.SFTPAttrs:
        assert isinstance(file_obj, _ServedFile)  # noqa: S101
        return self._attrs(file_obj.path)

    async def close(self, file_obj: object) -> None:
        if not isinstance(file_obj, _ServedFile):
            return
        file_obj.close()
        if file_obj.read_requested:
            await _in_database(
                repository_file_record_read,
                key=self.key,
                path=file_obj.path,
                bytes_read=file_obj.bytes_read,
                complete=file_obj.complete,
                client_address=self.owner.address,
            )

    async def remove(self, path: bytes) -> None:
        relative = self._relative(path)
        if relative == "" or self._file(relative) is None:
            raise asyncssh.SFTPNoSuchFile("no such file")
        try:
            await _in_database(
                repository_file_remove,
                key=self.key,
                path=relative,
                client_address=self.owner.address,
            )
        except FileNotFoundError:
            raise asyncssh.SFTPNoSuchFile("no such file") from None

    # --- everything else is refused ----------------------------------------------------

    def _refuse(self) -> NoReturn:
        self.owner.touch()
        raise asyncssh.SFTPPermissionDenied(_READ_ONLY)

    def write(self, file_obj: object, offset: int, data: bytes) -> NoReturn:
        self._refuse()

    def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> NoReturn:
        self._refuse()

    def lsetstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> NoReturn:
        self._refuse()

    def fsetstat(self, file_obj: object, attrs: asyncssh.SFTPAttrs) -> NoReturn:
        self._refuse()

    def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> NoReturn:
        self._refuse()

    def rmdir(self, path: bytes) -> NoReturn:
        self._refuse()

    def rename(self, oldpath: bytes, newpath: bytes) -> NoReturn:
        self._refuse()

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> NoReturn:
        self._refuse()

    def symlink(self, oldpath: bytes, newpath: bytes) -> NoReturn:
        self._refuse()

    def link(self, oldpath: bytes, newpath: bytes) -> NoReturn:
        self._refuse()

    def lock(self, file_obj: object, offset: int, length: int, flags: int) -> NoReturn:
        self._refuse()

    def unlock(self, file_obj: object, offset: int, length: int) -> NoReturn:
        self._refuse()

    def fsync(self, file_obj: object) -> NoReturn:
        self._refuse()

    def readlink(self, path: bytes) -> bytes:
        self._relative(path)
        raise asyncssh.SFTPNoSuchFile("the repository holds no links")

    def statvfs(self, path: bytes) -> NoReturn:
        raise asyncssh.SFTPOpUnsupported("not offered by the repository")

    def fstatvfs(self, file_obj: object) -> NoReturn:
        raise asyncssh.SFTPOpUnsupported("not offered by the repository")


async def repository_server_start(
    *, host: str, port: int, host_key: asyncssh.SSHKey
) -> asyncssh.SSHAcceptor:
    """Listen on ``host:port``; return the acceptor (``close()`` it to stop listening)."""
    sessions = LiveSessions()
    limits = RepositoryLimits(
        max_connections_per_address=settings.SFTP_REPOSITORY_MAX_CONNECTIONS_PER_ADDRESS,
        max_auth_failures_per_address=settings.SFTP_REPOSITORY_MAX_AUTH_FAILURES_PER_ADDRESS,
        max_sessions_per_payer=settings.SFTP_REPOSITORY_MAX_SESSIONS_PER_PAYER,
    )
    acceptor = await asyncssh.listen(
        host,
        port,
        server_factory=partial(RepositorySSHServer, limits, sessions),
        server_host_keys=[host_key],
        sftp_factory=RepositorySFTPServer,
        allow_scp=False,
        agent_forwarding=False,
        x11_forwarding=False,
        login_timeout=LOGIN_TIMEOUT_SECONDS,
    )
    watch = asyncio.get_running_loop().create_task(sessions.watch(acceptor))
    # asyncio keeps only a weak reference to a task; the watch ends with the server.
    _WATCHES.add(watch)
    watch.add_done_callback(_WATCHES.discard)
    return acceptor


async def repository_server_release_database() -> None:
    """Close the database connection of the thread the server's queries ran in."""
    await sync_to_async(connections.close_all, thread_sensitive=True)()

"""Payload files at rest: members' records, encrypted, written atomically, read as a stream.

Everything the engine stages (retrieved pages), packages (Bundle, manifest) or keeps for a
payer to collect (the hub's SFTP repository) goes through ``PayloadStorage``
(ARCHITECTURE.md "Security model": payload files encrypted at rest).

File format, version 1::

    header  = b"PHP1" | key id (8) | salt (16) | nonce prefix (8)
    chunk_i = AES-256-GCM(plaintext[i*64KiB : (i+1)*64KiB]) with its 16-byte tag

Each file has its own key, HKDF-SHA256 of the master key and the salt. Chunk ``i`` uses
nonce ``prefix | i`` and authenticates the header, ``i`` and a final-chunk flag, so chunks
cannot be reordered, swapped between files, or cut off at a chunk boundary unnoticed.
Fixed-size chunks let a reader start at any offset (SFTP reads at offsets) and give the
plaintext size from the file size alone.

Master keys are ``FIELD_ENCRYPTION_KEYS`` (the same rotation as secrets in the database:
the first encrypts, every key decrypts, the key id names which one a file used).

``PayloadStorage`` is the interface; ``LocalPayloadStorage`` (a folder, the default) and
``ObjectStorePayloadStorage`` (an S3-compatible bucket, ``object_store.py``) are its backends,
chosen by ``PAYLOAD_STORAGE_BACKEND`` (``payload_storage``). Both hold the same file format,
so a reader at an offset costs one ranged read of the sealed chunks covering it in either.
"""

import base64
import errno
import hashlib
import os
import re
import secrets
import shutil
import stat
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import IO, Protocol, Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

MAGIC = b"PHP1"
CHUNK_SIZE = 64 * 1024
TAG_SIZE = 16
HEADER_SIZE = len(MAGIC) + 8 + 16 + 8
_SEALED_CHUNK = CHUNK_SIZE + TAG_SIZE
_TEMPORARY_SUFFIX = ".partial"
# Sealed chunks fetched per read when a file is streamed whole (1 MiB: one ranged GET each).
_CHUNKS_PER_READ = 16
# What a reader streaming a file whole reads first: its header and first chunks. A backend
# whose every read is a round trip fetches this much as it opens a file, in one.
FIRST_READ_SIZE = HEADER_SIZE + _CHUNKS_PER_READ * _SEALED_CHUNK
# The object-store prefixes of the two storages sharing one bucket (README "Payload storage").
PAYLOADS_OBJECT_PREFIX = "payloads"
REPOSITORY_OBJECT_PREFIX = "repository"
# Relative POSIX names of letters, digits and ._- only: no "..", no absolute paths.
_NAME_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# A file system takes at most 255 bytes a name (NAME_MAX), and a writer's temporary name adds
# 17 characters to it; an S3 key takes at most 1,024 bytes, the store's prefix included.
# Past these, each backend would refuse in its own words (or the operating system's).
MAX_NAME_PART = 200
MAX_NAME = 1000


class PayloadCorrupt(Exception):
    """A payload file fails authentication: tampered with, truncated, or under an unknown key."""


class PayloadLinkRefused(Exception):
    """A name goes through a link on disk; the hub writes none, so one found was planted."""


def _master_keys() -> dict[bytes, bytes]:
    """Return the master keys by key id, the encrypting key first."""
    keys: dict[bytes, bytes] = {}
    for encoded in settings.FIELD_ENCRYPTION_KEYS:
        raw = base64.urlsafe_b64decode(encoded)
        keys[hashlib.sha256(raw).digest()[:8]] = raw
    return keys


def _file_key(master: bytes, salt: bytes) -> AESGCM:
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=salt, info=b"payer-hub payload v1"
    ).derive(master)
    return AESGCM(derived)


def _chunk_aad(header: bytes, index: int, final: bool) -> bytes:
    return header + index.to_bytes(8, "big") + (b"\x01" if final else b"\x00")


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + index.to_bytes(4, "big")


def plaintext_size(stored_size: int) -> int:
    """Return the plaintext size of a stored file of ``stored_size`` bytes."""
    body = stored_size - HEADER_SIZE
    chunks = -(-body // _SEALED_CHUNK)
    return body - chunks * TAG_SIZE


class SealedSink(Protocol):
    """Where a writer puts sealed bytes until they are published under the final name."""

    def write(self, data: bytes) -> None: ...

    def publish(self) -> None:
        """Make everything written appear under the final name, at once."""

    def discard(self) -> None:
        """Drop everything written; nothing appears under the final name."""


class SealedSource(Protocol):
    """The sealed bytes of one stored file, readable at any offset."""

    stored_size: int

    def read_range(self, offset: int, length: int) -> bytes: ...

    def close(self) -> None: ...


class PayloadWriter:
    """Write one payload file; it appears under its name only when closed without error."""

    def __init__(self, sink: SealedSink) -> None:
        self._sink = sink
        key_id, master = next(iter(_master_keys().items()))
        salt = secrets.token_bytes(16)
        self._nonce_prefix = secrets.token_bytes(8)
        self._header = MAGIC + key_id + salt + self._nonce_prefix
        self._cipher = _file_key(master, salt)
        self._buffer = bytearray()
        self._index = 0
        self._hash = hashlib.sha256()
        self.size = 0
        self._sink.write(self._header)

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the plaintext written so far."""
        return self._hash.hexdigest()

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        self.size += len(data)
        self._buffer += data
        while len(self._buffer) > CHUNK_SIZE:
            self._seal(bytes(self._buffer[:CHUNK_SIZE]), final=False)
            del self._buffer[:CHUNK_SIZE]

    def _seal(self, plaintext: bytes, *, final: bool) -> None:
        aad = _chunk_aad(self._header, self._index, final)
        self._sink.write(
            self._cipher.encrypt(_nonce(self._nonce_prefix, self._index), plaintext, aad)
        )
        self._index += 1

    def close(self) -> None:
        """Seal the last chunk and publish the file under its final name."""
        self._seal(bytes(self._buffer), final=True)
        self._buffer.clear()
        self._sink.publish()

    def abort(self) -> None:
        self._sink.discard()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class PayloadReader:
    """Read one payload file's plaintext, from the start or at any offset."""

    def __init__(self, source: SealedSource, *, name: str) -> None:
        self._source = source
        self._header = source.read_range(0, HEADER_SIZE)
        if len(self._header) != HEADER_SIZE or not self._header.startswith(MAGIC):
            source.close()
            raise PayloadCorrupt(f"{PurePosixPath(name).name} is not a payload file")
        key_id = self._header[4:12]
        salt = self._header[12:28]
        self._nonce_prefix = self._header[28:36]
        master = _master_keys().get(key_id)
        if master is None:
            source.close()
            raise PayloadCorrupt(
                f"{PurePosixPath(name).name} was encrypted with a key no longer configured"
            )
        self._cipher = _file_key(master, salt)
        self.size = plaintext_size(source.stored_size)
        self._last_index = max(0, -(-self.size // CHUNK_SIZE) - 1)
        self._position = 0

    def _open_chunks(self, first: int, last: int) -> list[bytes]:
        # One read of the sealed chunks first..last: for an object store, one ranged GET.
        sealed = self._source.read_range(
            HEADER_SIZE + first * _SEALED_CHUNK, (last - first + 1) * _SEALED_CHUNK
        )
        plain = []
        for index in range(first, last + 1):
            start = (index - first) * _SEALED_CHUNK
            final = index == self._last_index
            try:
                plain.append(
                    self._cipher.decrypt(
                        _nonce(self._nonce_prefix, index),
                        sealed[start : start + _SEALED_CHUNK],
                        _chunk_aad(self._header, index, final),
                    )
                )
            except InvalidTag:
                raise PayloadCorrupt("a payload file failed its integrity check") from None
        return plain

    def _chunk(self, index: int) -> bytes:
        return self._open_chunks(index, index)[0]

    def read_at(self, offset: int, length: int) -> bytes:
        """Return up to ``length`` plaintext bytes starting at ``offset`` (b"" past the end)."""
        end = min(self.size, offset + length)
        if offset >= end:
            return b""
        first, last = offset // CHUNK_SIZE, (end - 1) // CHUNK_SIZE
        plain = b"".join(self._open_chunks(first, last))
        start = offset - first * CHUNK_SIZE
        return plain[start : start + end - offset]

    def read(self, length: int = -1) -> bytes:
        if length < 0:
            length = self.size - self._position
        data = self.read_at(self._position, length)
        self._position += len(data)
        return data

    def chunks(self) -> Iterator[bytes]:
        """Yield the plaintext chunk by chunk (memory stays flat whatever the size)."""
        for first in range(0, self._last_index + 1, _CHUNKS_PER_READ):
            yield from self._open_chunks(first, min(self._last_index, first + _CHUNKS_PER_READ - 1))

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(frozen=True)
class StoredFile:
    """A complete stored file: its storage name, plaintext size and when it was written."""

    name: str
    size: int
    modified_at: datetime


@dataclass(frozen=True)
class StoredEntry:
    """One entry directly inside a folder: a file or a folder, by its last name part."""

    name: str
    folder: bool


def payload_name_parts(name: str) -> tuple[str, ...]:
    """Return the parts of ``name``; refuse (ValueError) names that could leave the storage."""
    if len(name) > MAX_NAME:
        raise ValueError(f"a payload name is at most {MAX_NAME} characters long")
    parts = PurePosixPath(name).parts
    if any(len(part) > MAX_NAME_PART for part in parts):
        raise ValueError(f"each part of a payload name is at most {MAX_NAME_PART} characters long")
    if not parts or not all(_NAME_PART.match(part) for part in parts):
        raise ValueError(f"not a valid payload name: {name!r}")
    if parts[-1].endswith(_TEMPORARY_SUFFIX):
        raise ValueError(f"payload names may not end in {_TEMPORARY_SUFFIX}")
    return parts


class PayloadStorage(ABC):
    """Encrypted payload files addressed by relative names like ``requests/42/bundle.json``.

    A folder is a name prefix: it exists while a file lies under it. ``""`` names the top
    for ``list``, ``files`` and ``children``.
    """

    def validate(self, name: str) -> str:
        """Return ``name`` normalised; refuse (ValueError) names outside the grammar."""
        return "/".join(payload_name_parts(name))

    @abstractmethod
    def writer(self, name: str, *, durable: bool = True) -> PayloadWriter:
        """Return a writer of ``name``. ``durable=False`` lets a backend skip what makes a
        file survive a crash (the local fsync): for what can be fetched again (a Group
        export split into thousands of small pages); a page a crash cut short is refused
        when read (every chunk is authenticated, the last one marked final), never used."""

    @abstractmethod
    def open(self, name: str) -> PayloadReader:
        """Return a reader of ``name``; FileNotFoundError when there is none."""

    @abstractmethod
    def stat(self, name: str) -> StoredFile | None:
        """Return ``name``'s size and time, or None when no complete file has that name."""

    @abstractmethod
    def is_folder(self, name: str) -> bool:
        """Return whether any file lies under the folder ``name``."""

    @abstractmethod
    def files(self, prefix: str) -> list[StoredFile]:
        """Return the complete files under the folder ``prefix`` (not in-progress ones), sorted."""

    @abstractmethod
    def children(self, prefix: str) -> list[StoredEntry]:
        """Return the files and folders directly inside ``prefix``, sorted by name."""

    @abstractmethod
    def delete(self, name: str) -> None:
        """Delete ``name`` if it exists."""

    @abstractmethod
    def delete_tree(self, prefix: str) -> None:
        """Delete every file under the folder ``prefix``."""

    @abstractmethod
    def rename(self, source: str, target: str) -> None:
        """Move ``source`` to ``target`` at once: readers of ``target`` see the old file or
        the new one, never a mix. FileNotFoundError when ``source`` does not exist."""

    @abstractmethod
    def describe(self) -> str:
        """Return where the files are, for people (a folder, or a bucket and prefix)."""

    def write_bytes(self, name: str, data: bytes) -> PayloadWriter:
        with self.writer(name) as writer:
            writer.write(data)
        return writer

    def read_bytes(self, name: str) -> bytes:
        with self.open(name) as reader:
            return reader.read()

    def exists(self, name: str) -> bool:
        return self.stat(name) is not None

    def size(self, name: str) -> int:
        """Return the plaintext size of ``name`` without decrypting it."""
        return self._stat_or_raise(name).size

    def modified_at(self, name: str) -> datetime:
        return self._stat_or_raise(name).modified_at

    def list(self, prefix: str) -> list[str]:
        """Return the names of the complete files under the folder ``prefix``, sorted."""
        return [stored.name for stored in self.files(prefix)]

    def _stat_or_raise(self, name: str) -> StoredFile:
        stored = self.stat(name)
        if stored is None:
            raise FileNotFoundError(name)
        return stored


class _LocalSink:
    def __init__(self, final_path: Path, *, durable: bool) -> None:
        self._final_path = final_path
        self._durable = durable
        # A temporary name of its own: two writers of one name (a task delivered twice) must
        # not write into the same temporary file; the last one closed wins, whole.
        self._temporary_path = final_path.with_name(
            f"{final_path.name}.{secrets.token_hex(4)}{_TEMPORARY_SUFFIX}"
        )
        self._final_path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] = open(self._temporary_path, "wb")  # noqa: SIM115 - closed in publish()/discard()

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def publish(self) -> None:
        self._file.flush()
        if self._durable:
            os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._temporary_path, self._final_path)

    def discard(self) -> None:
        self._file.close()
        self._temporary_path.unlink(missing_ok=True)


def _open_not_following_links(path: str, flags: int) -> int:
    # Payload files are never links: one found in their place was planted, and following
    # it could serve a file from anywhere (O_NOFOLLOW refuses with ELOOP instead).
    return os.open(path, flags | os.O_NOFOLLOW)


class _LocalSource:
    def __init__(self, path: Path) -> None:
        try:
            self._file = open(path, "rb", opener=_open_not_following_links)  # noqa: SIM115 - closed in close()
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                # A link planted after the name was checked: the open refused to follow it.
                raise PayloadLinkRefused("the path goes through a link") from None
            raise
        self.stored_size = os.fstat(self._file.fileno()).st_size

    def read_range(self, offset: int, length: int) -> bytes:
        self._file.seek(offset)
        return self._file.read(length)

    def close(self) -> None:
        self._file.close()


class LocalPayloadStorage(PayloadStorage):
    """A folder of encrypted payload files (the default backend; ``make demo`` and the tests).

    The hub never writes a link into its folders, so a link found on disk was planted
    there by someone else: no part of a name below the root may be one (PayloadLinkRefused).
    The root itself may be a link an operator set up.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, name: str) -> Path:
        """Return where ``name`` is stored; refuse names that could leave the root."""
        return self.root.joinpath(*payload_name_parts(name))

    def _confined(self, name: str, *, top: bool = False) -> Path:
        """Return where ``name`` is stored, refusing a link in any of its parts below the
        root; ``top`` lets ``""`` name the root (for listing)."""
        current = self.root
        for part in payload_name_parts(name) if name or not top else ():
            current = current / part
            try:
                mode = os.lstat(current).st_mode
            except FileNotFoundError:
                break
            if stat.S_ISLNK(mode):
                raise PayloadLinkRefused("the path goes through a link")
        return self.path(name) if name or not top else self.root

    def writer(self, name: str, *, durable: bool = True) -> PayloadWriter:
        return PayloadWriter(_LocalSink(self._confined(name), durable=durable))

    def open(self, name: str) -> PayloadReader:
        return PayloadReader(_LocalSource(self._confined(name)), name=name)

    def stat(self, name: str) -> StoredFile | None:
        path = self._confined(name)
        try:
            status = os.stat(path, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(status.st_mode):
            return None
        return StoredFile(
            name=self.validate(name),
            size=plaintext_size(status.st_size),
            modified_at=datetime.fromtimestamp(status.st_mtime, tz=UTC),
        )

    def is_folder(self, name: str) -> bool:
        return self._confined(name, top=True).is_dir()

    def files(self, prefix: str) -> list[StoredFile]:
        folder = self._confined(prefix, top=True)
        if not folder.is_dir():
            return []
        found = []
        for path in folder.rglob("*"):
            if path.is_symlink() or path.name.endswith(_TEMPORARY_SUFFIX):
                continue
            status = path.stat()
            if stat.S_ISREG(status.st_mode):
                found.append(
                    StoredFile(
                        name=path.relative_to(self.root).as_posix(),
                        size=plaintext_size(status.st_size),
                        modified_at=datetime.fromtimestamp(status.st_mtime, tz=UTC),
                    )
                )
        return sorted(found, key=lambda stored: stored.name)

    def children(self, prefix: str) -> list[StoredEntry]:
        folder = self._confined(prefix, top=True)
        if not folder.is_dir():
            return []
        return [
            StoredEntry(name=entry.name, folder=entry.is_dir(follow_symlinks=False))
            for entry in sorted(os.scandir(folder), key=lambda entry: entry.name)
            if not entry.name.endswith(_TEMPORARY_SUFFIX)
        ]

    def delete(self, name: str) -> None:
        self._confined(name).unlink(missing_ok=True)

    def delete_tree(self, prefix: str) -> None:
        shutil.rmtree(self._confined(prefix), ignore_errors=True)

    def rename(self, source: str, target: str) -> None:
        # A rename within one file system is atomic (POSIX rename(2)).
        os.replace(self._confined(source), self._confined(target))

    def partials_purge(self, *, before: datetime) -> int:
        """Delete temporary files of writes cut short before ``before``; return how many."""
        if not self.root.is_dir():
            return 0
        removed = 0
        for path in self.root.rglob(f"*{_TEMPORARY_SUFFIX}"):
            if (
                path.is_file()
                and not path.is_symlink()
                and path.stat().st_mtime < before.timestamp()
            ):
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def prune_empty_folders(self) -> None:
        """Remove empty folders below the first level (a payer's folder stays)."""
        if not self.root.is_dir():
            return
        for path in sorted(self.root.rglob("*"), reverse=True):
            if (
                path.is_dir()
                and not path.is_symlink()
                and path.parent != self.root
                and not any(path.iterdir())
            ):
                path.rmdir()

    def describe(self) -> str:
        return str(self.root)

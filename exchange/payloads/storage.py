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
"""

import base64
import hashlib
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Self

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
# Relative POSIX names of letters, digits and ._- only: no "..", no absolute paths.
_NAME_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class PayloadCorrupt(Exception):
    """A payload file fails authentication: tampered with, truncated, or under an unknown key."""


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


class PayloadWriter:
    """Write one payload file; it appears under its name only when closed without error."""

    def __init__(self, final_path: Path, *, durable: bool = True) -> None:
        self._final_path = final_path
        self._durable = durable
        # A temporary name of its own: two writers of one name (a task delivered twice) must
        # not write into the same temporary file; the last one closed wins, whole.
        self._temporary_path = final_path.with_name(
            f"{final_path.name}.{secrets.token_hex(4)}{_TEMPORARY_SUFFIX}"
        )
        key_id, master = next(iter(_master_keys().items()))
        salt = secrets.token_bytes(16)
        self._nonce_prefix = secrets.token_bytes(8)
        self._header = MAGIC + key_id + salt + self._nonce_prefix
        self._cipher = _file_key(master, salt)
        self._buffer = bytearray()
        self._index = 0
        self._hash = hashlib.sha256()
        self.size = 0
        self._final_path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self._temporary_path, "wb")  # noqa: SIM115 - closed in close()/abort()
        self._file.write(self._header)

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
        self._file.write(
            self._cipher.encrypt(_nonce(self._nonce_prefix, self._index), plaintext, aad)
        )
        self._index += 1

    def close(self) -> None:
        """Seal the last chunk, make the file durable, and move it under its final name."""
        self._seal(bytes(self._buffer), final=True)
        self._buffer.clear()
        self._file.flush()
        if self._durable:
            os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._temporary_path, self._final_path)

    def abort(self) -> None:
        self._file.close()
        self._temporary_path.unlink(missing_ok=True)

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


def _open_not_following_links(path: str, flags: int) -> int:
    # Payload files are never links: one found in their place was planted, and following
    # it could serve a file from anywhere (O_NOFOLLOW refuses with ELOOP instead).
    return os.open(path, flags | os.O_NOFOLLOW)


class PayloadReader:
    """Read one payload file's plaintext, from the start or at any offset."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "rb", opener=_open_not_following_links)  # noqa: SIM115 - closed in close()
        self._header = self._file.read(HEADER_SIZE)
        if len(self._header) != HEADER_SIZE or not self._header.startswith(MAGIC):
            self._file.close()
            raise PayloadCorrupt(f"{path.name} is not a payload file")
        key_id = self._header[4:12]
        salt = self._header[12:28]
        self._nonce_prefix = self._header[28:36]
        master = _master_keys().get(key_id)
        if master is None:
            self._file.close()
            raise PayloadCorrupt(f"{path.name} was encrypted with a key no longer configured")
        self._cipher = _file_key(master, salt)
        self.size = plaintext_size(path.stat().st_size)
        self._last_index = max(0, -(-self.size // CHUNK_SIZE) - 1)
        self._position = 0

    def _chunk(self, index: int) -> bytes:
        self._file.seek(HEADER_SIZE + index * _SEALED_CHUNK)
        sealed = self._file.read(_SEALED_CHUNK)
        final = index == self._last_index
        try:
            return self._cipher.decrypt(
                _nonce(self._nonce_prefix, index), sealed, _chunk_aad(self._header, index, final)
            )
        except InvalidTag:
            raise PayloadCorrupt("a payload file failed its integrity check") from None

    def read_at(self, offset: int, length: int) -> bytes:
        """Return up to ``length`` plaintext bytes starting at ``offset`` (b"" past the end)."""
        end = min(self.size, offset + length)
        parts = []
        while offset < end:
            index, start = divmod(offset, CHUNK_SIZE)
            piece = self._chunk(index)[start : start + end - offset]
            parts.append(piece)
            offset += len(piece)
        return b"".join(parts)

    def read(self, length: int = -1) -> bytes:
        if length < 0:
            length = self.size - self._position
        data = self.read_at(self._position, length)
        self._position += len(data)
        return data

    def chunks(self) -> Iterator[bytes]:
        """Yield the plaintext chunk by chunk (memory stays flat whatever the size)."""
        for index in range(self._last_index + 1):
            yield self._chunk(index)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class PayloadStorage:
    """A folder of encrypted payload files, addressed by relative names like ``requests/42/bundle.json``."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root or settings.PAYLOAD_STORAGE_DIR)

    def path(self, name: str) -> Path:
        """Return where ``name`` is stored; refuse names that could leave the root."""
        parts = PurePosixPath(name).parts
        if not parts or not all(_NAME_PART.match(part) for part in parts):
            raise ValueError(f"not a valid payload name: {name!r}")
        if parts[-1].endswith(_TEMPORARY_SUFFIX):
            raise ValueError(f"payload names may not end in {_TEMPORARY_SUFFIX}")
        return self.root.joinpath(*parts)

    def writer(self, name: str, *, durable: bool = True) -> PayloadWriter:
        """Return a writer of ``name``. ``durable=False`` skips the fsync before the rename:
        for what can be fetched again (a Group export split into thousands of small pages,
        where an fsync each costs more than the split); a page a crash cut short is refused
        when read (every chunk is authenticated, the last one marked final), never used."""
        return PayloadWriter(self.path(name), durable=durable)

    def write_bytes(self, name: str, data: bytes) -> PayloadWriter:
        with self.writer(name) as writer:
            writer.write(data)
        return writer

    def open(self, name: str) -> PayloadReader:
        return PayloadReader(self.path(name))

    def read_bytes(self, name: str) -> bytes:
        with self.open(name) as reader:
            return reader.read()

    def exists(self, name: str) -> bool:
        return self.path(name).is_file()

    def size(self, name: str) -> int:
        """Return the plaintext size of ``name`` without decrypting it."""
        return plaintext_size(self.path(name).stat().st_size)

    def modified_at(self, name: str) -> datetime:
        return datetime.fromtimestamp(self.path(name).stat().st_mtime, tz=UTC)

    def list(self, prefix: str) -> list[str]:
        """Return the complete files under the folder ``prefix`` (not in-progress ones), sorted."""
        folder = self.path(prefix)
        if not folder.is_dir():
            return []
        return sorted(
            path.relative_to(self.root).as_posix()
            for path in folder.rglob("*")
            if path.is_file() and not path.name.endswith(_TEMPORARY_SUFFIX)
        )

    def delete(self, name: str) -> None:
        self.path(name).unlink(missing_ok=True)

    def delete_tree(self, prefix: str) -> None:
        shutil.rmtree(self.path(prefix), ignore_errors=True)

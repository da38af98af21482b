"""The one delivery protocol, whichever target the files go to (ARCHITECTURE.md step 7).

For each file, in the order given, the manifest last:

1. if the target already holds the file under its final name with the same size and
   SHA-256, leave it (a rerun after a crash resends only what is missing);
2. write it under a temporary name (``<name>.uploading``), hashing as it goes;
3. check the size that landed; a short file is removed and the delivery fails
   (transient: the next try sends it again);
4. rename it to its final name, replacing what was there.

Because the manifest is written only after every other file is complete, its presence
means the set is complete; and because a manifest that differs from the new one is
removed *before* anything else is written, an old manifest never vouches for new files.
A rerun whose manifest is already there, byte for byte, sends nothing at all. Names
never change between runs, so a rerun can never produce a second set.
"""

import hashlib
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from exchange.payloads.storage import PayloadStorage
from exchange.repository.temporary_names import is_temporary, temporary_name


class DeliveryFailed(Exception):
    """A delivery could not be completed.

    ``code`` is stable (for the request's reason code); ``message`` says in plain words
    what a plan administrator can do; ``permanent`` says whether retrying could help
    (STYLE.md #6): network faults and timeouts are transient, refused credentials,
    a host key mismatch, refused permissions and missing settings are permanent.
    """

    def __init__(self, code: str, message: str, permanent: bool) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.permanent = permanent


@dataclass(frozen=True)
class DeliveredFile:
    """One file as it now lies at the target."""

    remote_path: str
    size: int
    sha256: str
    already_present: bool


class DeliveryTarget(Protocol):
    """Where a set of files goes: a payer's SFTP server, or the hub's repository."""

    directory: str

    def prepare(self) -> None:
        """Make sure the target directory exists."""

    def existing_size(self, name: str) -> int | None:
        """Return the size of the complete file ``name``, or None if there is none."""

    def sha256(self, name: str) -> str:
        """Return the SHA-256 of the complete file ``name`` as it lies at the target."""

    def write_temporary(self, name: str, chunks: Iterator[bytes]) -> None:
        """Write ``chunks`` to ``temporary_name(name)``, replacing any leftover of an earlier try."""

    def temporary_size(self, name: str) -> int:
        """Return the size of ``temporary_name(name)`` as it landed."""

    def publish(self, name: str, *, size: int, sha256: str) -> None:
        """Rename ``temporary_name(name)`` to ``name``, replacing any file of that name."""

    def remove(self, name: str) -> None:
        """Remove ``name`` (a final or temporary name) if it exists."""


def _plain_file_name(name: str) -> str:
    if not name or "/" in name or name in (".", "..") or is_temporary(name):
        raise ValueError(f"not a plain file name for delivery: {name!r}")
    return name


def payload_sha256(storage: PayloadStorage, storage_name: str) -> str:
    """Return the SHA-256 of a stored file's plaintext."""
    digest = hashlib.sha256()
    with storage.open(storage_name) as reader:
        for chunk in reader.chunks():
            digest.update(chunk)
    return digest.hexdigest()


# How often a long upload reports that it is still moving (see ``deliver_set``).
PROGRESS_EVERY_BYTES = 8 * 1024 * 1024

ProgressCallback = Callable[[], None]


def deliver_set(
    *,
    target: DeliveryTarget,
    storage: PayloadStorage,
    files: list[tuple[str, str]],
    on_progress: ProgressCallback | None = None,
) -> list[DeliveredFile]:
    """Deliver ``files`` (storage name, remote file name), the manifest last, to ``target``.

    ``on_progress`` is called every PROGRESS_EVERY_BYTES sent: the caller shows the work is
    moving (so it is not taken for stuck) and may stop it by raising.
    """
    if not files:
        raise ValueError("a delivery needs at least the manifest")
    for _, remote_name in files:
        _plain_file_name(remote_name)
    target.prepare()
    manifest_storage_name, manifest_name = files[-1]
    manifest_sha256 = _already_there(target, storage, manifest_storage_name, manifest_name)
    if manifest_sha256 is not None:
        return [
            DeliveredFile(
                remote_path=posixpath.join(target.directory, remote_name),
                size=storage.size(storage_name),
                sha256=(
                    manifest_sha256
                    if remote_name == manifest_name
                    else payload_sha256(storage, storage_name)
                ),
                already_present=True,
            )
            for storage_name, remote_name in files
        ]
    target.remove(manifest_name)
    return [
        _deliver_one(target, storage, storage_name, remote_name, on_progress)
        for storage_name, remote_name in files
    ]


def _already_there(
    target: DeliveryTarget, storage: PayloadStorage, storage_name: str, name: str
) -> str | None:
    """Return the file's SHA-256 if the target holds exactly this file under ``name``."""
    if target.existing_size(name) != storage.size(storage_name):
        return None
    expected = payload_sha256(storage, storage_name)
    return expected if target.sha256(name) == expected else None


def _deliver_one(
    target: DeliveryTarget,
    storage: PayloadStorage,
    storage_name: str,
    name: str,
    on_progress: ProgressCallback | None,
) -> DeliveredFile:
    remote_path = posixpath.join(target.directory, name)
    size = storage.size(storage_name)
    present = _already_there(target, storage, storage_name, name)
    if present is not None:
        return DeliveredFile(
            remote_path=remote_path, size=size, sha256=present, already_present=True
        )
    digest = hashlib.sha256()

    def hashed_chunks() -> Iterator[bytes]:
        unreported = 0
        with storage.open(storage_name) as reader:
            for chunk in reader.chunks():
                digest.update(chunk)
                yield chunk
                unreported += len(chunk)
                if on_progress is not None and unreported >= PROGRESS_EVERY_BYTES:
                    on_progress()
                    unreported = 0

    target.write_temporary(name, hashed_chunks())
    landed = target.temporary_size(name)
    if landed != size:
        target.remove(temporary_name(name))
        raise DeliveryFailed(
            "incomplete_upload",
            f"{remote_path} arrived with {landed} of its {size} bytes; it will be sent again.",
            permanent=False,
        )
    target.publish(name, size=size, sha256=digest.hexdigest())
    return DeliveredFile(
        remote_path=remote_path, size=size, sha256=digest.hexdigest(), already_present=False
    )

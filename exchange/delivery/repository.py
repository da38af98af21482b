"""Deliver into the hub's own SFTP repository, through the same protocol as a push.

The files are written through ``PayloadStorage`` (encrypted at rest) under the payer's
folder; the repository server hides temporary names, so a collecting system sees a file
only once it is complete, and a manifest only once the whole set is.
"""

import posixpath
from collections.abc import Iterator

from exchange.delivery.protocol import payload_sha256
from exchange.repository.services import repository_file_record_delivered
from exchange.repository.storage import repository_storage, repository_storage_name
from exchange.repository.temporary_names import temporary_name
from hub.models import Payer


class RepositoryTarget:
    """A folder of a payer in the hub's repository, as a ``DeliveryTarget``."""

    def __init__(self, *, payer: Payer, directory: str) -> None:
        self.payer = payer
        self.directory = directory
        self.storage = repository_storage()

    def _name(self, name: str) -> str:
        return repository_storage_name(
            payer_slug=self.payer.slug, path=posixpath.join(self.directory, name)
        )

    def prepare(self) -> None:
        # Storage makes folders as it writes; checking the folder's name now refuses a bad one early.
        self.storage.validate(
            repository_storage_name(payer_slug=self.payer.slug, path=self.directory)
        )

    def existing_size(self, name: str) -> int | None:
        stored = self.storage.stat(self._name(name))
        return stored.size if stored is not None else None

    def sha256(self, name: str) -> str:
        return payload_sha256(self.storage, self._name(name))

    def write_temporary(self, name: str, chunks: Iterator[bytes]) -> None:
        with self.storage.writer(self._name(temporary_name(name))) as writer:
            for chunk in chunks:
                writer.write(chunk)

    def temporary_size(self, name: str) -> int:
        return self.storage.size(self._name(temporary_name(name)))

    def publish(self, name: str, *, size: int, sha256: str) -> None:
        # The storage's rename is atomic for the target: collectors see the old file or the new one.
        self.storage.rename(self._name(temporary_name(name)), self._name(name))
        repository_file_record_delivered(
            payer=self.payer, path=posixpath.join(self.directory, name), size=size, sha256=sha256
        )

    def remove(self, name: str) -> None:
        self.storage.delete(self._name(name))

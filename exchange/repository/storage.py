"""Where the repository keeps its files: a PayloadStorage (encrypted at rest) with one folder per payer.

The storage name of a file is ``<payer slug>/<path the payer's system sees>``, e.g.
``north/south/42/bundle.json`` for ``/south/42/bundle.json`` as North's system sees it.
"""

import os
import stat
from pathlib import Path, PurePosixPath

from django.conf import settings

from exchange.payloads.storage import PayloadStorage
from exchange.repository.paths import PathOutsideFolder


def repository_storage() -> PayloadStorage:
    """Return the storage under SFTP_REPOSITORY_DIR (files decrypted only as they are served)."""
    return PayloadStorage(root=settings.SFTP_REPOSITORY_DIR)


def repository_storage_name(*, payer_slug: str, path: str) -> str:
    """Return the storage name of ``path`` (relative to the payer's folder) for ``payer_slug``."""
    return f"{payer_slug}/{path}" if path else payer_slug


def repository_local_path(*, storage: PayloadStorage, payer_slug: str, path: str) -> Path:
    """Return where ``path`` of ``payer_slug``'s folder is on disk, confined to that folder.

    The hub never writes a link into the repository, so a link found on disk was planted
    there by someone else: no part of the path (the payer's folder included) may be one,
    and the path must still lie inside the payer's folder once resolved. Raise
    PathOutsideFolder otherwise; ValueError for a name the storage refuses. Parts that do
    not exist yet are left to the caller (no such file).
    """
    local = storage.path(repository_storage_name(payer_slug=payer_slug, path=path))
    folder = storage.path(payer_slug)
    current = folder
    for part in ("", *PurePosixPath(path).parts):
        current = current / part if part else current
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            break
        if stat.S_ISLNK(mode):
            raise PathOutsideFolder("the path goes through a link; the repository follows none")
    # The storage root itself may be a link an operator set up; the payer's folder may not.
    if not local.resolve().is_relative_to(storage.root.resolve() / payer_slug):
        raise PathOutsideFolder("the path leaves your folder")
    return local

"""Where the repository keeps its files: a PayloadStorage (encrypted at rest) with one folder per payer.

The storage name of a file is ``<payer slug>/<path the payer's system sees>``, e.g.
``north/south/42/bundle.json`` for ``/south/42/bundle.json`` as North's system sees it.
The backend is the payloads' own (PAYLOAD_STORAGE_BACKEND): SFTP_REPOSITORY_DIR on the
local one, the prefix ``repository/`` of the same bucket on the object store, so every
repository server behind one address serves the same files.
"""

from django.conf import settings

from exchange.payloads.backends import payload_storage_backend
from exchange.payloads.storage import REPOSITORY_OBJECT_PREFIX, PayloadStorage


def repository_storage() -> PayloadStorage:
    """Return the repository's storage (files decrypted only as they are served)."""
    return payload_storage_backend(
        local_root=settings.SFTP_REPOSITORY_DIR, object_prefix=REPOSITORY_OBJECT_PREFIX
    )


def repository_storage_name(*, payer_slug: str, path: str) -> str:
    """Return the storage name of ``path`` (relative to the payer's folder) for ``payer_slug``."""
    return f"{payer_slug}/{path}" if path else payer_slug

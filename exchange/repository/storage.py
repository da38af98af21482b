"""Where the repository keeps its files: a PayloadStorage (encrypted at rest) with one folder per payer.

The storage name of a file is ``<payer slug>/<path the payer's system sees>``, e.g.
``north/south/42/bundle.json`` for ``/south/42/bundle.json`` as North's system sees it.
"""

from django.conf import settings

from exchange.payloads.storage import PayloadStorage


def repository_storage() -> PayloadStorage:
    """Return the storage under SFTP_REPOSITORY_DIR (files decrypted only as they are served)."""
    return PayloadStorage(root=settings.SFTP_REPOSITORY_DIR)


def repository_storage_name(*, payer_slug: str, path: str) -> str:
    """Return the storage name of ``path`` (relative to the payer's folder) for ``payer_slug``."""
    return f"{payer_slug}/{path}" if path else payer_slug

"""The name a delivered file has until it is complete, which the repository never shows.

A delivery (``exchange.delivery``: into this repository, or pushed to a payer's own SFTP
server) writes each file under ``<name>.uploading`` and renames it once the size that
landed is checked. The repository's server neither lists nor serves such a name, so a
collecting system sees a file only once it is complete. The convention lives here, with
the server that hides it, so the repository needs nothing of the delivery code that
writes into it (ARCHITECTURE.md "Layers").
"""

TEMPORARY_SUFFIX = ".uploading"


def temporary_name(name: str) -> str:
    """Return the name ``name`` is written under until it is complete."""
    return name + TEMPORARY_SUFFIX


def is_temporary(name: str) -> bool:
    """Return whether ``name`` is a file still being delivered (never shown to collectors)."""
    return name.endswith(TEMPORARY_SUFFIX)

"""Delivery of a request's package to the new payer (ARCHITECTURE.md step 7; issue 5 item 10).

Two targets, one protocol (``exchange.delivery.protocol``): pushed with paramiko to the
payer's own SFTP server (``Payer.delivery_mode = push_sftp``), or written into the payer's
folder of the hub's SFTP repository (``hub_repository``), from which its systems collect.

Layout at the target, the same on both::

    <remote_directory>/<former-payer-slug>/<request-id>/bundle.json     (or *.ndjson)
    <remote_directory>/<former-payer-slug>/<request-id>/manifest.json   (written last)
    <remote_directory>/<former-payer-slug>/cohort-<id>/cohort-manifest.json  (a cohort's,
        once every member has an outcome: each member's outcome and request folder)

``<remote_directory>`` is the ``SftpDestination.remote_directory`` for a push, and the
payer's own folder (``/`` as its systems see it) in the repository. The caller passes
the full folder, ``delivery_remote_directory`` builds it. While a file is written it
is named ``<name>.uploading``; collectors should wait for ``manifest.json`` and check
each file's sha256 and size against it.

Public API: ``deliver_files``, ``delivery_remote_directory``, ``cohort_remote_directory``,
``DeliveryFailed``,
``DeliveredFile``; for the portal's Test buttons, ``exchange.delivery.sftp``'s
``sftp_destination_check`` and ``sftp_host_key_fetch``.
"""

from exchange.delivery.protocol import DeliveredFile, DeliveryFailed
from exchange.delivery.services import (
    cohort_remote_directory,
    deliver_files,
    delivery_remote_directory,
)

__all__ = [
    "DeliveredFile",
    "DeliveryFailed",
    "cohort_remote_directory",
    "deliver_files",
    "delivery_remote_directory",
]

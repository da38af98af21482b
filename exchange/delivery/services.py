"""``deliver_files``: what the delivery task calls, whichever way the new payer collects."""

import posixpath

from exchange.delivery.protocol import (
    DeliveredFile,
    DeliveryFailed,
    ProgressCallback,
    deliver_set,
)
from exchange.delivery.repository import RepositoryTarget
from exchange.delivery.session_pool import pooled_sftp_session
from exchange.delivery.sftp import SftpTarget
from exchange.payloads.storage import PayloadStorage
from hub.models import DeliveryMode, Payer, SftpDestination


def _sftp_destination(payer: Payer) -> SftpDestination:
    destination = SftpDestination.objects.for_payer(payer).first()
    if destination is None:
        raise DeliveryFailed(
            "no_destination",
            f"{payer.name} has chosen to have files pushed to its own SFTP server, but no SFTP "
            "destination is set up. Add one in the plan-admin portal, or switch to collecting "
            "files from the hub's SFTP repository.",
            permanent=True,
        )
    return destination


def delivery_remote_directory(*, payer: Payer, former_payer_slug: str, request_id: int) -> str:
    """Return the folder one request's files go to (layout: see ``exchange.delivery``)."""
    return _remote_directory(payer, posixpath.join(former_payer_slug, str(request_id)))


def cohort_remote_directory(*, payer: Payer, former_payer_slug: str, cohort_id: int) -> str:
    """Return the folder of a cohort's own manifest, beside its members' request folders."""
    return _remote_directory(payer, posixpath.join(former_payer_slug, f"cohort-{cohort_id}"))


def _remote_directory(payer: Payer, folder: str) -> str:
    if payer.delivery_mode == DeliveryMode.PUSH_SFTP:
        return posixpath.join(_sftp_destination(payer).remote_directory, folder)
    return folder


def deliver_files(
    *,
    payer: Payer,
    remote_directory: str,
    storage: PayloadStorage,
    files: list[tuple[str, str]],
    on_progress: ProgressCallback | None = None,
) -> list[DeliveredFile]:
    """Deliver ``files`` ((storage name, remote file name), manifest last) to ``payer``.

    Pushes to the payer's SFTP destination or writes into its repository folder, by
    ``payer.delivery_mode``. Safe to run again after any failure. Raises ``DeliveryFailed``.
    ``on_progress`` is called as a long upload moves (``protocol.deliver_set``).
    """
    if payer.delivery_mode == DeliveryMode.PUSH_SFTP:
        # A session kept from the worker's previous delivery there, when it still answers.
        with pooled_sftp_session(_sftp_destination(payer)) as sftp:
            return deliver_set(
                target=SftpTarget(sftp, remote_directory),
                storage=storage,
                files=files,
                on_progress=on_progress,
            )
    try:
        return deliver_set(
            target=RepositoryTarget(payer=payer, directory=remote_directory),
            storage=storage,
            files=files,
            on_progress=on_progress,
        )
    except ValueError as exc:
        raise DeliveryFailed("invalid_name", f"Cannot deliver: {exc}.", permanent=True) from None
    except OSError as exc:
        raise DeliveryFailed(
            "repository_unavailable",
            f"The hub could not write to its SFTP repository ({exc.strerror or exc}); "
            "the hub will try again.",
            permanent=False,
        ) from None

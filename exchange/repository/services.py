"""Writes of the repository: keys registered and revoked, files delivered, read, removed, purged.

Each change is audited in the same transaction (STYLE.md #7). Reads and removals by a
payer's system name the key that signed in (``sftp-key:<label>``, with its fingerprint).
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from exchange.payloads.storage import LocalPayloadStorage, PayloadStorage
from exchange.repository.models import RepositoryFile, RepositoryKey
from exchange.repository.storage import repository_storage, repository_storage_name
from hub.audit import audit_record
from hub.models import Payer, User
from hub.ssh_keys import parse_public_key_line, public_key_line, sha256_fingerprint

logger = logging.getLogger(__name__)


@transaction.atomic
def repository_key_register(
    *,
    payer: Payer,
    label: str,
    public_key: str,
    allowed_sources: list[str],
    expires_at: datetime | None,
    created_by: User | None,
    client_address: str | None = None,
) -> RepositoryKey:
    """Register a system's public key (ed25519, ECDSA or RSA >= 2048 bits) for ``payer``.

    ``created_by`` is the administrator, or None for an operator at the console.
    Raises ``hub.ssh_keys.SshKeyError`` for a malformed or weak key.
    """
    parsed = parse_public_key_line(public_key)
    key = RepositoryKey.objects.create(
        payer=payer,
        label=label,
        public_key=public_key_line(parsed),
        fingerprint=sha256_fingerprint(parsed),
        allowed_sources=allowed_sources,
        expires_at=expires_at,
        created_by=created_by,
    )
    audit_record(
        action="sftp_repository.key_registered",
        obj=key,
        payer=payer,
        actor=created_by,
        actor_label="" if created_by else "console",
        changes={
            "label": label,
            "fingerprint": key.fingerprint,
            "allowed_sources": allowed_sources,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
        client_address=client_address,
    )
    return key


@transaction.atomic
def repository_key_revoke(
    *, key: RepositoryKey, revoked_by: User, client_address: str | None = None
) -> None:
    """Revoke ``key`` from now on; revoking a revoked key changes nothing."""
    if (
        not RepositoryKey.objects.for_payer(key.payer_id)
        .filter(pk=key.pk, revoked_at__isnull=True)
        .update(revoked_at=timezone.now())
    ):
        return
    key.refresh_from_db(fields=["revoked_at"])
    audit_record(
        action="sftp_repository.key_revoked",
        obj=key,
        payer=key.payer,
        actor=revoked_by,
        changes={"label": key.label, "fingerprint": key.fingerprint},
        client_address=client_address,
    )


def repository_key_mark_used(*, key: RepositoryKey) -> None:
    """Note that ``key`` just signed in (shown in the portal's key list)."""
    RepositoryKey.objects.for_payer(key.payer_id).filter(pk=key.pk).update(
        last_used_at=timezone.now()
    )


def repository_file_record_delivered(*, payer: Payer, path: str, size: int, sha256: str) -> None:
    """Record that ``path`` now holds a complete delivered file (uncollected, retention from now)."""
    RepositoryFile.objects.update_or_create(
        payer=payer,
        path=path,
        defaults={
            "size": size,
            "sha256": sha256,
            "delivered_at": timezone.now(),
            "collected_at": None,
        },
    )


def _file_row(*, payer: Payer, path: str) -> RepositoryFile:
    """Return the row of ``path``; a file with no row (delivered before rows were kept) gets one."""
    row, _ = RepositoryFile.objects.get_or_create(
        payer=payer,
        path=path,
        defaults={
            "size": repository_storage().size(
                repository_storage_name(payer_slug=payer.slug, path=path)
            ),
            "sha256": "",
            "delivered_at": timezone.now(),
        },
    )
    return row


def _key_changes(key: RepositoryKey, path: str, size: int) -> dict[str, object]:
    return {"file": path, "size": size, "key_fingerprint": key.fingerprint, "key_label": key.label}


@transaction.atomic
def repository_file_record_read(
    *, key: RepositoryKey, path: str, bytes_read: int, complete: bool, client_address: str
) -> None:
    """Audit a download by ``key``; a complete one marks the file collected (purged next)."""
    row = _file_row(payer=key.payer, path=path)
    if complete and row.collected_at is None:
        row.collected_at = timezone.now()
        row.save(update_fields=["collected_at"])
    audit_record(
        action="sftp_repository.file_read",
        obj=row,
        payer=key.payer,
        actor_label=f"sftp-key:{key.label}",
        changes={
            **_key_changes(key, path, row.size),
            "bytes_read": bytes_read,
            "complete": complete,
        },
        client_address=client_address,
    )


@transaction.atomic
def repository_file_remove(*, key: RepositoryKey, path: str, client_address: str) -> None:
    """Remove ``path`` from the key's payer folder at its system's request, audited.

    Raises FileNotFoundError when there is no such file.
    """
    storage = repository_storage()
    name = repository_storage_name(payer_slug=key.payer.slug, path=path)
    if not storage.exists(name):
        raise FileNotFoundError(path)
    row = _file_row(payer=key.payer, path=path)
    audit_record(
        action="sftp_repository.file_removed",
        obj=row,
        payer=key.payer,
        actor_label=f"sftp-key:{key.label}",
        changes=_key_changes(key, path, row.size),
        client_address=client_address,
    )
    row.delete()
    # Last, so a failure here rolls the audit and the row back with it.
    storage.delete(name)


def repository_files_purge(*, now: datetime | None = None) -> int:
    """Purge collected files and files older than SFTP_REPOSITORY_RETENTION_DAYS; return how many.

    Leftovers with no row (an interrupted delivery's temporary files) go by their age on disk.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.SFTP_REPOSITORY_RETENTION_DAYS)
    storage = repository_storage()
    purged = 0
    expired = (
        RepositoryFile.objects.across_payers(
            reason="the retention purge empties every payer's folder"
        )
        .filter(Q(collected_at__isnull=False) | Q(delivered_at__lt=cutoff))
        .select_related("payer")
    )
    for row in expired:
        with transaction.atomic():
            audit_record(
                action="sftp_repository.file_purged",
                obj=row,
                payer=row.payer,
                actor_label="system",
                changes={
                    "file": row.path,
                    "size": row.size,
                    "reason": "collected" if row.collected_at else "retention period over",
                },
            )
            row.delete()
            storage.delete(repository_storage_name(payer_slug=row.payer.slug, path=row.path))
        purged += 1
    purged += _purge_leftovers(storage, cutoff=cutoff)
    return purged


def _purge_leftovers(storage: PayloadStorage, *, cutoff: datetime) -> int:
    removed = 0
    for stored in storage.files(""):
        if stored.modified_at < cutoff:
            storage.delete(stored.name)
            removed += 1
    if isinstance(storage, LocalPayloadStorage):
        # A write cut short on disk leaves its temporary file, and purged deliveries their
        # empty folders (payer folders themselves stay). An object store keeps neither: an
        # upload that never completed is not an object.
        removed += storage.partials_purge(before=cutoff)
        storage.prune_empty_folders()
    if removed:
        logger.info("purged %d leftover repository files", removed)
    return removed

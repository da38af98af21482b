"""Reads of the repository's keys and files (STYLE.md #1)."""

import ipaddress
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db.models import Count, Min, Q, Sum
from django.utils import timezone

from exchange.repository.host_key import repository_host_key_fingerprint, repository_host_key_line
from exchange.repository.models import RepositoryFile, RepositoryKey
from hub.models import Payer, TenantQuerySet


def repository_keys(*, payer: Payer) -> TenantQuerySet[RepositoryKey]:
    """Return the payer's keys, newest first, revoked and expired ones included."""
    return RepositoryKey.objects.for_payer(payer).select_related("created_by")


def repository_key_registered(*, payer: Payer, fingerprint: str) -> RepositoryKey | None:
    """Return the payer's key with ``fingerprint`` (revoked or not), if there is one."""
    return RepositoryKey.objects.for_payer(payer).filter(fingerprint=fingerprint).first()


def repository_key_for_sign_in(
    *, username: str, fingerprint: str, public_key: str, source_address: str
) -> RepositoryKey | None:
    """Return the key that lets ``public_key`` sign in as ``username`` from ``source_address``.

    The user name is the payer's slug. None when the payer has no such key, or it is
    revoked, expired, or restricted to networks the address is not in.
    """
    now = timezone.now()
    payer = Payer.objects.filter(slug=username).first()
    if payer is None:
        return None
    key = (
        RepositoryKey.objects.for_payer(payer)
        .filter(fingerprint=fingerprint, revoked_at__isnull=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .select_related("payer")
        .first()
    )
    if key is None or key.public_key.split()[:2] != public_key.split()[:2]:
        return None
    if key.allowed_sources and not _address_in_networks(source_address, key.allowed_sources):
        return None
    return key


def _address_in_networks(address: str, networks: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in ipaddress.ip_network(network, strict=False) for network in networks)


@dataclass(frozen=True)
class RepositoryConnectionDetails:
    """What a payer's administrator needs to point a system at the repository."""

    host: str
    port: int
    username: str
    host_key_line: str | None
    host_key_fingerprint: str | None

    @property
    def known_hosts_line(self) -> str | None:
        if self.host_key_line is None:
            return None
        host = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        return f"{host} {self.host_key_line}"


def repository_connection_details(*, payer: Payer) -> RepositoryConnectionDetails:
    """Return where and as whom the payer's systems sign in, and the host key to pin."""
    return RepositoryConnectionDetails(
        host=settings.SFTP_REPOSITORY_PUBLIC_HOST,
        port=settings.SFTP_REPOSITORY_PUBLIC_PORT,
        username=payer.slug,
        host_key_line=repository_host_key_line(),
        host_key_fingerprint=repository_host_key_fingerprint(),
    )


@dataclass(frozen=True)
class UncollectedFiles:
    """Delivered files a payer's systems have not collected yet, in its folder."""

    payer_id: int
    files: int
    bytes: int
    oldest_delivered_at: datetime

    @property
    def oldest_purged_at(self) -> datetime:
        """When the retention purge removes the oldest of them if still uncollected."""
        return self.oldest_delivered_at + timedelta(days=settings.SFTP_REPOSITORY_RETENTION_DAYS)


def repository_uncollected_by_payer() -> list[UncollectedFiles]:
    """Return each payer's uncollected files (count, bytes, oldest), the oldest first: one
    grouped query on the uncollected index, however many payers there are."""
    rows = (
        RepositoryFile.objects.across_payers(
            reason="the hub team watches what every payer has left uncollected, as counts only"
        )
        .filter(collected_at__isnull=True)
        .values("payer_id")
        .annotate(files=Count("pk"), bytes=Sum("size"), oldest=Min("delivered_at"))
        .order_by("oldest", "payer_id")
    )
    return [
        UncollectedFiles(
            payer_id=row["payer_id"],
            files=row["files"],
            bytes=row["bytes"] or 0,
            oldest_delivered_at=row["oldest"],
        )
        for row in rows
    ]


@dataclass(frozen=True)
class RepositorySpace:
    """The space of the volume that holds SFTP_REPOSITORY_DIR, in bytes."""

    path: Path
    total: int
    used: int
    free: int

    @property
    def free_percent(self) -> float:
        return 100.0 * self.free / self.total if self.total else 0.0


def repository_space() -> RepositorySpace:
    """Return the space of the volume holding the repository's folder (or, before its first
    file, of the nearest folder above it that exists: the volume it will be made on).

    Raises OSError when no folder of the path can be read.
    """
    path = Path(settings.SFTP_REPOSITORY_DIR)
    volume = path
    while not volume.exists() and volume.parent != volume:
        volume = volume.parent
    usage = shutil.disk_usage(volume)
    return RepositorySpace(path=path, total=usage.total, used=usage.used, free=usage.free)


def repository_keys_no_longer_active(*, keys: list[RepositoryKey]) -> set[int]:
    """Return the ids of ``keys`` that were revoked or have expired (their sessions must end)."""
    if not keys:
        return set()
    # One query for the keys of every payer whose systems are connected: the server asks
    # only of the keys its own sessions signed in with, by id.
    return set(
        RepositoryKey.objects.across_payers(
            reason="the repository server's live sessions, of any payer: their keys' ids only"
        )
        .filter(pk__in=[key.pk for key in keys])
        .filter(Q(revoked_at__isnull=False) | Q(expires_at__lte=timezone.now()))
        .values_list("pk", flat=True)
    )

"""Reads of the repository's keys and files (STYLE.md #1)."""

import ipaddress
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from exchange.repository.host_key import repository_host_key_fingerprint, repository_host_key_line
from exchange.repository.models import RepositoryKey
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

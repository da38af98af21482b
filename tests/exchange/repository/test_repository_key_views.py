"""Plan administrators register and revoke their systems' keys; another payer gets a 404."""

from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from exchange.repository.models import RepositoryKey
from hub.models import AuditEvent
from tests.conftest import Tenant
from tests.exchange.repository.conftest import register_system_key
from tests.support.every_payer import rows_of_every_payer


def _public_line(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


def _signed_in(tenant: Tenant) -> Client:
    client = Client()
    client.force_login(tenant.admin)
    return client


def _keys_url(tenant: Tenant) -> str:
    return reverse("sftp_repository:keys", kwargs={"payer_slug": tenant.payer.slug})


def test_an_admin_registers_a_key_with_label_expiry_and_source_restriction(north: Tenant) -> None:
    line = _public_line(ec.generate_private_key(ec.SECP256R1())) + " collector@north"
    expires = timezone.localdate() + timedelta(days=90)
    response = _signed_in(north).post(
        _keys_url(north),
        {"label": "claims intake", "public_key": line, "allowed_sources": "203.0.113.7, 198.51.100.0/24",
         "expires_on": expires.isoformat()},
        follow=True,
    )  # fmt: skip
    assert response.status_code == 200
    key = RepositoryKey.objects.for_payer(north.payer).get()
    assert key.label == "claims intake"
    assert key.public_key == " ".join(line.split()[:2])
    assert key.fingerprint.startswith("SHA256:")
    assert key.allowed_sources == ["203.0.113.7/32", "198.51.100.0/24"]
    assert key.expires_at is not None and key.expires_at.date() == expires
    assert key.created_by == north.admin
    assert key.fingerprint in response.content.decode()
    event = AuditEvent.objects.for_payer(north.payer).get(action="sftp_repository.key_registered")
    assert event.actor == north.admin and event.changes["fingerprint"] == key.fingerprint


@pytest.mark.parametrize(
    ("public_key", "message"),
    [
        ("ssh-ed25519 not-base64!!", "not base64"),
        ("hello", "public key line"),
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n"
         "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl", "exactly one"),
        (_public_line(rsa.generate_private_key(public_exponent=65537, key_size=1024)), "at least 2048 bits"),  # noqa: S505
    ],
)  # fmt: skip
def test_a_malformed_or_weak_key_is_refused_with_a_message(
    north: Tenant, public_key: str, message: str
) -> None:
    response = _signed_in(north).post(_keys_url(north), {"label": "x", "public_key": public_key})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not rows_of_every_payer(RepositoryKey).exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("allowed_sources", "10.0.0.0/33", "not an address or network"),
        ("allowed_sources", "office", "not an address or network"),
        ("expires_on", "2001-01-01", "in the future"),
    ],
)
def test_a_bad_restriction_or_expiry_is_refused(
    north: Tenant, field: str, value: str, message: str
) -> None:
    line = _public_line(ec.generate_private_key(ec.SECP384R1()))
    response = _signed_in(north).post(
        _keys_url(north), {"label": "x", "public_key": line, field: value}
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not rows_of_every_payer(RepositoryKey).exists()


def test_the_same_key_cannot_be_registered_twice(north: Tenant, tmp_path: Path) -> None:
    existing = register_system_key(north, tmp_path, "first")
    response = _signed_in(north).post(
        _keys_url(north), {"label": "again", "public_key": existing.key.public_line}
    )
    assert response.status_code == 400
    assert "already registered as “first”" in response.content.decode()


def test_the_page_shows_how_to_connect_and_the_keys(north: Tenant, tmp_path: Path) -> None:
    register_system_key(north, tmp_path, "nightly pull")
    page = _signed_in(north).get(_keys_url(north)).content.decode()
    assert "nightly pull" in page
    assert "sftp -P 2222 -i YOUR_KEY north@127.0.0.1" in page


def test_an_admin_revokes_a_key(north: Tenant, tmp_path: Path) -> None:
    system = register_system_key(north, tmp_path, "old box")
    url = reverse(
        "sftp_repository:key-revoke", kwargs={"payer_slug": "north", "key_id": system.row.pk}
    )
    assert _signed_in(north).post(url).status_code == 302
    system.row.refresh_from_db()
    assert system.row.revoked_at is not None and not system.row.is_active()
    event = AuditEvent.objects.for_payer(north.payer).get(action="sftp_repository.key_revoked")
    assert event.actor == north.admin and event.changes["fingerprint"] == system.row.fingerprint


def test_another_payers_admin_gets_404_and_changes_nothing(
    north: Tenant, south: Tenant, tmp_path: Path
) -> None:
    system = register_system_key(north, tmp_path, "north box")
    sam = _signed_in(south)
    assert sam.get(_keys_url(north)).status_code == 404
    # Through Sam's own payer's URL, North's key does not exist either.
    url = reverse(
        "sftp_repository:key-revoke", kwargs={"payer_slug": "south", "key_id": system.row.pk}
    )
    assert sam.post(url).status_code == 404
    system.row.refresh_from_db()
    assert system.row.revoked_at is None
    line = _public_line(ec.generate_private_key(ec.SECP256R1()))
    assert sam.post(_keys_url(north), {"label": "x", "public_key": line}).status_code == 404
    assert rows_of_every_payer(RepositoryKey).count() == 1


def test_a_member_gets_404(north: Tenant) -> None:
    client = Client()
    client.force_login(north.member)
    assert client.get(_keys_url(north)).status_code == 404

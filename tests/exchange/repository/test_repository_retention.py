"""Retention: collected files and files past the retention period are purged, others stay."""

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from pytest_django.fixtures import Settings

from exchange.repository.models import RepositoryFile
from exchange.repository.services import repository_file_record_delivered
from exchange.repository.storage import repository_storage
from exchange.repository.tasks import purge_repository
from hub.models import AuditEvent
from tests.conftest import Tenant


@pytest.fixture(autouse=True)
def _repository_dir(settings: Settings, tmp_path: Path) -> None:
    settings.SFTP_REPOSITORY_DIR = tmp_path / "repository"
    settings.SFTP_REPOSITORY_RETENTION_DAYS = 30


def _delivered(tenant: Tenant, path: str) -> RepositoryFile:
    repository_storage().write_bytes(f"{tenant.payer.slug}/{path}", b"{}")
    repository_file_record_delivered(payer=tenant.payer, path=path, size=2, sha256="x")
    return RepositoryFile.objects.for_payer(tenant.payer).get(path=path)


def test_collected_and_expired_files_are_purged_fresh_ones_stay(north: Tenant) -> None:
    collected = _delivered(north, "south/1/bundle.json")
    RepositoryFile.objects.for_payer(north.payer).filter(pk=collected.pk).update(
        collected_at=timezone.now()
    )
    old = _delivered(north, "south/2/bundle.json")
    RepositoryFile.objects.for_payer(north.payer).filter(pk=old.pk).update(
        delivered_at=timezone.now() - timedelta(days=31)
    )
    _delivered(north, "south/3/bundle.json")

    assert purge_repository() == 2

    storage = repository_storage()
    assert storage.list("north") == ["north/south/3/bundle.json"]
    assert list(RepositoryFile.objects.for_payer(north.payer).values_list("path", flat=True)) == [
        "south/3/bundle.json"
    ]
    reasons = dict(
        AuditEvent.objects.for_payer(north.payer)
        .filter(action="sftp_repository.file_purged")
        .values_list("changes__file", "changes__reason")
    )
    assert reasons == {
        "south/1/bundle.json": "collected",
        "south/2/bundle.json": "retention period over",
    }
    # Purged deliveries leave no empty request folders behind.
    assert not storage.path("north/south/1").exists()
    assert purge_repository() == 0


def test_an_interrupted_deliverys_leftovers_go_by_age(north: Tenant) -> None:
    storage = repository_storage()
    storage.write_bytes("north/south/9/bundle.json.uploading", b"half")
    storage.write_bytes("north/south/8/bundle.json.uploading", b"recent")
    month_ago = (timezone.now() - timedelta(days=31)).timestamp()
    os.utime(storage.path("north/south/9/bundle.json.uploading"), (month_ago, month_ago))

    assert purge_repository() == 1

    assert storage.list("north") == ["north/south/8/bundle.json.uploading"]

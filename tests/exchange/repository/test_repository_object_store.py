"""The repository on the object-store backend: two servers behind one address serve the same
files, written by a delivery that never touched a local folder of theirs."""

import json
from pathlib import Path

import pytest
from pytest_django.fixtures import Settings

from exchange.operations import repository_space_reading
from exchange.repository.models import RepositoryFile
from tests.conftest import Tenant
from tests.exchange.repository.conftest import SystemKey
from tests.exchange.repository.harness import paramiko_sftp, running_repository
from tests.exchange.repository.test_repository_server import BUNDLE, deliver_package
from tests.support.object_store import (
    BUCKET,
    object_store_client,
    object_store_settings_apply,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def on_object_store(s3_endpoint: str, settings: Settings, tmp_path: Path) -> str:
    object_store_settings_apply(settings, s3_endpoint)
    # A folder nothing may use: the object store holds everything.
    settings.SFTP_REPOSITORY_DIR = tmp_path / "unused-repository"
    return s3_endpoint


def test_two_servers_serve_the_same_files_from_the_object_store(
    on_object_store: str,
    north: Tenant,
    south: Tenant,
    north_system: SystemKey,
    tmp_path: Path,
) -> None:
    deliver_package(north, tmp_path, "south/41")
    deliver_package(south, tmp_path, "north/77", bundle=b"South's member, not North's")
    keys = {
        item["Key"]
        for item in object_store_client(on_object_store)
        .list_objects_v2(Bucket=BUCKET, Prefix="repository/north/")
        .get("Contents", [])
    }
    assert keys == {
        "repository/north/south/41/bundle.json",
        "repository/north/south/41/manifest.json",
    }
    assert not (tmp_path / "unused-repository").exists()

    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    with (
        running_repository(workdir=first_dir) as first,
        running_repository(workdir=second_dir) as second,
    ):
        for server in (first, second):
            with paramiko_sftp(server, "north", north_system.key) as sftp:
                assert sftp.listdir("/") == ["south"]
                assert sftp.listdir("/south/41") == ["bundle.json", "manifest.json"]
                assert sftp.stat("/south/41/bundle.json").st_size == len(BUNDLE)
                with sftp.open("/south/41/bundle.json") as remote:
                    # Reads at offsets across the 64 KiB chunks: ranged GETs of the object.
                    remote.seek(70_000)
                    assert remote.read(100_000) == BUNDLE[70_000:170_000]
                    remote.seek(0)
                    assert remote.read() == BUNDLE
                assert json.loads(sftp.open("/south/41/manifest.json").read()) == {
                    "files": ["bundle.json"]
                }
                # South's files are not North's to see.
                with pytest.raises(FileNotFoundError):
                    sftp.stat("/north/77/bundle.json")
        # Removed through one server, gone from the other.
        with paramiko_sftp(first, "north", north_system.key) as sftp:
            sftp.remove("/south/41/manifest.json")
        with paramiko_sftp(second, "north", north_system.key) as sftp:
            assert sftp.listdir("/south/41") == ["bundle.json"]
    assert not RepositoryFile.objects.for_payer(north.payer).filter(path__endswith="manifest.json")


def test_the_operations_view_names_the_bucket_instead_of_a_volume(on_object_store: str) -> None:
    reading = repository_space_reading()
    assert reading.space is None and not reading.problem and not reading.low
    assert reading.object_store == f"object store: {BUCKET}/repository/"

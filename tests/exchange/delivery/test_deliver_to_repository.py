"""Delivering into the hub's repository: the same protocol, then collected over SFTP."""

from pathlib import Path

import pytest

from exchange.delivery import DeliveryFailed, deliver_files, delivery_remote_directory, protocol
from exchange.repository.models import RepositoryFile
from exchange.repository.storage import repository_storage
from tests.conftest import Tenant
from tests.exchange.delivery.conftest import Package, deliver_request_42
from tests.exchange.repository.conftest import register_system_key
from tests.exchange.repository.harness import RunningRepository, paramiko_sftp

pytestmark = pytest.mark.django_db(transaction=True)


def test_files_land_complete_and_the_payers_system_collects_them(
    repository: RunningRepository, north: Tenant, package: Package, tmp_path: Path
) -> None:
    delivered = deliver_request_42(north, package)

    assert [d.remote_path for d in delivered] == [f"south/42/{name}" for name in package.contents]
    rows = RepositoryFile.objects.for_payer(north.payer).order_by("path")
    assert {(r.path, r.size, r.sha256) for r in rows} == {
        (d.remote_path, d.size, d.sha256) for d in delivered
    }
    system = register_system_key(north, tmp_path, "collector")
    with paramiko_sftp(repository, "north", system.key) as sftp:
        assert sorted(sftp.listdir("/south/42")) == sorted(package.contents)
        for name, data in package.contents.items():
            with sftp.open(f"/south/42/{name}") as remote:
                remote.prefetch()
                assert remote.read() == data


def test_the_manifest_is_published_last(
    repository: RunningRepository, north: Tenant, package: Package
) -> None:
    deliver_request_42(north, package)
    storage = repository_storage()
    stamps = {
        name: storage.path(f"north/south/42/{name}").stat().st_mtime_ns for name in package.contents
    }
    assert max(stamps.values()) == stamps["manifest.json"]
    # The rows are written as each file is published, the manifest's last.
    order = (
        RepositoryFile.objects.for_payer(north.payer).order_by("id").values_list("path", flat=True)
    )
    assert list(order)[-1] == "south/42/manifest.json"


def test_a_rerun_sends_nothing_and_never_makes_a_second_set(
    repository: RunningRepository, north: Tenant, package: Package
) -> None:
    deliver_request_42(north, package)
    storage = repository_storage()
    before = {name: storage.path(name).stat().st_mtime_ns for name in storage.list("north")}

    again = deliver_request_42(north, package)

    assert all(d.already_present for d in again)
    assert {name: storage.path(name).stat().st_mtime_ns for name in storage.list("north")} == before
    assert RepositoryFile.objects.for_payer(north.payer).count() == 3


def test_a_rerun_after_a_crash_between_files_completes_the_set(
    repository: RunningRepository, north: Tenant, package: Package
) -> None:
    deliver_request_42(north, package)
    storage = repository_storage()
    # As if the worker died after the bundle: the rest never arrived, a temporary file lingers.
    storage.delete("north/south/42/Coverage.ndjson")
    storage.delete("north/south/42/manifest.json")
    storage.write_bytes("north/south/42/Coverage.ndjson.uploading", b"half of it")

    delivered = deliver_request_42(north, package)

    assert [d.already_present for d in delivered] == [True, False, False]
    assert storage.list("north/south/42") == [
        "north/south/42/Coverage.ndjson", "north/south/42/bundle.json",
        "north/south/42/manifest.json",
    ]  # fmt: skip
    assert (
        storage.read_bytes("north/south/42/Coverage.ndjson") == package.contents["Coverage.ndjson"]
    )


def test_a_name_that_could_escape_the_folder_is_refused(north: Tenant, package: Package) -> None:
    with pytest.raises(DeliveryFailed) as failure:
        deliver_files(
            payer=north.payer, remote_directory="../south", storage=package.storage,
            files=package.files,
        )  # fmt: skip
    assert failure.value.code == "invalid_name" and failure.value.permanent


def test_a_long_upload_reports_progress_and_stops_when_told(
    repository: RunningRepository, north: Tenant, package: Package, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A small step, so the 1.8 MB bundle counts as a long upload.
    monkeypatch.setattr(protocol, "PROGRESS_EVERY_BYTES", 256 * 1024)
    reports: list[int] = []
    folder = delivery_remote_directory(payer=north.payer, former_payer_slug="south", request_id=43)
    deliver_files(
        payer=north.payer,
        remote_directory=folder,
        storage=package.storage,
        files=package.files,
        on_progress=lambda: reports.append(1),
    )
    assert len(reports) >= 6

    class Withdrawn(Exception):
        pass

    def withdrawn() -> None:
        raise Withdrawn

    folder = delivery_remote_directory(payer=north.payer, former_payer_slug="south", request_id=44)
    with pytest.raises(Withdrawn):
        deliver_files(
            payer=north.payer,
            remote_directory=folder,
            storage=package.storage,
            files=package.files,
            on_progress=withdrawn,
        )
    # Stopped mid-file: nothing under a final name, no manifest.
    assert repository_storage().list("north/south/44") == []

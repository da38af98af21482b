"""Pushing a package to a payer's own SFTP server: a real OpenSSH sshd on loopback."""

import shutil
from pathlib import Path

import pytest
from django.test import override_settings

from exchange.delivery import DeliveryFailed, deliver_files
from exchange.delivery.sftp import sftp_destination_check, sftp_host_key_fetch
from hub.models import DeliveryMode, SftpDestination
from hub.ssh_keys import parse_public_key_line
from tests.conftest import Tenant
from tests.exchange.delivery.conftest import Package, deliver_request_42
from tests.exchange.repository.harness import ClientKey, client_key
from tests.support.exchange_setup import sftp_push_configure
from tests.support.net import free_loopback_port
from tests.support.sshd import SftpServer


def _stray_key(directory: Path) -> ClientKey:
    """A key the sshd has never heard of."""
    return client_key(directory, "stray")


@pytest.fixture
def destination(north: Tenant, sftp_server: SftpServer) -> SftpDestination:
    shutil.rmtree(sftp_server.incoming / "south", ignore_errors=True)
    return sftp_push_configure(payer=north.payer, sftp_server=sftp_server)


def test_files_land_complete_under_their_final_names_manifest_last(
    north: Tenant, destination: SftpDestination, sftp_server: SftpServer, package: Package
) -> None:
    delivered = deliver_request_42(north, package)

    landed = sftp_server.incoming / "south" / "42"
    assert sorted(p.name for p in landed.iterdir()) == sorted(package.contents)
    for name, data in package.contents.items():
        assert (landed / name).read_bytes() == data
    assert [d.remote_path for d in delivered] == [
        f"incoming/south/42/{n}" for n in package.contents
    ]
    assert not any(d.already_present for d in delivered)
    manifest_time = (landed / "manifest.json").stat().st_mtime_ns
    assert all((landed / n).stat().st_mtime_ns <= manifest_time for n in package.contents)


def test_a_rerun_sends_nothing_and_leaves_one_set(
    north: Tenant, destination: SftpDestination, sftp_server: SftpServer, package: Package
) -> None:
    first = deliver_request_42(north, package)
    landed = sftp_server.incoming / "south" / "42"
    stamps = {p.name: p.stat().st_mtime_ns for p in landed.iterdir()}

    again = deliver_request_42(north, package)

    assert [d.already_present for d in again] == [True, True, True]
    assert [(d.size, d.sha256) for d in again] == [(d.size, d.sha256) for d in first]
    assert {p.name: p.stat().st_mtime_ns for p in landed.iterdir()} == stamps
    assert sorted((sftp_server.incoming / "south").iterdir()) == [landed]


def test_a_rerun_after_a_failure_midway_resends_only_what_is_missing(
    north: Tenant, destination: SftpDestination, sftp_server: SftpServer, package: Package
) -> None:
    landed = sftp_server.incoming / "south" / "42"
    landed.mkdir(parents=True)
    shutil.chown(landed, user=sftp_server.username)
    # A folder squatting on the NDJSON file's name makes its rename fail after the bundle landed.
    (landed / "Coverage.ndjson").mkdir()
    with pytest.raises(DeliveryFailed):
        deliver_request_42(north, package)
    assert (landed / "bundle.json").read_bytes() == package.contents["bundle.json"]
    assert not (landed / "manifest.json").exists()
    bundle_stamp = (landed / "bundle.json").stat().st_mtime_ns

    (landed / "Coverage.ndjson").rmdir()
    delivered = deliver_request_42(north, package)

    assert [d.already_present for d in delivered] == [True, False, False]
    assert (landed / "bundle.json").stat().st_mtime_ns == bundle_stamp
    assert sorted(p.name for p in landed.iterdir()) == sorted(package.contents)


def test_a_stale_manifest_is_removed_before_new_files_arrive(
    north: Tenant, destination: SftpDestination, sftp_server: SftpServer, package: Package
) -> None:
    deliver_request_42(north, package)
    landed = sftp_server.incoming / "south" / "42"
    package.storage.write_bytes("requests/42/bundle.json", b"a repackaged bundle")
    package.storage.write_bytes("requests/42/manifest.json", b'{"request": 42, "v": 2}')
    (landed / "Coverage.ndjson").unlink()
    (landed / "Coverage.ndjson").mkdir()  # makes the second file's rename fail
    with pytest.raises(DeliveryFailed):
        deliver_request_42(north, package)
    # The old manifest is gone, so it cannot vouch for the new bundle beside it.
    assert (landed / "bundle.json").read_bytes() == b"a repackaged bundle"
    assert not (landed / "manifest.json").exists()


def test_a_host_key_mismatch_fails_permanently_naming_both_fingerprints(
    north: Tenant, destination: SftpDestination, sftp_server: SftpServer, package: Package,
    tmp_path: Path,
) -> None:  # fmt: skip
    impostor = _stray_key(tmp_path).public_line
    destination.host_key = impostor
    destination.save()
    with pytest.raises(DeliveryFailed) as failure:
        deliver_request_42(north, package)
    assert failure.value.code == "host_key_mismatch" and failure.value.permanent
    served = parse_public_key_line(sftp_server.host_key_line).fingerprint
    pinned = parse_public_key_line(impostor).fingerprint
    assert served in failure.value.message and pinned in failure.value.message
    assert not (sftp_server.incoming / "south").exists()


@pytest.mark.parametrize("credential", ["wrong key", "password"])
def test_wrong_credentials_fail_permanently(
    credential: str, north: Tenant, destination: SftpDestination, package: Package, tmp_path: Path
) -> None:
    if credential == "wrong key":
        destination.private_key = _stray_key(tmp_path).private_text
    else:
        destination.private_key, destination.password = "", "guessed"
    destination.save()
    with pytest.raises(DeliveryFailed) as failure:
        deliver_request_42(north, package)
    assert failure.value.code == "authentication_failed" and failure.value.permanent
    assert "SFTP destination settings" in failure.value.message


def test_a_server_that_is_down_is_a_transient_failure(
    north: Tenant, destination: SftpDestination, package: Package
) -> None:
    destination.port = free_loopback_port()
    destination.save()
    with pytest.raises(DeliveryFailed) as failure:
        deliver_request_42(north, package)
    assert failure.value.code == "network" and not failure.value.permanent
    assert f"127.0.0.1:{destination.port}" in failure.value.message


def test_a_folder_the_account_may_not_write_is_a_permanent_failure(
    north: Tenant, destination: SftpDestination, package: Package
) -> None:
    with pytest.raises(DeliveryFailed) as failure:
        deliver_files(
            payer=north.payer, remote_directory="south/42", storage=package.storage,
            files=package.files,
        )  # fmt: skip
    assert failure.value.code == "permission_denied" and failure.value.permanent


def test_private_addresses_are_refused_unless_allow_listed(
    north: Tenant, destination: SftpDestination, package: Package
) -> None:
    with override_settings(OUTBOUND_ALLOWED_HOSTS=[]), pytest.raises(DeliveryFailed) as failure:
        deliver_request_42(north, package)
    assert failure.value.code == "destination_forbidden" and failure.value.permanent


def test_no_destination_configured_is_a_permanent_failure(north: Tenant, package: Package) -> None:
    north.payer.delivery_mode = DeliveryMode.PUSH_SFTP
    north.payer.save()
    with pytest.raises(DeliveryFailed) as failure:
        deliver_files(
            payer=north.payer, remote_directory="x", storage=package.storage, files=package.files
        )
    assert failure.value.code == "no_destination" and failure.value.permanent


def test_the_connectivity_check_walks_every_step(
    destination: SftpDestination, sftp_server: SftpServer
) -> None:
    report = sftp_destination_check(destination=destination)
    assert report.ok, report.as_dict()
    assert [s.name for s in report.steps] == [
        "Connect", "Host key", "Sign in", "Start SFTP", "Write", "Rename", "Delete",
    ]  # fmt: skip
    assert sorted(p.name for p in sftp_server.incoming.iterdir() if p.name.startswith("hub-")) == []


def test_the_connectivity_check_names_the_failing_step(
    destination: SftpDestination, tmp_path: Path
) -> None:
    destination.host_key = _stray_key(tmp_path).public_line
    report = sftp_destination_check(destination=destination)
    assert not report.ok
    assert [(s.name, s.ok) for s in report.steps] == [("Connect", True), ("Host key", False)]
    assert "pinned host key is" in report.steps[-1].detail


def test_the_host_key_fetch_returns_the_servers_key_line(sftp_server: SftpServer) -> None:
    assert sftp_host_key_fetch(host="127.0.0.1", port=sftp_server.port) == sftp_server.host_key_line


def test_the_host_key_fetch_of_a_closed_port_says_so(db: None) -> None:
    port = free_loopback_port()
    with pytest.raises(DeliveryFailed) as failure:
        sftp_host_key_fetch(host="127.0.0.1", port=port)
    assert not failure.value.permanent and "Could not connect" in failure.value.message

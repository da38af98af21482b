"""The hub's SFTP repository, driven by paramiko and by OpenSSH's own sftp client.

North's system must see and download exactly North's files; nothing else gets in or out.
"""

import json
import os
import socket
import time
from pathlib import Path

import paramiko
import pytest
from django.utils import timezone

from exchange.delivery import deliver_files
from exchange.payloads.storage import LocalPayloadStorage
from exchange.repository.models import RepositoryFile
from exchange.repository.services import repository_key_revoke
from exchange.repository.storage import repository_storage
from hub.models import AuditEvent
from tests.conftest import Tenant
from tests.exchange.repository.conftest import SystemKey, register_system_key
from tests.exchange.repository.harness import (
    RunningRepository,
    client_key,
    openssh_sftp,
    paramiko_sftp,
    paramiko_transport,
)

pytestmark = pytest.mark.django_db(transaction=True)

BUNDLE = json.dumps({"resourceType": "Bundle", "type": "collection", "entry": []}).encode() * 3000


def deliver_package(tenant: Tenant, tmp_path: Path, folder: str, bundle: bytes = BUNDLE) -> None:
    """Stage a bundle and its manifest, and deliver them into ``tenant``'s repository folder."""
    staging = LocalPayloadStorage(root=tmp_path / "staging")
    staging.write_bytes(f"{folder}/bundle.json", bundle)
    staging.write_bytes(f"{folder}/manifest.json", json.dumps({"files": ["bundle.json"]}).encode())
    deliver_files(
        payer=tenant.payer,
        remote_directory=folder,
        storage=staging,
        files=[
            (f"{folder}/bundle.json", "bundle.json"),
            (f"{folder}/manifest.json", "manifest.json"),
        ],
    )


@pytest.fixture
def both_delivered(
    repository: RunningRepository, north: Tenant, south: Tenant, tmp_path: Path
) -> None:
    """North has request 41 from South; South has request 77 from North."""
    deliver_package(north, tmp_path, "south/41")
    deliver_package(south, tmp_path, "north/77", bundle=b"South's member, not North's")


def test_a_payers_system_sees_and_downloads_exactly_its_own_files_with_paramiko(
    repository: RunningRepository, both_delivered: None, north_system: SystemKey
) -> None:
    with paramiko_sftp(repository, "north", north_system.key) as sftp:
        assert sftp.listdir("/") == ["south"]
        assert sftp.listdir("/south/41") == ["bundle.json", "manifest.json"]
        assert sftp.stat("/south/41/bundle.json").st_size == len(BUNDLE)
        with sftp.open("/south/41/bundle.json") as remote:
            assert remote.read() == BUNDLE
        assert sftp.getcwd() is None and sftp.normalize(".") == "/"
        with pytest.raises(FileNotFoundError):
            sftp.stat("/north/77/bundle.json")


def test_the_openssh_client_lists_and_downloads_byte_exact(
    repository: RunningRepository, north: Tenant, north_system: SystemKey, tmp_path: Path
) -> None:
    deliver_package(north, tmp_path, "south/41")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    result = openssh_sftp(
        repository, "north", north_system.key,
        "ls -1 /south/41\nget /south/41/bundle.json\nget south/41/manifest.json\n", cwd=downloads,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "bundle.json" in result.stdout and "manifest.json" in result.stdout
    assert (downloads / "bundle.json").read_bytes() == BUNDLE
    assert json.loads((downloads / "manifest.json").read_text()) == {"files": ["bundle.json"]}


def test_the_files_are_encrypted_at_rest(
    repository: RunningRepository, north: Tenant, tmp_path: Path
) -> None:
    deliver_package(north, tmp_path, "south/41")
    on_disk = repository_storage().path("north/south/41/bundle.json").read_bytes()
    assert b"resourceType" not in on_disk


@pytest.mark.parametrize("who", ["other payer's key", "unknown key", "expired key", "revoked key"])
def test_keys_that_are_not_north_s_active_keys_cannot_sign_in_as_north(
    who: str, repository: RunningRepository, north: Tenant, south_system: SystemKey,
    tmp_path: Path,
) -> None:  # fmt: skip
    if who == "other payer's key":
        key = south_system.key
    elif who == "unknown key":
        key = client_key(tmp_path, "stray")
    elif who == "expired key":
        key = register_system_key(
            north, tmp_path, "expired", expires_at=timezone.now() - timezone.timedelta(minutes=1)
        ).key
    else:
        revoked = register_system_key(north, tmp_path, "revoked")
        repository_key_revoke(key=revoked.row, revoked_by=north.admin)
        key = revoked.key
    with pytest.raises(paramiko.AuthenticationException), paramiko_sftp(repository, "north", key):
        pass
    result = openssh_sftp(repository, "north", key, "ls /\n", cwd=tmp_path)
    assert result.returncode != 0
    assert "Permission denied (publickey)" in result.stderr


def test_passwords_are_not_accepted(repository: RunningRepository, north: Tenant) -> None:
    transport = paramiko_transport(repository)
    try:
        with pytest.raises(paramiko.BadAuthenticationType) as refused:
            transport.auth_password("north", "north")
        assert refused.value.allowed_types == ["publickey"]
    finally:
        transport.close()


def test_a_source_restriction_keeps_the_key_to_its_networks(
    repository: RunningRepository, north: Tenant, tmp_path: Path
) -> None:
    elsewhere = register_system_key(north, tmp_path, "dc-east", allowed_sources=["10.20.0.0/16"])
    here = register_system_key(north, tmp_path, "loopback", allowed_sources=["127.0.0.0/8"])
    with (
        pytest.raises(paramiko.AuthenticationException),
        paramiko_sftp(repository, "north", elsewhere.key),
    ):
        pass
    with paramiko_sftp(repository, "north", here.key) as sftp:
        assert sftp.listdir("/") == []


ESCAPES = [
    "/..", "..", "../south", "/../south/north", "south/41/../../..", "../../../../etc/passwd",
    "/etc/passwd", "..%2f..%2fsouth", "%2e%2e/south", "..\\south", "south/41/..\\..\\..",
    "/south/41/bundle.json.uploading", "/south/41/bundle.json.partial", "south/\u2025/x",
]  # fmt: skip


def test_no_path_reaches_outside_the_payers_folder(
    repository: RunningRepository, both_delivered: None, north_system: SystemKey, tmp_path: Path
) -> None:
    with paramiko_sftp(repository, "north", north_system.key) as sftp:
        for path in ESCAPES:
            for attempt in (sftp.stat, sftp.listdir, sftp.open, sftp.remove):
                with pytest.raises(OSError):
                    attempt(path)
            if path.split("/")[0] == "..":
                with pytest.raises(PermissionError):
                    sftp.normalize(path)
        # The raw protocol, bypassing the client's own path handling: a NUL byte, bad UTF-8.
        for raw in (b"/south/41/bundle.json\x00.txt", b"/\xff\xfe/bundle.json"):
            with pytest.raises(OSError):
                sftp._request(paramiko.sftp.CMD_STAT, raw)
    assert repository_storage().exists("south/north/77/bundle.json")
    result = openssh_sftp(
        repository, "north", north_system.key, "get ../south/north/77/bundle.json\n", cwd=tmp_path
    )
    assert result.returncode != 0
    assert not (tmp_path / "bundle.json").exists()


def test_nothing_can_be_written_renamed_linked_or_changed(
    repository: RunningRepository, north: Tenant, north_system: SystemKey, tmp_path: Path
) -> None:
    deliver_package(north, tmp_path, "south/41")
    upload = tmp_path / "upload.json"
    upload.write_text("{}")
    with paramiko_sftp(repository, "north", north_system.key) as sftp:
        refused = [
            lambda: sftp.put(str(upload), "/upload.json"),
            lambda: sftp.open("/south/41/bundle.json", "r+"),
            lambda: sftp.open("/south/41/bundle.json", "a"),
            lambda: sftp.mkdir("/inbox"),
            lambda: sftp.rmdir("/south/41"),
            lambda: sftp.rename("/south/41/bundle.json", "/bundle.json"),
            lambda: sftp.posix_rename("/south/41/bundle.json", "/south/41/b.json"),
            lambda: sftp.symlink("/south/41/bundle.json", "/link"),
            lambda: sftp.chmod("/south/41/bundle.json", 0o777),
            lambda: sftp.utime("/south/41/bundle.json", (0, 0)),
        ]
        for operation in refused:
            with pytest.raises(PermissionError):
                operation()
        assert sftp.listdir("/south/41") == ["bundle.json", "manifest.json"]
    result = openssh_sftp(repository, "north", north_system.key, f"put {upload}\n", cwd=tmp_path)
    assert result.returncode != 0
    assert "Permission denied" in result.stderr
    assert repository_storage().read_bytes("north/south/41/bundle.json") == BUNDLE


def test_a_file_being_delivered_is_never_visible_half_written(
    repository: RunningRepository, north: Tenant, north_system: SystemKey, tmp_path: Path
) -> None:
    storage = repository_storage()
    with paramiko_sftp(repository, "north", north_system.key) as sftp:
        # The delivery protocol's temporary name, being written by PayloadStorage...
        with storage.writer("north/south/41/bundle.json.uploading") as writer:
            writer.write(BUNDLE[: len(BUNDLE) // 2])
            assert sftp.listdir("/south/41") == []
            with pytest.raises(FileNotFoundError):
                sftp.stat("/south/41/bundle.json.uploading")
            writer.write(BUNDLE[len(BUNDLE) // 2 :])
        # ...and complete but not yet renamed: still invisible.
        assert sftp.listdir("/south/41") == []
        with pytest.raises(FileNotFoundError):
            sftp.open("/south/41/bundle.json")
        deliver_package(north, tmp_path, "south/41")
        assert sftp.listdir("/south/41") == ["bundle.json", "manifest.json"]


def test_reads_and_removals_are_audited_and_a_collected_file_is_marked(
    repository: RunningRepository, north: Tenant, north_system: SystemKey, tmp_path: Path
) -> None:
    deliver_package(north, tmp_path, "south/41")
    with paramiko_sftp(repository, "north", north_system.key) as sftp:
        with sftp.open("/south/41/manifest.json") as remote:
            remote.read(5)
        with sftp.open("/south/41/bundle.json") as remote:
            remote.prefetch()
            assert remote.read() == BUNDLE
        sftp.remove("/south/41/manifest.json")
        assert sftp.listdir("/south/41") == ["bundle.json"]
    reads = AuditEvent.objects.for_payer(north.payer).filter(action="sftp_repository.file_read")
    by_file = {event.changes["file"]: event for event in reads}
    assert by_file["south/41/bundle.json"].changes | {} == {
        "file": "south/41/bundle.json", "size": len(BUNDLE), "bytes_read": len(BUNDLE),
        "complete": True, "key_fingerprint": north_system.row.fingerprint,
        "key_label": "north-collector",
    }  # fmt: skip
    assert by_file["south/41/manifest.json"].changes["complete"] is False
    assert by_file["south/41/bundle.json"].actor_label == "sftp-key:north-collector"
    assert by_file["south/41/bundle.json"].client_address == "127.0.0.1"
    removal = AuditEvent.objects.for_payer(north.payer).get(action="sftp_repository.file_removed")
    assert removal.changes["file"] == "south/41/manifest.json"
    assert removal.changes["key_fingerprint"] == north_system.row.fingerprint
    assert not repository_storage().exists("north/south/41/manifest.json")
    bundle = RepositoryFile.objects.for_payer(north.payer).get(path="south/41/bundle.json")
    assert bundle.collected_at is not None
    assert not RepositoryFile.objects.for_payer(north.payer).filter(path="south/41/manifest.json")


def test_openssh_downloads_and_removals_are_audited_too(
    repository: RunningRepository, north: Tenant, north_system: SystemKey, tmp_path: Path
) -> None:
    deliver_package(north, tmp_path, "south/41")
    result = openssh_sftp(
        repository, "north", north_system.key,
        "get /south/41/bundle.json\nrm /south/41/bundle.json\n", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    actions = list(
        AuditEvent.objects.for_payer(north.payer)
        .filter(action__startswith="sftp_repository.file_")
        .order_by("id")
        .values_list("action", "changes__complete")
    )
    assert actions == [("sftp_repository.file_read", True), ("sftp_repository.file_removed", None)]


def test_a_garbage_packet_closes_only_that_connection(
    repository: RunningRepository, north: Tenant, north_system: SystemKey
) -> None:
    with paramiko_sftp(repository, "north", north_system.key) as sftp:
        with socket.create_connection(("127.0.0.1", repository.port), timeout=10) as raw:
            raw.recv(256)  # the server's version banner
            raw.sendall(b"SSH-2.0-fuzzer\r\n" + os.urandom(64) + b"\x00\x00\xff\xff" * 64)
            deadline = time.monotonic() + 10
            received = b""
            while time.monotonic() < deadline:
                chunk = raw.recv(4096)
                if not chunk:
                    break
                received += chunk
            else:
                pytest.fail("the server kept the garbage connection open")
        assert sftp.listdir("/") == []


def test_a_shell_or_command_is_refused(
    repository: RunningRepository, north: Tenant, north_system: SystemKey
) -> None:
    transport = paramiko_transport(repository)
    try:
        transport.auth_publickey("north", north_system.key.pkey)
        channel = transport.open_session()
        channel.exec_command("cat /etc/passwd")
        assert channel.recv_exit_status() != 0
        assert channel.recv(1024) == b""
    except paramiko.SSHException:
        pass  # refusing the channel request outright is as good
    finally:
        transport.close()


def test_a_link_planted_on_disk_is_never_followed(
    repository: RunningRepository, both_delivered: None, north_system: SystemKey
) -> None:
    root = Path(repository_storage().root)
    north_folder = root / "north" / "south" / "41"
    # Someone with access to the disk links into South's folder: a folder, a file, and a
    # file inside North's own folder (refused too: the hub itself never writes a link).
    (root / "north" / "elsewhere").symlink_to(root / "south")
    (north_folder / "stolen.json").symlink_to(root / "south" / "north" / "77" / "bundle.json")
    (north_folder / "copy.json").symlink_to(north_folder / "bundle.json")
    with paramiko_sftp(repository, "north", north_system.key) as sftp:
        assert sftp.listdir("/") == ["south"]
        assert sftp.listdir("/south/41") == ["bundle.json", "manifest.json"]
        for path in (
            "/elsewhere", "/elsewhere/north/77/bundle.json", "/south/41/stolen.json",
            "/south/41/copy.json",
        ):  # fmt: skip
            for attempt in (sftp.stat, sftp.lstat, sftp.listdir, sftp.open, sftp.remove):
                with pytest.raises(PermissionError, match="link"):
                    attempt(path)
        with sftp.open("/south/41/bundle.json") as remote:
            assert remote.read() == BUNDLE
    assert (north_folder / "stolen.json").is_symlink()
    assert repository_storage().read_bytes("south/north/77/bundle.json") == (
        b"South's member, not North's"
    )


def test_revoking_a_key_ends_the_sessions_it_opened(
    repository: RunningRepository,
    both_delivered: None,
    north: Tenant,
    north_system: SystemKey,
    south_system: SystemKey,
    tmp_path: Path,
) -> None:
    other = register_system_key(north, tmp_path, "north-second-collector")
    # Sessions of two payers are live: the server checks all their keys together.
    with (
        paramiko_sftp(repository, "north", north_system.key) as revoked,
        paramiko_sftp(repository, "north", other.key) as kept,
        paramiko_sftp(repository, "south", south_system.key) as southern,
    ):
        assert revoked.listdir("/south/41") == ["bundle.json", "manifest.json"]
        repository_key_revoke(key=north_system.row, revoked_by=north.admin)
        transport = revoked.get_channel().get_transport()
        deadline = time.monotonic() + 5
        while transport.is_active() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not transport.is_active()
        with pytest.raises((OSError, EOFError, paramiko.SSHException)):
            revoked.listdir("/south/41")
        # The payer's other key goes on working, and so does the other payer's.
        assert kept.listdir("/south/41") == ["bundle.json", "manifest.json"]
        assert southern.listdir("/north/77") == ["bundle.json", "manifest.json"]

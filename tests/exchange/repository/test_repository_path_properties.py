"""Property-based fuzzing (hypothesis) of the paths a payer's system sends the SFTP repository:
``..``, absolute paths, NUL, very long names, unicode, the names of files still being
delivered, a link planted on disk, trailing slashes — through paramiko against the running
server (one server and one signed-in session for all examples).

Each operation answers with an SFTP status (paramiko raises OSError, PermissionError or
FileNotFoundError with the server's reason) or with a result from North's own folder; the
session stays up; and nothing outside North's folder changes, South's least of all.

How many examples: tests/support/fuzz.py.
"""

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paramiko
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from exchange.repository.storage import repository_storage
from tests.conftest import Tenant
from tests.exchange.repository.conftest import SystemKey
from tests.exchange.repository.harness import RunningRepository, paramiko_sftp
from tests.exchange.repository.test_repository_server import deliver_package
from tests.support.fuzz import fuzz_requests, hostile_text, unicode_text

pytestmark = pytest.mark.django_db(transaction=True)

NAMES = [
    "south", "41", "bundle.json", "manifest.json", "north", "77", "..", ".", "", "elsewhere",
    "bundle.json.uploading", "bundle.json.partial", "%2e%2e", "..\\south", "\u2025", "a" * 300,
]  # fmt: skip
# North's own files, and South's through the planted link.
SEEDS = [
    "/south/41/bundle.json", "south/41/manifest.json", "/south/41/", "/",
    "/elsewhere/north/77/bundle.json", "elsewhere/north/77/",
]  # fmt: skip
paths = (
    st.sampled_from(SEEDS)
    | st.builds(
        lambda lead, parts, trail: lead + "/".join(parts) + trail,
        st.sampled_from(["", "/", "//", "./"]),
        st.lists(st.sampled_from(NAMES) | unicode_text, max_size=6),
        st.sampled_from(["", "/", "/.", "/.."]),
    )
    | hostile_text
)
OPERATIONS: dict[str, Callable[[paramiko.SFTPClient, str, str], Any]] = {
    "stat": lambda sftp, path, _: sftp.stat(path),
    "lstat": lambda sftp, path, _: sftp.lstat(path),
    "listdir": lambda sftp, path, _: sftp.listdir(path),
    "read": lambda sftp, path, _: _read(sftp, path),
    "remove": lambda sftp, path, _: sftp.remove(path),
    "rename": lambda sftp, path, other: sftp.rename(path, other),
    "posix_rename": lambda sftp, path, other: sftp.posix_rename(path, other),
    "readlink": lambda sftp, path, _: sftp.readlink(path),
    "normalize": lambda sftp, path, _: sftp.normalize(path),
}


def _read(sftp: paramiko.SFTPClient, path: str) -> bytes:
    with sftp.open(path) as remote:
        return bytes(remote.read())


def _files(root: Path) -> dict[str, bytes]:
    """Return every file and link under ``root`` as stored (a link as its target), by path."""
    found = {}
    for folder, folders, names in os.walk(root):
        for name in folders + names:
            path = Path(folder) / name
            if path.is_symlink():
                found[str(path.relative_to(root))] = os.readlink(path).encode()
            elif path.is_file():
                found[str(path.relative_to(root))] = path.read_bytes()
    return found


@pytest.fixture
def north_session(
    repository: RunningRepository, north: Tenant, south: Tenant, north_system: SystemKey,
    tmp_path: Path,
) -> Iterator[paramiko.SFTPClient]:  # fmt: skip
    """North's system signed in, with North's and South's deliveries and a link planted in
    North's folder that points into South's."""
    deliver_package(north, tmp_path, "south/41")
    deliver_package(south, tmp_path, "north/77", bundle=b"South's member, not North's")
    root = Path(repository_storage().root)
    (root / "north" / "elsewhere").symlink_to(root / "south")
    with paramiko_sftp(repository, "north", north_system.key) as sftp:
        yield sftp


@fuzz_requests
@given(
    operations=st.lists(
        st.tuples(st.sampled_from(sorted(OPERATIONS)), paths, paths), min_size=1, max_size=6
    )
)
def test_any_path_gets_an_sftp_status_or_north_s_own_files(
    north_session: paramiko.SFTPClient,
    north: Tenant,
    tmp_path: Path,
    operations: list[tuple[str, str, str]],
) -> None:
    storage = repository_storage()
    root = Path(storage.root)
    before = _files(root)
    north_names = {
        part for path in before if path.startswith("north/") for part in path.split("/")[1:]
    }
    north_contents = {storage.read_bytes(stored.name) for stored in storage.files("north")}
    for name, path, other in operations:
        try:
            result = OPERATIONS[name](north_session, path, other)
        except OSError as exc:
            # The server's own reason, not asyncssh's wrapper of an exception it did not expect.
            assert "Uncaught exception" not in str(exc), (name, path, exc)
            event(f"{name}: {type(exc).__name__}")
            continue
        event(f"{name}: answered")
        assert name not in ("rename", "posix_rename"), (name, path, other)
        if name in ("stat", "lstat"):
            sizes = {len(content) for content in north_contents}
            assert stat.S_ISDIR(result.st_mode) or result.st_size in sizes, (name, path)
        elif name == "listdir":
            assert set(result) <= north_names, (path, result)
        elif name == "read":
            assert result in north_contents, path
        elif name == "normalize":
            assert result.startswith("/"), (path, result)

    assert north_session.listdir("/") == ["south"]  # the session is still up
    after = _files(root)
    assert {p: d for p, d in after.items() if not p.startswith("north/")} == {
        p: d for p, d in before.items() if not p.startswith("north/")
    }
    # North's system may remove North's own delivered files, nothing else of its folder.
    assert after.items() <= before.items()
    assert "north/elsewhere" in after
    if after != before:
        deliver_package(north, tmp_path, "south/41")

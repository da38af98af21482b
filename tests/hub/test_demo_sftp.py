"""The demo's printed `sftp` line works without a terminal: the host key is pinned, no prompt."""

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.demo import known_hosts_write, sftp_command
from tests.conftest import Tenant
from tests.exchange.repository.conftest import register_system_key
from tests.exchange.repository.harness import RunningRepository, running_repository

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def repository(transactional_db: None, tmp_path: Path) -> Iterator[RunningRepository]:
    """The hub's SFTP repository in this process, its host key in ``tmp_path/host_key``."""
    with running_repository(workdir=tmp_path) as running:
        yield running


def test_the_printed_sftp_command_signs_in_non_interactively(
    repository: RunningRepository, north: Tenant, tmp_path: Path
) -> None:
    system = register_system_key(north, tmp_path, "demo-collector")
    known_hosts = tmp_path / "demo_known_hosts"

    line = known_hosts_write(
        tmp_path / "host_key", port=repository.port, destination=known_hosts, give_up=lambda: False
    )

    assert line == f"[127.0.0.1]:{repository.port} {repository.host_key_line}"
    command = sftp_command(
        port=repository.port, key=str(system.key.path), known_hosts=str(known_hosts)
    )
    # Batch mode fails instead of asking anything, so a host key prompt would fail the test.
    result = subprocess.run(
        [command[0], "-b", "-", *command[1:]],
        input="ls /\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "sftp> ls /" in result.stdout

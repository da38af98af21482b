"""``manage.py sftp_repository`` starts the server with a persistent, private host key."""

import os
import signal
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from exchange.delivery.sftp import sftp_host_key_fetch
from exchange.repository.host_key import repository_host_key_fingerprint, repository_host_key_line
from exchange.repository.models import RepositoryKey
from hub.models import AuditEvent
from tests.conftest import Tenant
from tests.exchange.repository.harness import client_key
from tests.support.net import free_loopback_port, wait_until_listening


def _serve(port: int, key_file: Path, tmp_path: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "SFTP_REPOSITORY_HOST_KEY_FILE": str(key_file),
        "SFTP_REPOSITORY_DIR": str(tmp_path / "repository"),
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "sftp_repository", "--host", "127.0.0.1", "--port", str(port)],
        cwd=settings.BASE_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    output, errors = process.communicate(timeout=20)
    assert process.returncode == 0, errors
    return output


def test_the_command_serves_with_a_host_key_made_once_and_kept_private(tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "host_key"
    port = free_loopback_port()
    process = _serve(port, key_file, tmp_path)
    try:
        wait_until_listening(port)
        served = sftp_host_key_fetch(host="127.0.0.1", port=port)
    finally:
        output = _stop(process)
    assert key_file.stat().st_mode & 0o777 == 0o600
    line = repository_host_key_line(path=key_file)
    assert line is not None and served == line
    fingerprint = repository_host_key_fingerprint(path=key_file)
    assert fingerprint is not None and fingerprint.startswith("SHA256:")
    assert f"listening on 127.0.0.1:{port}" in output and fingerprint in output

    # A restart keeps the same key, so the payers' pinned known_hosts stay valid.
    port = free_loopback_port()
    process = _serve(port, key_file, tmp_path)
    try:
        wait_until_listening(port)
        assert sftp_host_key_fetch(host="127.0.0.1", port=port) == line
    finally:
        _stop(process)


def test_a_host_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    key_file = tmp_path / "host_key"
    port = free_loopback_port()
    process = _serve(port, key_file, tmp_path)
    try:
        wait_until_listening(port)
    finally:
        _stop(process)
    key_file.chmod(0o644)
    result = subprocess.run(
        [sys.executable, "manage.py", "sftp_repository", "--port", str(free_loopback_port())],
        cwd=settings.BASE_DIR, capture_output=True, text=True, timeout=60,
        env={**os.environ, "SFTP_REPOSITORY_HOST_KEY_FILE": str(key_file)},
    )  # fmt: skip
    assert result.returncode != 0
    assert f"chmod 600 {key_file}" in result.stderr


def test_an_operator_registers_a_key_from_the_console_once(north: Tenant, tmp_path: Path) -> None:
    key = client_key(tmp_path, "console")
    public_file = tmp_path / "console.pub"
    public_file.write_text(key.public_line + " ops@north\n")
    out = StringIO()
    call_command("sftp_repository_key", "--payer", "north", "--label", "ops box",
                 "--public-key-file", str(public_file), stdout=out)  # fmt: skip
    call_command("sftp_repository_key", "--payer", "north", "--label", "ops box",
                 "--public-key-file", str(public_file), stdout=out)  # fmt: skip
    row = RepositoryKey.objects.for_payer(north.payer).get()
    assert row.label == "ops box" and row.created_by is None
    assert "already registered" in out.getvalue()
    event = AuditEvent.objects.for_payer(north.payer).get(action="sftp_repository.key_registered")
    assert event.actor_label == "console"
    with pytest.raises(CommandError, match="no payer with the slug 'nowhere'"):
        call_command("sftp_repository_key", "--payer", "nowhere", "--label", "x",
                     "--public-key-file", str(public_file))  # fmt: skip
    public_file.write_text("ssh-rsa AAAA")
    with pytest.raises(CommandError, match=r"console\.pub"):
        call_command("sftp_repository_key", "--payer", "north", "--label", "x",
                     "--public-key-file", str(public_file))  # fmt: skip

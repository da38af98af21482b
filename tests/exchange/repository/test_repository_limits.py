"""Limits per source address and per payer, and the idle timeout: one client cannot starve others."""

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from pytest_django.fixtures import Settings

from tests.conftest import Tenant
from tests.exchange.repository.conftest import SystemKey
from tests.exchange.repository.harness import (
    RunningRepository,
    client_key,
    paramiko_sftp,
    paramiko_transport,
    running_repository,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def limited_repository(
    transactional_db: None, settings: Settings, tmp_path: Path
) -> Iterator[RunningRepository]:
    settings.SFTP_REPOSITORY_DIR = tmp_path / "repository"
    settings.SFTP_REPOSITORY_MAX_SESSIONS_PER_PAYER = 2
    settings.SFTP_REPOSITORY_MAX_AUTH_FAILURES_PER_ADDRESS = 3
    settings.SFTP_REPOSITORY_MAX_CONNECTIONS_PER_ADDRESS = 4
    with running_repository(workdir=tmp_path) as running:
        yield running


def _wait_closed(transport: paramiko.Transport, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while transport.is_active() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not transport.is_active()


def _eventually_lists(repository: RunningRepository, system: SystemKey) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            with paramiko_sftp(repository, "north", system.key) as sftp:
                assert sftp.listdir("/") == []
            return
        except (paramiko.SSHException, EOFError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_a_payer_gets_at_most_its_share_of_sessions(
    limited_repository: RunningRepository, north: Tenant, north_system: SystemKey
) -> None:
    with (
        paramiko_sftp(limited_repository, "north", north_system.key) as first,
        paramiko_sftp(limited_repository, "north", north_system.key) as second,
    ):
        third = paramiko_transport(limited_repository)
        try:
            third.auth_publickey("north", north_system.key.pkey)
            assert _wait_closed(third), "a third session of North stayed open"
        except (paramiko.SSHException, EOFError):
            pass
        finally:
            third.close()
        assert first.listdir("/") == [] and second.listdir("/") == []
    # Closing sessions frees the places again (once the server has seen them close).
    _eventually_lists(limited_repository, north_system)


def test_an_address_that_keeps_failing_is_refused_even_with_a_good_key(
    limited_repository: RunningRepository, north: Tenant, north_system: SystemKey, tmp_path: Path
) -> None:
    stranger = client_key(tmp_path, "stranger")
    for _ in range(3):
        with (
            pytest.raises(paramiko.AuthenticationException),
            paramiko_sftp(limited_repository, "north", stranger),
        ):
            pass
    with (
        pytest.raises((paramiko.SSHException, EOFError, OSError)),
        paramiko_sftp(limited_repository, "north", north_system.key),
    ):
        pass


def test_connections_per_address_are_capped(
    limited_repository: RunningRepository, north: Tenant, north_system: SystemKey
) -> None:
    idle = [socket.create_connection(("127.0.0.1", limited_repository.port)) for _ in range(4)]
    try:
        with (
            pytest.raises((paramiko.SSHException, EOFError, OSError)),
            paramiko_sftp(limited_repository, "north", north_system.key),
        ):
            pass
    finally:
        for sock in idle:
            sock.close()
    _eventually_lists(limited_repository, north_system)


def test_an_idle_session_is_closed(
    limited_repository: RunningRepository, north: Tenant, north_system: SystemKey,
    settings: Settings,
) -> None:  # fmt: skip
    settings.SFTP_REPOSITORY_IDLE_TIMEOUT_SECONDS = 1
    with paramiko_sftp(limited_repository, "north", north_system.key) as sftp:
        sftp.listdir("/")
        assert _wait_closed(sftp.get_channel().get_transport())

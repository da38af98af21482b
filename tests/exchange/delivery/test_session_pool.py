"""A worker keeps its SFTP session to a payer's server between deliveries, safely."""

from collections.abc import Iterator

import pytest

from exchange.delivery import session_pool
from exchange.delivery.session_pool import pooled_sessions_close, pooled_sftp_session
from hub.models import SftpDestination
from tests.conftest import Tenant
from tests.support.exchange_setup import sftp_push_configure
from tests.support.sshd import SftpServer


@pytest.fixture
def destination(north: Tenant, sftp_server: SftpServer) -> Iterator[SftpDestination]:
    yield sftp_push_configure(payer=north.payer, sftp_server=sftp_server)
    pooled_sessions_close()


def test_the_next_delivery_takes_the_session_the_last_one_kept(
    destination: SftpDestination,
) -> None:
    with pooled_sftp_session(destination) as first:
        first.listdir(".")
    with pooled_sftp_session(destination) as second:
        second.listdir(".")

    assert second is first


def test_a_session_the_server_dropped_is_replaced_by_a_new_one(
    destination: SftpDestination,
) -> None:
    with pooled_sftp_session(destination) as first:
        pass
    first.get_channel().get_transport().close()

    with pooled_sftp_session(destination) as second:
        assert second.listdir(".") is not None

    assert second is not first


def test_a_session_whose_work_failed_is_not_kept(destination: SftpDestination) -> None:
    with pytest.raises(OSError), pooled_sftp_session(destination) as first:
        first.stat("no-such-file")

    with pooled_sftp_session(destination) as second:
        pass

    assert second is not first
    assert not first.get_channel().get_transport().is_active()


def test_other_credentials_or_an_idle_session_past_its_time_get_a_new_session(
    destination: SftpDestination, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pooled_sftp_session(destination) as first:
        pass
    destination.host_key = destination.host_key + " "  # the pin re-entered: another identity
    with pooled_sftp_session(destination) as other:
        pass
    monkeypatch.setattr(session_pool, "IDLE_SECONDS", 0.0)
    destination.refresh_from_db()
    with pooled_sftp_session(destination) as after_idle:
        pass

    assert other is not first
    assert after_idle is not first
    assert not first.get_channel().get_transport().is_active()

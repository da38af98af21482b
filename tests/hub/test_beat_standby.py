"""Two beats: the one holding the beat lock sends the periodic tasks, the other waits as its
standby and takes over when it dies or loses its database session (hub/beat_scheduler.py)."""

import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from hub.beat_scheduler import BEAT_LOCK_KEY, ExclusiveDatabaseScheduler
from hub.celery import app as celery_app
from tests.support.celery_worker import queues_declare, running_beat, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

STANDBY_RETRY_SECONDS = 1


@pytest.fixture
def broker(empty_broker: None) -> Iterator[redis.Redis]:
    """The test broker, empty, its queues declared."""
    queues_declare()
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    yield client
    client.close()


@pytest.fixture
def probe() -> PeriodicTask:
    """A periodic task due every second, last run an hour ago: due now."""
    return PeriodicTask.objects.create(
        name="standby-probe",
        task="hub.retire_expired_signing_keys",
        interval=IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS),
        last_run_at=timezone.now() - timedelta(hours=1),
    )


def _senders(broker: redis.Redis) -> list[int]:
    """Return the process id of the sender of each message in the queue ``default``."""
    # Celery's message protocol 2 names the sending process in the header "origin",
    # "gen<pid>@<host>"; the Redis transport keeps a queue as a list of that name.
    return [
        int(json.loads(message)["headers"]["origin"].split("@")[0].removeprefix("gen"))
        for message in broker.lrange("default", 0, -1)
    ]


def test_only_the_beat_holding_the_lock_sends_and_its_standby_takes_over_when_it_dies(
    broker: redis.Redis, probe: PeriodicTask, tmp_path: Path
) -> None:
    environment = {"BEAT_STANDBY_RETRY_SECONDS": str(STANDBY_RETRY_SECONDS)}
    with (
        running_beat(log=tmp_path / "first.log", **environment) as first,
        running_beat(log=tmp_path / "second.log", **environment) as second,
    ):
        logs = {first.pid: tmp_path / "first.log", second.pid: tmp_path / "second.log"}
        # Both beats have started and settled who sends before anything is counted.
        wait_for(
            lambda: all(
                "Beat active" in log.read_text() or "Beat standby" in log.read_text()
                for log in logs.values()
            )
        )
        # Two more sends of the probe due every second, the standby trying every second.
        sent_before = len(_senders(broker))
        wait_for(lambda: len(_senders(broker)) >= sent_before + 2)
        senders = set(_senders(broker))
        assert len(senders) == 1, f"both beats sent: {senders}"
        (active,) = senders
        (standby,) = set(logs) - senders
        assert "Beat active" in logs[active].read_text()
        assert "Beat standby" in logs[standby].read_text()

        os.kill(active, signal.SIGKILL)
        # PostgreSQL ends the dead beat's session, which frees the lock: the standby takes it
        # at its next try (and then sets up the schedule, a second of work on a busy machine).
        wait_for(lambda: standby in _senders(broker), timeout=STANDBY_RETRY_SECONDS + 5)
        assert "Beat active" in logs[standby].read_text()


def test_a_beat_stopped_in_the_middle_of_a_query_exits_and_frees_the_lock(
    broker: redis.Redis, probe: PeriodicTask, tmp_path: Path
) -> None:
    log = tmp_path / "beat.log"
    with running_beat(log=log) as beat:
        # Sent twice: the beat ticks, and has a last run to record when it stops (it records the
        # first at once, the next ones every few minutes).
        wait_for(lambda: len(_senders(broker)) >= 2)
        # Beat reads this table at every tick: locked, the next read waits in the middle of its
        # query, and that is where the process manager's SIGTERM finds it.
        blocker = psycopg.connect(**connection.get_connection_params())
        try:
            blocker.execute("LOCK TABLE django_celery_beat_periodictasks IN ACCESS EXCLUSIVE MODE")
            wait_for(lambda: _queries_waiting_on_a_lock() == 1)
            beat.send_signal(signal.SIGTERM)
            time.sleep(1)  # the signal finds the query still waiting
        finally:
            blocker.rollback()
            blocker.close()
        # Celery's own handler recorded the last runs inside the signal handler, on the
        # connection the interrupted query still held: it waited for ever.
        assert beat.wait(timeout=15) == 0
    assert _advisory_locks_held() == 0
    # It recorded every run it sent before it stopped.
    probe.refresh_from_db()
    assert probe.total_run_count == len(_senders(broker))


def test_a_beat_whose_session_ends_stops_sending_until_it_holds_the_lock_again(
    broker: redis.Redis, probe: PeriodicTask
) -> None:
    beat = ExclusiveDatabaseScheduler(app=celery_app)
    try:
        assert beat.tick() == 0  # sent the probe
        assert _senders(broker) == [os.getpid()]

        # The beat's database session ends (a restart, a network fault, an operator), and
        # another beat takes the lock before this one checks it again.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks"
                " WHERE locktype = 'advisory' AND database = %s"
                " AND (classid::bigint << 32 | objid::bigint) = %s",
                [_database_oid(), BEAT_LOCK_KEY],
            )
        rival = psycopg.connect(**connection.get_connection_params(), autocommit=True)
        try:
            wait_for(
                lambda: (
                    rival.execute("SELECT pg_try_advisory_lock(%s)", [BEAT_LOCK_KEY]).fetchone()
                    == (True,)
                ),
                timeout=5,
            )
            time.sleep(1.1)  # the probe is due again
            assert beat.tick() == settings.BEAT_STANDBY_RETRY_SECONDS
            assert beat.tick() == settings.BEAT_STANDBY_RETRY_SECONDS
            assert len(_senders(broker)) == 1
        finally:
            rival.execute("SELECT pg_advisory_unlock(%s)", [BEAT_LOCK_KEY])
            rival.close()

        # The rival let go: this beat takes the lock at its next try and sends again.
        assert beat.tick() == 0
        assert len(_senders(broker)) == 2
    finally:
        beat.close()
    # Closed, it holds the lock no longer.
    assert _advisory_locks_held() == 0


def _advisory_locks_held() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = %s",
            [_database_oid()],
        )
        return int(cursor.fetchone()[0])


def _queries_waiting_on_a_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return int(cursor.fetchone()[0])


def _database_oid() -> int:
    # pg_locks shows every database of the server; other tests' may hold locks of their own.
    with connection.cursor() as cursor:
        cursor.execute("SELECT oid FROM pg_database WHERE datname = current_database()")
        return int(cursor.fetchone()[0])

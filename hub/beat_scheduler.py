"""The beat scheduler: one beat sends, a standby waits (README "Running on more than one machine").

Run a beat on each of two machines. The one that holds a PostgreSQL advisory lock sends the
periodic tasks; the other sends nothing and tries for the lock every
``BEAT_STANDBY_RETRY_SECONDS``. PostgreSQL releases a session-level advisory lock when the
session ends, so when the active beat dies its standby takes over within one retry.

With SQLite (the demo) there is one machine and one beat, and SQLite has no such lock: the
scheduler is then django-celery-beat's own.
"""

import contextlib
import logging
import threading
from types import FrameType
from typing import Any

import psycopg
from celery import platforms
from celery.signals import beat_init
from django.conf import settings
from django.db import connections
from django_celery_beat.schedulers import DatabaseScheduler

logger = logging.getLogger(__name__)

# The lock every beat of a hub asks for: "hub_beat" in ASCII, 0x6875625f62656174. Advisory
# locks belong to one database, so hubs on one PostgreSQL server do not meet.
BEAT_LOCK_KEY = int.from_bytes(b"hub_beat", "big")

# A bigint key shows in pg_locks as its high half (classid) and low half (objid).
_LOCK_HELD = """
    SELECT EXISTS (
        SELECT FROM pg_locks
        WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
          AND objsubid = 1 AND (classid::bigint << 32 | objid::bigint) = %s
    )
"""

# A beat that dies with its machine (power, network) closes nothing: the server's keepalives
# on the lock's session (quiet 10 s, then 3 probes 5 s apart), or its limit on unacknowledged
# data (25 s) if a reply was in flight, end the session and so free the lock within some 25 s,
# not the operating system's default of two hours.
_SERVER_TCP_OPTIONS = (
    "-c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3"
    " -c tcp_user_timeout=25000"
)


def _lock_connection_open() -> psycopg.Connection[Any]:
    """Open the session that holds the lock, with Django's connection parameters.

    Not Django's own connection: Django closes it when it is older than CONN_MAX_AGE or fails
    its health check, and django-celery-beat asks for that on every schedule check
    (``close_old_connections``); the session ending would free the lock under a beat that
    still sends. Autocommit: a session-level lock needs no transaction, and one left open
    between ticks would hold back VACUUM for as long as the beat runs.
    """
    params = connections["default"].get_connection_params()
    params["options"] = f"{params.get('options', '')} {_SERVER_TCP_OPTIONS}".strip()
    params.setdefault("connect_timeout", 10)
    return psycopg.connect(**params, autocommit=True)


class ExclusiveDatabaseScheduler(DatabaseScheduler):
    """django-celery-beat's scheduler, sending only while this beat holds the beat lock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._exclusive = connections["default"].vendor == "postgresql"
        self._lock_connection: psycopg.Connection[Any] | None = None
        self._active = False
        self._state_logged = ""
        super().__init__(*args, **kwargs)

    def setup_schedule(self) -> None:
        """Install the schedule if this beat is the active one; a standby writes nothing."""
        if not self._exclusive:
            logger.info("Beat on SQLite: one machine, so no standby lock; this beat sends")
            super().setup_schedule()
            return
        self._lock_take()

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Send what is due while this beat holds the lock; otherwise try for it, then wait."""
        if not self._exclusive:
            return super().tick(*args, **kwargs)
        if self._active and not self._lock_held():
            self._standby_after_loss()
        if not self._active and not self._lock_take():
            return float(settings.BEAT_STANDBY_RETRY_SECONDS)
        return super().tick(*args, **kwargs)

    def close(self) -> None:
        """Record the last runs, then free the lock at once rather than at process exit."""
        try:
            super().close()
        finally:
            self._lock_release()

    def _lock_release(self) -> None:
        # Unlock before closing: a closed connection's server process frees the lock only as it
        # exits, a moment after close() returns, and a standby asking meanwhile is refused.
        if self._active and self._lock_connection is not None:
            with contextlib.suppress(psycopg.Error):
                self._lock_connection.execute("SELECT pg_advisory_unlock(%s)", [BEAT_LOCK_KEY])
        self._active = False
        self._lock_connection_close()

    def _lock_take(self) -> bool:
        """Try for the lock; on success, become the active beat and return True."""
        try:
            if self._lock_connection is None:
                self._lock_connection = _lock_connection_open()
            row = self._lock_connection.execute(
                "SELECT pg_try_advisory_lock(%s)", [BEAT_LOCK_KEY]
            ).fetchone()
        except psycopg.Error as exc:
            self._lock_connection_close()
            self._state_log(
                "unreachable",
                logging.WARNING,
                "Beat standby: PostgreSQL cannot be reached for the beat lock (%s); "
                "trying again every %s s",
                exc,
                settings.BEAT_STANDBY_RETRY_SECONDS,
            )
            return False
        if not (row and row[0]):
            self._state_log(
                "standby",
                logging.INFO,
                "Beat standby: another beat holds the beat lock; trying again every %s s",
                settings.BEAT_STANDBY_RETRY_SECONDS,
            )
            return False
        self._active = True
        self._state_log(
            "active", logging.INFO, "Beat active: this beat holds the beat lock and sends"
        )
        # Read the schedule afresh: while this beat waited, the active one sent tasks and
        # recorded their last runs. Then install the standing jobs, as a beat does at start-up.
        self._initial_read = True
        self._heap = None
        super().setup_schedule()
        return True

    def _lock_held(self) -> bool:
        """Return whether the lock's session still holds the lock."""
        if self._lock_connection is None:
            return False
        try:
            row = self._lock_connection.execute(_LOCK_HELD, [BEAT_LOCK_KEY]).fetchone()
        except psycopg.Error:
            return False
        return bool(row and row[0])

    def _standby_after_loss(self) -> None:
        """Stop sending: the session that held the lock is gone, and a standby may hold it now."""
        logger.warning("Beat lost the beat lock (its database session ended): standby")
        self._lock_connection_close()
        self._active = False
        self._state_logged = ""
        # Last runs not yet recorded stay unrecorded: the beat that holds the lock now keeps
        # the record, and ours, written late, would go over its newer one.
        self._dirty.clear()

    def _lock_connection_close(self) -> None:
        if self._lock_connection is not None:
            self._lock_connection.close()
            self._lock_connection = None

    def _state_log(self, state: str, level: int, message: str, *args: object) -> None:
        # Once per change of state, not on every retry.
        if state != self._state_logged:
            logger.log(level, message, *args)
            self._state_logged = state


def _stop(signum: int, frame: FrameType | None) -> None:
    # Unwind the interrupted frame (psycopg cancels a query in flight and lets go of its
    # connection); celery's Service.start then records the last runs and closes the scheduler
    # in its own ``finally``.
    raise SystemExit()


@beat_init.connect
def _stop_signals_install(sender: object, **kwargs: object) -> None:
    """Replace celery's SIGTERM and SIGINT handler, which records the last runs inside itself.

    Arriving while beat waits on a query, that handler asked for the same database connection
    the interrupted query holds, and waited for it for ever: beat never stopped, and never let
    go of the beat lock. Beat sends ``beat_init`` once it has made its scheduler (so once this
    module is imported) and before its first tick.
    """
    # Signal handlers belong to the main thread; a beat embedded in a worker thread keeps
    # the worker's.
    if threading.current_thread() is threading.main_thread():
        platforms.signals.update(SIGTERM=_stop, SIGINT=_stop)

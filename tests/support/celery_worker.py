"""Real Celery worker and beat processes (not eager mode) on the test broker and database."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO

from django.db import connection

from hub.celery import app

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def running_worker(
    *, queues: str = "default,pull,screen,deliver,bulk", name: str = "test", **environment: str
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a worker on ``queues`` (every one by default), pointed at the test database; stop
    it afterwards. ``name`` tells several workers of one test apart.

    ``environment`` adds or overrides variables of the worker's environment.
    """
    with _celery_process(
        "worker", "--pool", "solo", "--queues", queues, "--hostname", f"{name}-{os.getpid()}@%h",
        "--without-gossip", "--without-mingle", "--loglevel", "WARNING",
        environment=environment,
    ) as process:  # fmt: skip
        yield process


@contextmanager
def running_beat(*, log: Path, **environment: str) -> Iterator[subprocess.Popen[bytes]]:
    """Start a beat pointed at the test database, its log (INFO) written to ``log``; stop it
    afterwards. ``environment`` adds or overrides variables of its environment."""
    with (
        log.open("wb") as output,
        _celery_process(
            "beat",
            "--loglevel",
            "INFO",
            environment={"LOG_LEVEL": "INFO", **environment},
            stdout=output,
        ) as process,
    ):
        yield process


@contextmanager
def _celery_process(
    *arguments: str, environment: dict[str, str], stdout: IO[bytes] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    db = connection.settings_dict
    env = {
        **os.environ,
        **environment,
        # The process must see the rows the test committed: the *test* database.
        "DATABASE_URL": f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "hub", *arguments],
        cwd=ROOT,
        env=env,
        stdout=stdout,
        stderr=subprocess.STDOUT if stdout else None,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                # Stuck in its shutdown on a machine pressed by other tests: left running, it
                # would take the next case's tasks (or hold the beat lock).
                process.kill()
                process.wait()


class ModuleWorker:
    """One worker kept for a test module's cases (each start costs seconds of the run).

    A case that stops or kills workers of its own calls ``stop`` first: two workers would
    share the work. A case that empties the broker (``empty_broker``) calls ``ready``
    after it: that also empties the queues' bindings the worker declared when it started.
    """

    def __init__(self, **environment: str) -> None:
        self._environment = environment
        self._stack: ExitStack | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def ready(self) -> None:
        """Declare the queues again and start the worker unless it runs."""
        queues_declare()
        if self._process is not None and self._process.poll() is not None:
            self.stop()
        if self._stack is None:
            self._stack = ExitStack()
            self._process = self._stack.enter_context(running_worker(**self._environment))

    def stop(self) -> None:
        """Stop the worker, if it runs."""
        if self._stack is not None:
            self._stack.close()
        self._stack = self._process = None


def queues_declare() -> None:
    """Declare the hub's queues on the test broker: emptying it (``empty_broker``) forgot
    them, and the Redis transport drops a message sent to a queue it does not know."""
    with app.connection_for_write() as broker:
        for queue in app.amqp.queues.values():
            queue.bind(broker.default_channel).declare()


def wait_for(predicate: object, *, timeout: float = 30.0) -> None:
    """Poll ``predicate()`` until it is true, or raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise TimeoutError(f"condition not met within {timeout:.0f}s")

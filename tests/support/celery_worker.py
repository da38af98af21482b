"""A real Celery worker process (not eager mode) consuming from the test broker."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def running_worker(
    *, queues: str = "default,pull,screen,deliver,bulk", name: str = "test", **environment: str
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a worker on ``queues`` (every one by default), pointed at the test database; stop
    it afterwards. ``name`` tells several workers of one test apart.

    ``environment`` adds or overrides variables of the worker's environment.
    """
    db = connection.settings_dict
    env = {
        **os.environ,
        **environment,
        # The worker must see the rows the test committed: the *test* database.
        "DATABASE_URL": f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "hub", "worker", "--pool", "solo",
         "--queues", queues, "--hostname", f"{name}-{os.getpid()}@%h",
         "--without-gossip", "--without-mingle", "--loglevel", "WARNING"],
        cwd=ROOT,
        env=env,
    )  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=20)


def wait_for(predicate: object, *, timeout: float = 30.0) -> None:
    """Poll ``predicate()`` until it is true, or raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise TimeoutError(f"condition not met within {timeout:.0f}s")

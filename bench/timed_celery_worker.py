"""A Celery worker (``--pool solo``) that writes down each task's start and end, for benchmarks.

bench/cohort_exchange.py starts it (``--workers`` of them, a TASK_LOG each) in place of
``celery -A hub worker`` so it can tell how the workers' time went: one JSON line per task
run in TASK_LOG (its name, arguments — ids only —, state, and start and end as
``time.time()``). Being ``--pool solo``, the process that runs every task is this one, so
its VmHWM in /proc is the worker's peak resident memory.

With ``--profile OUT`` the worker runs under cProfile — the main thread and every thread it
starts (the Bulk Data downloads run on a small thread pool), merged — and writes the stats
to OUT when it stops (SIGTERM: Celery's warm shutdown). cProfile slows the worker down a
lot, so a profiled run says where the time goes, never how long things take.

    python bench/timed_celery_worker.py TASK_LOG [--profile OUT] [--queues default,bulk]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
ALL_QUEUES = "default,pull,screen,deliver,bulk"


class TaskLog:
    """Append one JSON line per finished task run (start and end in seconds since the epoch)."""

    def __init__(self, path: Path) -> None:
        self._file: IO[str] = path.open("a", buffering=1, encoding="utf-8")
        self._started: dict[str, float] = {}

    def started(self, task_id: str) -> None:
        self._started[task_id] = time.time()

    def finished(self, task_id: str, name: str, args: Any, state: str | None) -> None:
        start = self._started.pop(task_id, None)
        if start is None:
            return
        self._file.write(
            json.dumps(
                {
                    "task": name,
                    "args": list(args or ()),
                    "state": state or "",
                    "start": start,
                    "end": time.time(),
                }
            )
            + "\n"
        )


def _thread_profiling(profiles: list[cProfile.Profile]) -> None:
    """Run every thread started from now on under a cProfile of its own, kept in profiles."""
    run = threading.Thread.run

    def profiled_run(thread: threading.Thread) -> None:
        profile = cProfile.Profile()
        profiles.append(profile)
        profile.enable()
        try:
            run(thread)
        finally:
            profile.disable()

    threading.Thread.run = profiled_run  # type: ignore[method-assign, assignment]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("task_log", type=Path)
    parser.add_argument("--profile", type=Path, help="write cProfile stats here on stopping")
    parser.add_argument("--queues", default=ALL_QUEUES)
    parser.add_argument("--loglevel", default="WARNING")
    args = parser.parse_args()

    os.chdir(ROOT)
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hub.settings")
    from celery.signals import task_postrun, task_prerun

    from hub.celery import app

    log = TaskLog(args.task_log)

    @task_prerun.connect(weak=False)
    def _task_started(task_id: str, **_: object) -> None:
        log.started(task_id)

    @task_postrun.connect(weak=False)
    def _task_finished(
        task_id: str, task: Any, args: Any = None, state: str | None = None, **_: object
    ) -> None:
        log.finished(task_id, task.name, args, state)

    argv = [
        "worker", "--pool", "solo", "--queues", args.queues,
        "--hostname", f"bench-{os.getpid()}@%h", "--without-gossip", "--without-mingle",
        "--loglevel", args.loglevel,
    ]  # fmt: skip
    if args.profile is None:
        app.worker_main(argv)
        return 0
    thread_profiles: list[cProfile.Profile] = []
    _thread_profiling(thread_profiles)
    profile = cProfile.Profile()
    profile.enable()
    try:
        app.worker_main(argv)
    finally:
        profile.disable()
        stats = pstats.Stats(profile)
        for other in thread_profiles:
            try:
                stats.add(other)
            except TypeError:  # a thread that ran no Python code: nothing to add
                continue
        stats.dump_stats(str(args.profile))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

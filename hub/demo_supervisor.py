"""Run the demo's processes, watch them, and stop them all in order (used by hub/demo.py).

Each child runs in a process group of its own, so the terminal's Ctrl-C reaches only the
launcher. Otherwise every process would get the SIGINT at once, die in any order, and the
launcher would take the first one gone for a crash. The launcher instead stops the
children itself, newest first, so the web app goes before the worker and services it uses.

Standard library only, like hub/demo.py: it runs before Django is set up.
"""

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType

# Celery's warm shutdown finishes the task at hand; a transfer that takes longer is
# interrupted and resumed by the reaper on the next start (STYLE.md §5).
STOP_TIMEOUT_SECONDS = 15.0
POLL_SECONDS = 0.5


class DemoSupervisor:
    """Start named commands, wait for a stop signal or a child's exit, stop them newest first."""

    def __init__(
        self,
        commands: Mapping[str, Sequence[str]],
        *,
        cwd: Path,
        env: Mapping[str, str],
        stop_timeout: float = STOP_TIMEOUT_SECONDS,
    ) -> None:
        self._commands = {name: list(command) for name, command in commands.items()}
        self._cwd = cwd
        self._env = dict(env)
        self._stop_timeout = stop_timeout
        self._processes: dict[str, subprocess.Popen[bytes]] = {}
        self._stop_requested = threading.Event()

    def install_signal_handlers(self) -> None:
        """Turn SIGINT (Ctrl-C) and SIGTERM into a request to stop, not an exception."""
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop_requested.set()

    def request_stop(self) -> None:
        """Ask :meth:`supervise` to stop everything, as a signal would."""
        self._stop_requested.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop_requested.is_set()

    def start(self) -> None:
        """Start every command, in the order given, each in a new process group."""
        for name, command in self._commands.items():
            if self.stop_requested:
                return
            self._processes[name] = subprocess.Popen(  # noqa: S603 (the demo's own commands)
                command, cwd=self._cwd, env=self._env, process_group=0
            )

    def exited(self) -> list[str]:
        """Return the names of the children that are no longer running."""
        return [name for name, process in self._processes.items() if process.poll() is not None]

    def wait(self) -> list[str]:
        """Block until a stop is requested (return ``[]``) or a child exits (return the exited)."""
        while not self._stop_requested.wait(timeout=POLL_SECONDS):
            if exited := self.exited():
                return exited
        return []

    def stop(self, *, announce: bool = False) -> None:
        """Stop every child, newest first: SIGTERM to its process group, SIGKILL after the timeout.

        The whole group, because gunicorn and Celery have workers of their own. Safe to
        call again: stopped children are skipped.
        """
        for name, process in reversed(list(self._processes.items())):
            if announce and process.poll() is None:
                print(f"Stopping {name}…", flush=True)
            _signal_group(process, signal.SIGTERM)
            try:
                process.wait(timeout=self._stop_timeout)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()

    def supervise(self) -> int:
        """Wait, stop everything and return the exit status: 0 when asked to stop, 1 on a crash."""
        exited = self.wait()
        if exited:
            print(f"Stopped because {', '.join(exited)} exited.", file=sys.stderr, flush=True)
        self.stop(announce=True)
        print("Demo stopped." if not exited else "Demo stopped after a failure.", flush=True)
        return 1 if exited else 0


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    # The leader's pid names its group (process_group=0); the group may outlive the leader.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)

"""The demo launcher's supervision: Ctrl-C stops every child in order and exits 0.

Driven with small dummy children instead of the real demo, which binds fixed ports.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from hub.demo_supervisor import DemoSupervisor

ROOT = Path(__file__).resolve().parents[2]


def _child(log: Path, name: str, *, ignore_sigterm: bool = False) -> list[str]:
    """Return a command that says it is ready, then on SIGTERM logs its name and exits."""
    on_term = (
        "signal.SIG_IGN"
        if ignore_sigterm
        else f"lambda *_: (open({str(log)!r}, 'a').write({name!r} + '\\n'), sys.exit(0))"
    )
    code = f"""
import signal, sys, time
signal.signal(signal.SIGTERM, {on_term})
open({str(log)!r}, 'a').write('ready ' + {name!r} + '\\n')
while True:
    time.sleep(0.1)
"""
    return [sys.executable, "-c", code]


def _wait_for_lines(log: Path, count: int) -> list[str]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        lines = log.read_text().splitlines() if log.exists() else []
        if len(lines) >= count:
            return lines
        time.sleep(0.05)
    raise AssertionError(f"{log} has {lines}, expected {count} lines")


def test_stop_ends_the_children_newest_first(tmp_path: Path) -> None:
    log = tmp_path / "log"
    supervisor = DemoSupervisor(
        {name: _child(log, name) for name in ("sandbox", "worker", "web")},
        cwd=tmp_path,
        env=os.environ,
    )
    supervisor.start()
    _wait_for_lines(log, 3)
    supervisor.request_stop()

    assert supervisor.supervise() == 0
    assert log.read_text().splitlines()[3:] == ["web", "worker", "sandbox"]
    assert supervisor.exited() == ["sandbox", "worker", "web"]


def test_a_child_that_ignores_sigterm_is_killed_after_the_timeout(tmp_path: Path) -> None:
    log = tmp_path / "log"
    supervisor = DemoSupervisor(
        {"stubborn": _child(log, "stubborn", ignore_sigterm=True)},
        cwd=tmp_path,
        env=os.environ,
        stop_timeout=0.5,
    )
    supervisor.start()
    _wait_for_lines(log, 1)
    supervisor.stop()
    assert supervisor.exited() == ["stubborn"]


def test_a_child_that_exits_stops_the_others_and_fails(tmp_path: Path) -> None:
    log = tmp_path / "log"
    supervisor = DemoSupervisor(
        {"web": _child(log, "web"), "beat": [sys.executable, "-c", "raise SystemExit(3)"]},
        cwd=tmp_path,
        env=os.environ,
    )
    supervisor.start()

    assert supervisor.supervise() == 1
    assert "web" in log.read_text().splitlines()


def test_ctrl_c_at_the_terminal_stops_the_demo_cleanly(tmp_path: Path) -> None:
    """A terminal's Ctrl-C signals the whole foreground process group, the launcher's.

    The children are in groups of their own, so only the launcher hears it; it stops
    them in order, says so and exits 0 (so `make demo` exits 0 too).
    """
    log = tmp_path / "log"
    launcher = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        from hub.demo_supervisor import DemoSupervisor
        from tests.hub.test_demo_supervisor import _child
        log = Path({str(log)!r})
        supervisor = DemoSupervisor(
            {{name: _child(log, name) for name in ("worker", "web")}}, cwd=Path.cwd(), env=os.environ
        )
        supervisor.install_signal_handlers()
        supervisor.start()
        sys.exit(supervisor.supervise())
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", launcher],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        process_group=0,
    )
    _wait_for_lines(log, 2)
    os.killpg(process.pid, signal.SIGINT)
    output, _ = process.communicate(timeout=30)

    assert process.returncode == 0, output
    assert output.splitlines() == ["Stopping web…", "Stopping worker…", "Demo stopped."]
    assert log.read_text().splitlines()[2:] == ["web", "worker"]

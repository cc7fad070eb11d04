"""`wattload demo` in a real terminal (tmux): the real CLI, the simulated server subprocess, the workers and the
TUI drawing through a pty. Keys go in with `tmux send-keys`, the screen comes back with `capture-pane`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from engine_helpers import wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)"),
]
WATTLOAD = Path(sys.executable).with_name("wattload")
# A tmux server of this test process's own (-L): on the shared default server, one test closing its last session
# makes the server exit while another process's `new-session` is connecting to it, which then fails.
TMUX = ("tmux", "-L", f"wattload-tests-{os.getpid()}")


def tmux(*args: str) -> str:
    done = subprocess.run([*TMUX, *args], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise AssertionError(f"tmux {' '.join(args[:3])} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def kill_session(session: str) -> None:
    subprocess.run([*TMUX, "kill-session", "-t", session], capture_output=True, timeout=10)


def wait_screen(session: str, predicate: Callable[[str], bool], timeout: float, what: str) -> str:
    screen = ""

    def matching() -> str | None:
        nonlocal screen
        screen = tmux("capture-pane", "-p", "-t", session)
        return screen if predicate(screen) else None

    return wait_for(matching, timeout, what, interval_s=0.2, detail=lambda: f"screen:\n{screen}")


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc: no psutil needed)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def still_alive_after(pids: set[int], grace_s: float) -> list[int]:
    """The processes still running once ``grace_s`` has passed (or as soon as none is)."""
    deadline = time.monotonic() + grace_s
    while (left := [pid for pid in pids if alive(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def described(pids: list[int]) -> list[str]:
    """Left-over processes with their command lines, so a failure says what was left."""
    out = []
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            cmd = "?"
        out.append(f"{pid}: {cmd}")
    return out


def load_figure(screen: str, label: str) -> int | None:
    match = re.search(rf"{label}\s+(\d+)", screen)
    return int(match.group(1)) if match else None


def test_demo_in_a_real_terminal_shows_figures_that_follow_the_keys(tmp_path):
    session = f"wattload-e2e-{uuid.uuid4().hex[:8]}"
    done = tmp_path / "exit-code"
    # COLUMNS/LINES leak in from some parents (they would override the pane's real size): drop them.
    command = (
        f"cd {tmp_path} && env -u COLUMNS -u LINES {WATTLOAD} demo --record-dir {tmp_path}; echo $? > {done}; sleep 60"
    )
    tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "36", command)
    try:
        screen = wait_screen(session, lambda s: "RUNNING" in s and load_figure(s, "in flight") == 8, 60,
                             "the demo to run 8 streams")  # fmt: skip
        assert "sim-llama" in screen and "GPU & cost" in screen and "Latency ms" in screen
        shell = int(tmux("display-message", "-p", "-t", session, "#{pane_pid}").strip())
        run_processes = descendants(shell) - {shell}
        assert len(run_processes) >= 3  # wattload itself, the simulated server, a worker
        screen = wait_screen(session, lambda s: re.search(r"TTFT\s+\d", s) is not None, 30, "latency figures")
        completed = load_figure(screen, "completed")
        assert completed is not None
        tmux("send-keys", "-t", session, "+")
        # the figures and the engine's event in the event log, which may reach the screen a frame apart
        wait_screen(session, lambda s: load_figure(s, "target") == 12 and load_figure(s, "in flight") == 12
                    and re.search(r"load\s+concurrency\s*(->|→)\s*12", s) is not None,
                    20, "the target, the in-flight streams and the event log to follow +")  # fmt: skip
        screen = wait_screen(session, lambda s: (load_figure(s, "completed") or 0) > (completed or 0), 20,
                             "the completed count to grow")  # fmt: skip
        tmux("send-keys", "-t", session, "q")
        wait_screen(session, lambda s: done.exists(), 30, "the demo to exit")
        assert done.read_text().strip() == "0"
        # no worker, sim or tracker process is left (the resource tracker notices its parent's exit a moment later)
        assert described(still_alive_after(run_processes, 10.0)) == []
    finally:
        kill_session(session)


def test_closing_the_terminal_stops_the_engine_and_leaves_no_process(tmp_path):
    """A killed tmux session (SIGHUP, the tty gone) must not leave wattload, its workers or the sim behind."""
    session = f"wattload-e2e-{uuid.uuid4().hex[:8]}"
    command = f"cd {tmp_path} && exec env -u COLUMNS -u LINES {WATTLOAD} demo --record-dir {tmp_path}"
    tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30", command)
    try:
        wait_screen(session, lambda s: "RUNNING" in s and load_figure(s, "in flight") == 8, 60, "the demo to run")
        shell = int(tmux("display-message", "-p", "-t", session, "#{pane_pid}").strip())
        run_processes = descendants(shell) | {shell}
        assert len(run_processes) >= 3
    finally:
        kill_session(session)
    assert described(still_alive_after(run_processes, 30.0)) == []

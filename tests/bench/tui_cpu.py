"""What the live TUI costs in CPU: `wattload demo` in a real terminal (tmux) at 4 Hz, measured from /proc.

Run: .venv/bin/python tests/bench/tui_cpu.py [--seconds 20] [--size 160x48]

Three figures, each in % of one core over the same measuring window (after a warm-up):
1. the wattload process with the TUI: the UI thread, the engine's controller/telemetry threads, Textual's writer;
2. its main thread alone: Textual's event loop, where every panel, chart and table is built and composed;
3. the same load headless (`wattload run --sim --headless`): the engine threads without any UI.
The UI's cost is (1) - (3), and at least (2). Target: <= 15% of one core. Worker and simulator processes are
separate processes and are not counted. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

WATTLOAD = Path(sys.executable).with_name("wattload")
TICKS = os.sysconf("SC_CLK_TCK")
LOAD_ARGS = ["--concurrency", "8", "--seed", "0"]


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """utime + stime of a process (all its threads) or of one thread."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def child_named(parent: int, needle: str, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for task in Path("/proc").glob("[0-9]*"):
            try:
                stat = (task / "stat").read_text()
                cmdline = (task / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent and needle in cmdline:
                return int(task.name)
        time.sleep(0.1)
    raise SystemExit(f"no child process matching {needle!r}")


def measure(pid: int, warmup: float, seconds: float) -> tuple[float, float]:
    """(% of one core for the whole process, % for its main thread) over ``seconds`` after ``warmup``."""
    time.sleep(warmup)
    total0, main0, t0 = cpu_seconds(pid), cpu_seconds(pid, pid), time.perf_counter()
    time.sleep(seconds)
    total1, main1, t1 = cpu_seconds(pid), cpu_seconds(pid, pid), time.perf_counter()
    span = t1 - t0
    return 100 * (total1 - total0) / span, 100 * (main1 - main0) / span


def tui(seconds: float, warmup: float, width: int, height: int) -> tuple[float, float]:
    session = f"wattload-bench-{uuid.uuid4().hex[:8]}"
    command = f"env -u COLUMNS -u LINES {WATTLOAD} demo {' '.join(LOAD_ARGS)}"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", str(width), "-y", str(height), command],
                   check=True, timeout=10)  # fmt: skip
    try:
        shell = int(subprocess.run(["tmux", "display-message", "-p", "-t", session, "#{pane_pid}"], check=True,
                                   capture_output=True, text=True, timeout=10).stdout)  # fmt: skip
        pid = shell if "wattload" in Path(f"/proc/{shell}/cmdline").read_text() else child_named(shell, "wattload")
        return measure(pid, warmup, seconds)
    finally:
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], timeout=10)
        time.sleep(3)
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, timeout=10)


def headless(seconds: float, warmup: float) -> float:
    duration = f"{warmup + seconds + 5:.0f}s"
    proc = subprocess.Popen([str(WATTLOAD), "run", "--sim", "--headless", "--duration", duration, *LOAD_ARGS],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        total, _ = measure(proc.pid, warmup, seconds)
        return total
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=6.0)
    parser.add_argument("--size", default="160x48")
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        raise SystemExit("tmux is needed (apt-get install tmux)")
    width, height = (int(v) for v in args.size.split("x"))
    total, main_thread = tui(args.seconds, args.warmup, width, height)
    engine_only = headless(args.seconds, args.warmup)
    where = f"{width}x{height} terminal, 4 Hz, {args.seconds:g} s measured on {os.cpu_count()} cores"
    print(f"wattload demo, 8 streams, {where}")
    print(f"  TUI process, all threads       {total:5.1f}% of one core")
    print(f"  TUI main thread (Textual loop) {main_thread:5.1f}%")
    print(f"  same load headless (engine)    {engine_only:5.1f}%")
    print(f"  UI cost = TUI - headless       {total - engine_only:5.1f}%   (target <= 15%)")


if __name__ == "__main__":
    main()

"""Time to the first frame of `wattload demo` in a real terminal (tmux), and to the first figures.

Run: python tests/bench/first_frame.py [--runs 3]

Prints, per run: seconds from launching the command until the dashboard's header is on screen, and until a
latency figure (TTFT) is, each with the CPU seconds the wattload process (all its threads) had used by then: on a
shared, busy box the wall time mostly measures the neighbours, the CPU time what wattload itself costs. Target:
the first frame under 1 s, figures as soon as they exist. Figures only, no pass/fail.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

WATTLOAD = Path(sys.executable).with_name("wattload")


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True, timeout=10).stdout


def cpu_s(pid: int) -> float | None:
    """utime + stime of ``pid`` (every thread), from /proc; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


Figure = tuple[float, float | None] | None  # (wall s, CPU s) or never


def one_run() -> tuple[Figure, Figure]:
    session = f"wattload-bench-{uuid.uuid4().hex[:8]}"
    tmp = tempfile.mkdtemp(prefix="wattload-ff-")
    command = f"cd {tmp} && exec env -u COLUMNS -u LINES WATTLOAD_STATE_DIR={tmp} {WATTLOAD} demo --record-dir {tmp}"
    t0 = time.perf_counter()
    tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "48", command)
    first: Figure = None
    figures: Figure = None
    try:
        pid = int(tmux("display-message", "-p", "-t", session, "#{pane_pid}").strip())  # exec: wattload itself
        deadline = t0 + 60
        while time.perf_counter() < deadline and figures is None:
            screen = tmux("capture-pane", "-p", "-t", session)
            now = time.perf_counter() - t0
            if first is None and "wattload" in screen and "Load" in screen:
                first = (now, cpu_s(pid))
            if re.search(r"TTFT\s+\d", screen):
                figures = (now, cpu_s(pid))
            time.sleep(0.02)
        tmux("send-keys", "-t", session, "q")
        time.sleep(1.5)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)
    return first, figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    for i in range(runs):
        first, figures = one_run()
        def fmt(v: Figure) -> str:
            if v is None:
                return "never"
            return f"{v[0]:.2f} s" + ("" if v[1] is None else f" (CPU {v[1]:.2f} s)")

        print(f"run {i + 1}: first frame {fmt(first)}, first TTFT figure {fmt(figures)}", flush=True)


if __name__ == "__main__":
    main()

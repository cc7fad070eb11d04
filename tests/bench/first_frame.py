"""Time to the first frame of `wattload demo` in a real terminal (tmux), and to the first figures.

Run: python tests/bench/first_frame.py [--runs 3]

Prints, per run: seconds from launching the command until the dashboard's header is on screen, and until a
latency figure (TTFT) is. Target: the first frame under 1 s, figures as soon as they exist. Figures only, no
pass/fail: the machine's load decides the absolute numbers.
"""

from __future__ import annotations

import argparse
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


def one_run() -> tuple[float | None, float | None]:
    session = f"wattload-bench-{uuid.uuid4().hex[:8]}"
    tmp = tempfile.mkdtemp(prefix="wattload-ff-")
    command = f"cd {tmp} && env -u COLUMNS -u LINES WATTLOAD_STATE_DIR={tmp} {WATTLOAD} demo --record-dir {tmp}"
    t0 = time.perf_counter()
    tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "48", command)
    first = figures = None
    try:
        deadline = t0 + 60
        while time.perf_counter() < deadline and figures is None:
            screen = tmux("capture-pane", "-p", "-t", session)
            now = time.perf_counter() - t0
            if first is None and "wattload" in screen and "Load" in screen:
                first = now
            if re.search(r"TTFT\s+\d", screen):
                figures = now
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
        fmt = lambda v: "never" if v is None else f"{v:.2f} s"  # noqa: E731
        print(f"run {i + 1}: first frame {fmt(first)}, first TTFT figure {fmt(figures)}", flush=True)


if __name__ == "__main__":
    main()

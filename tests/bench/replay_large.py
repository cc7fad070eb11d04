"""Benchmark: a one-hour recording at 50 requests/s (64-token responses), written through the real Recorder on a
virtual clock, then opened, indexed and sought in by the real Player. Prints figures; asserts nothing.

    .venv/bin/python tests/bench/replay_large.py [--minutes 60] [--rate 50] [--keep PATH]

Targets (issue "Session recording to SQLite"): <= 100 bytes per request (per-token timings off), open < 1 s,
seek < 100 ms, memory bounded (it must not grow with the recording's length).
"""

from __future__ import annotations

import argparse
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from engine.replay.player import Player
from engine.reports.report import build_report

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the synthetic recording writer
from synthetic_recording import SyntheticSpec, write_synthetic


def generate(path: Path, minutes: float, rate: float, tokens: bool) -> None:
    spec = SyntheticSpec(duration_s=minutes * 60, rate=rate, output_tokens=64, workers=1, gpus=1, tick_s=0.1,
                         record_tokens=tokens, error_every=500)
    t = time.perf_counter()
    rec = write_synthetic(path, spec)
    elapsed = time.perf_counter() - t
    print(f"write: {rec.requests_written:,} requests in {elapsed:.1f} s ({rec.requests_written / elapsed:,.0f}/s)"
          f"{'' if rec.failed is None else ' FAILED: ' + rec.failed}")


def table_bytes(path: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
    return dict(rows)


def measure(path: Path) -> None:
    size = path.stat().st_size
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        n = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
    per_table = table_bytes(path)
    print(f"file: {size / 1e6:.1f} MB, {n:,} requests: {size / n:.1f} bytes/request overall, "
          f"{per_table.get('requests', 0) / n:.1f} in the requests table")
    print("  by table (bytes/request): " + ", ".join(
        f"{name} {b / n:.1f}" for name, b in sorted(per_table.items(), key=lambda kv: -kv[1]) if b / n >= 0.05))

    t = time.perf_counter()
    player = Player(path, playing=False)
    opened = time.perf_counter() - t
    print(f"open (validate, events, first snapshot at 0:00): {opened * 1e3:.0f} ms; duration {player.duration_s:.0f} s")

    t = time.perf_counter()
    player.seek_to(player.duration_s / 2)
    player.wait_idle(120)
    print(f"first seek to the middle, before the index is built: {(time.perf_counter() - t) * 1e3:.0f} ms")

    t = time.perf_counter()
    player.wait_index(600)
    built = time.perf_counter() - t
    print(f"index: {len(player.checkpoints)} checkpoints ({player.checkpoints.nbytes / 1e6:.1f} MB) ready "
          f"{built:.1f} s later")

    rnd = random.Random(7)
    times = []
    for _ in range(40):
        target = rnd.uniform(0, player.duration_s)
        t = time.perf_counter()
        player.seek_to(target)
        player.wait_idle(30)
        times.append(time.perf_counter() - t)
    times.sort()
    print(f"seek (40 random, index built): median {times[len(times) // 2] * 1e3:.0f} ms, "
          f"worst {times[-1] * 1e3:.0f} ms")
    snap = player.latest
    print(f"  last seek shows t={snap.t_s:.1f} s, window {snap.window.output_tokens_per_s:,.0f} tok/s, "
          f"total {snap.total.requests:,} requests")

    player.set_speed(0)
    player.seek_to(0)
    player.wait_idle(30)
    tracemalloc.start()  # only now: tracing slows Python down several times, the timings above are clean
    t = time.perf_counter()
    player.toggle()
    while player.playing and time.perf_counter() - t < 600:
        time.sleep(0.05)
    print(f"play at max speed, start to end (under tracemalloc, slower): {time.perf_counter() - t:.1f} s")
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    player.close()
    print(f"python heap while replaying: peak {peak / 1e6:.1f} MB (now {current / 1e6:.1f} MB); "
          f"process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3:.0f} MB")

    from engine.storage.reader import open_recording

    t = time.perf_counter()
    with open_recording(path) as rec:
        report = build_report(rec)
    print(f"report: {len(report.phases)} phases in {time.perf_counter() - t:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--tokens", action="store_true", help="also record per-token timings")
    ap.add_argument("--keep", metavar="PATH", help="write (or reuse) the recording here")
    ap.add_argument("--generate-only", metavar="PATH", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.generate_only:
        generate(Path(args.generate_only), args.minutes, args.rate, args.tokens)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.keep) if args.keep else Path(tmp) / "large.wattload.sqlite"
        if not path.exists():  # generated in a child process, so this one's peak RSS is the replay's alone
            cmd = [sys.executable, __file__, "--generate-only", str(path), "--minutes", str(args.minutes),
                   "--rate", str(args.rate), *(["--tokens"] if args.tokens else [])]
            subprocess.run(cmd, check=True, timeout=1800)
        measure(path)


if __name__ == "__main__":
    main()

"""Does the live window's output tok/s match what arrived over its span? (prints figures; not a pytest test)

Runs the built-in simulator (a subprocess) under closed-loop load from N worker processes, recorded with every
token's receive stamp, for each configuration given. Then, at every tick the live run published, it recomputes
the snapshot from the recording twice through the same aggregator code: with the window ending at the workers'
reports (the edge, what the dashboard shows now; replay reproduces live tick by tick) and ending at now (the
window before the edge, ``watermark=False``). Each snapshot's windowed output tok/s is compared with the ground
truth over the same span: the chunks whose receive stamps fall in [end - span, end], divided by span (the
simulator sends one token per chunk and its usage equals the chunk count). Printed per configuration: mean, RMS
and worst relative error of each, and how far the edge trailed now.

    python tests/bench/window_edge.py [--configs 2x1,4x1,4x10] [--seconds 20] [--streams 32] [--max-tokens 64]

A configuration is WORKERSxWINDOW_S. Snapshots count from one full window after the start to the stop (the run's
requests then finish within the stop grace, so every token of the span is in the recording).
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from engine.config import RunConfig
from engine.load.controller import Controller
from engine.replay.feeder import Feeder, new_aggregator
from engine.sim.model import SimConfig
from engine.sim.process import start_sim_process
from engine.snapshot import Snapshot
from engine.storage.reader import open_recording
from engine.storage.recorder import session_recorders


def record(url: str, workers: int, window_s: float, seconds: float, streams: int, max_tokens: int,
           path: Path) -> tuple[list[Snapshot], int]:
    cfg = RunConfig(base_url=url, model=SimConfig().model, concurrency=streams, workers=workers, window_s=window_s,
                    tick_hz=4, duration_s=seconds, max_tokens=max_tokens, input_tokens=32)
    c = Controller(cfg, stop_grace_s=10.0, recorder_factory=session_recorders(record_tokens=True))
    snaps: list[Snapshot] = []
    c.subscribe(snaps.append)
    c.start_recording(str(path))
    c.start()
    try:
        if not c.wait(seconds + 120):
            raise SystemExit("the run did not end")
    finally:
        c.close()
    return snaps, c.cancelled_at_stop


def errors(path: Path, ticks: list[float], window_s: float) -> dict[str, list[float]]:
    """Relative error of each variant's windowed output tok/s per tick, and the edge's lag (s)."""
    with open_recording(path) as rec:
        stamps = np.sort(np.fromiter((t for r in rec.requests() for t in r.token_times_ns), dtype=np.int64))
        out: dict[str, list[float]] = {"edge": [], "now": [], "lag": []}
        feeders = {"edge": Feeder(rec), "now": Feeder(rec)}
        feeders["now"].aggregator, _ = new_aggregator(rec, watermark=False)
        for t_s in ticks:
            for name, feeder in feeders.items():
                feeder.advance(round(t_s * 1e6))
                w = feeder.snapshot().window
                end_ns, start_ns = round(w.end_s * 1e9), round((w.end_s - w.span_s) * 1e9)
                truth = (np.searchsorted(stamps, end_ns, "right") - np.searchsorted(stamps, start_ns, "left"))
                if truth and w.span_s > 0.9 * window_s:
                    out[name].append(w.output_tokens_per_s / (truth / w.span_s) - 1)
                    if name == "edge":
                        out["lag"].append(t_s - w.end_s)
    return out


def describe(errs: list[float]) -> str:
    if not errs:
        return "no snapshots"
    a = np.asarray(errs) * 100
    worst = a[np.argmax(np.abs(a))]
    return f"mean {a.mean():+6.2f}%  RMS {math.sqrt(float((a**2).mean())):5.2f}%  worst {worst:+6.2f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="2x1,4x1,4x10", help="WORKERSxWINDOW_S, comma-separated")
    parser.add_argument("--seconds", type=float, default=20.0, help="load duration per configuration")
    parser.add_argument("--streams", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs; {args.streams} streams, "
          f"{args.max_tokens}-token answers, {args.seconds:g} s per configuration, snapshots at 4 Hz")
    with start_sim_process(SimConfig(seed=1)) as sim, tempfile.TemporaryDirectory() as tmp:
        for spec in args.configs.split(","):
            workers, window = spec.split("x")
            n, window_s = int(workers), float(window)
            seconds = max(args.seconds, 2 * window_s + 5)
            path = Path(tmp) / f"edge-{n}x{window}.wattload.sqlite"
            began = time.perf_counter()
            snaps, cancelled = record(sim.url, n, window_s, seconds, args.streams, args.max_tokens, path)
            ticks = [s.t_s for s in snaps if window_s <= s.t_s <= seconds]
            errs = errors(path, ticks, window_s)
            lag_ms = np.asarray(errs["lag"]) * 1e3
            print(f"{n} workers, {window_s:g} s window ({len(errs['edge'])} snapshots, {cancelled} cancelled at "
                  f"stop, {time.perf_counter() - began:.0f} s):")
            print(f"   window ends at now (main):       {describe(errs['now'])}")
            print(f"   window ends at the edge (this):  {describe(errs['edge'])}")
            if lag_ms.size:
                print(f"   edge behind now: p50 {np.percentile(lag_ms, 50):.0f} ms, p99 "
                      f"{np.percentile(lag_ms, 99):.0f} ms, max {lag_ms.max():.0f} ms")


if __name__ == "__main__":
    main()

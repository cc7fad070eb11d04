"""Trace replay at scale: memory of streaming a 1,000,000-row trace, and schedule lag at 200 req/s.

Run: .venv/bin/python tests/bench/trace_replay.py [--rows 1000000] [--rate 200] [--seconds 30]

1. Writes a Mooncake-format JSONL trace of ``--rows`` rows at ``--rate`` req/s (4 shared prefixes, short lengths).
2. Memory: a fresh process makes the validating pass ``--trace`` makes (scan_trace) and then iterates one
   worker's whole share of the rows through ``TraceFeed`` with a no-op send at unbounded speed; its peak RSS for
   the whole file is printed against the same process shape reading only the first 10,000 rows (the baseline):
   a ratio near 1.0 means memory is flat in the length of the trace.
3. Schedule lag: ``--seconds`` of the trace, from its middle (so the window is reached by skipping ~500,000
   rows before the clock starts), replayed at speed 1 by one worker against the simulator in its own process;
   send lag (actual send - scheduled time) p50/p99/max, next to a Poisson rate-mode run at the same rate in the
   same session (the baseline).

Target: memory flat (ratio < 1.2), lag p99 under 5 ms at 200 req/s. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from engine.config import RunConfig  # noqa: E402
from engine.load.controller import Controller  # noqa: E402
from engine.sim import SimConfig, start_sim_process  # noqa: E402
from engine.snapshot import LoadMode  # noqa: E402
from engine.workload.calibration import TokenModel  # noqa: E402
from engine.workload.traces import TraceWindow, open_trace, scan_trace  # noqa: E402
from engine.workload.traces.detect import TraceStart  # noqa: E402
from engine.workload.traces.requests import TraceFactory  # noqa: E402

MEMORY_CHILD = r"""
import resource, sys, time
sys.path.insert(0, sys.argv[3])
from engine.load.trace_feed import TraceFeed
from engine.workload.calibration import TokenModel
from engine.workload.traces import open_trace, scan_trace
from engine.workload.traces.requests import TraceFactory
path, limit = sys.argv[1], int(sys.argv[2])
source = open_trace(path)
t = time.perf_counter()
fp, _ = scan_trace(source)
scan_s = time.perf_counter() - t
factory = TraceFactory(source, TokenModel(overhead_tokens=10, tokens_per_word=2.0))
feed = TraceFeed(factory, 0, 1)
n = 0
t = time.perf_counter()
while n < limit:
    row = feed._pending or next(feed._rows, None)
    feed._pending = None
    if row is None:
        break
    factory.spec_for(row)  # what the worker builds per row
    n += 1
feed_s = time.perf_counter() - t
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"{fp.rows} {n} {rss} {scan_s:.3f} {feed_s:.3f}")
"""


def write_trace(path: Path, rows: int, rate: float) -> float:
    rng = random.Random(7)
    t = 0.0
    start = time.perf_counter()
    with open(path, "w", encoding="utf-8") as f:
        for i in range(rows):
            t += rng.expovariate(rate) * 1000
            group = i % 4
            f.write(json.dumps({"timestamp": round(t, 3), "input_length": rng.randint(64, 256),
                                "output_length": rng.randint(2, 8), "hash_ids": [group, 10 + i]}) + "\n")  # fmt: skip
    return time.perf_counter() - start


def memory(path: Path, limit: int) -> tuple[int, int, int, float, float]:
    out = subprocess.run([sys.executable, "-c", MEMORY_CHILD, str(path), str(limit), str(ROOT)],
                         capture_output=True, text=True, check=True, timeout=3600).stdout.split()  # fmt: skip
    return int(out[0]), int(out[1]), int(out[2]), float(out[3]), float(out[4])


def replay_lag(cfg: RunConfig, factory: object | None) -> tuple[int, list[float]]:
    from engine.records import RequestRecord

    records: list[RequestRecord] = []

    class Sink:
        def on_records(self, r: list[RequestRecord]) -> None:
            records.extend(r)

        def on_progress(self, p: object) -> None: ...
        def on_telemetry(self, s: object) -> None: ...
        def on_event(self, e: object) -> None: ...
        def on_snapshot(self, s: object) -> None: ...
        def close(self) -> None: ...

    controller = Controller(cfg, request_factory=factory, sinks=[Sink()])  # type: ignore[arg-type]
    controller.start()
    try:
        controller.wait((cfg.duration_s or 60) + 60)
    finally:
        controller.close()
    lags = sorted((r.t_start_ns - r.t_scheduled_ns) / 1e6 for r in records)
    return sum(1 for r in records if not r.ok), lags


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="wattload-trace-bench-") as tmp:
        path = Path(tmp) / "big.jsonl"
        write_s = write_trace(path, args.rows, args.rate)
        print(f"trace: {args.rows:,} rows at {args.rate:g} req/s, {path.stat().st_size / 1e6:.1f} MB, "
              f"written in {write_s:.1f} s")  # fmt: skip

        base = memory(path, 10_000)
        full = memory(path, args.rows)
        print("memory, peak RSS of a process that validates the file and builds every request of its share:")
        print(f"  first 10,000 rows: {base[2] / 1024:7.1f} MiB")
        print(f"  all {full[1]:,} rows:  {full[2] / 1024:7.1f} MiB  (ratio {full[2] / base[2]:.2f}); "
              f"validating pass {full[3]:.1f} s ({full[0] / full[3]:,.0f} rows/s), requests built at "
              f"{full[1] / full[4]:,.0f} rows/s")  # fmt: skip

        duration_s = 5000.0 * args.rows / 1_000_000 * 200 / args.rate
        mid = duration_s / 2
        window = TraceWindow(mid, mid + args.seconds)
        with start_sim_process(SimConfig(speed=100, max_batch=1024, kv_capacity_tokens=10_000_000),
                               cpus=[0] if (os.cpu_count() or 1) >= 2 else None) as sim:  # fmt: skip
            base_cfg = RunConfig(base_url=sim.url, model=SimConfig().model, workers=1, ignore_eos=True,
                                 input_tokens=128, max_tokens=4)  # fmt: skip
            source = open_trace(path)
            starts: list[TraceStart] = []
            t = time.perf_counter()
            scan_trace(source, window, found=starts.append)  # what --trace does first: finds the window's offset
            scan_s = time.perf_counter() - t
            factory = TraceFactory(source, TokenModel(overhead_tokens=10, tokens_per_word=2.0), window=window,
                                   start=starts[0])  # fmt: skip
            t = time.perf_counter()
            trace_cfg = base_cfg.model_copy(update={"mode": LoadMode.RATE, "rate": 1.0, "duration_s": args.seconds})
            errors, lags = replay_lag(trace_cfg, factory)
            wall = time.perf_counter() - t
            poisson_cfg = base_cfg.model_copy(update={"mode": LoadMode.RATE, "rate": args.rate,
                                                      "duration_s": args.seconds})  # fmt: skip
            p_errors, p_lags = replay_lag(poisson_cfg, None)
        print(f"schedule lag, {args.seconds:g} s from t={mid:,.0f} s of the trace at speed 1 (one worker, "
              f"simulator on another core; validating pass to the window's end {scan_s:.1f} s, then start-up "
              f"{wall - args.seconds:.1f} s):")
        for name, ls, errs in (("trace replay", lags, errors), ("Poisson rate", p_lags, p_errors)):
            print(f"  {name:13s} {len(ls):6,} requests ({len(ls) / args.seconds:.0f} req/s), {errs} errors: "
                  f"send lag p50 {pct(ls, 0.5):.2f} ms, p99 {pct(ls, 0.99):.2f} ms, max {ls[-1] if ls else 0:.2f} ms")
        if lags and p_lags:
            print(f"  p99 ratio trace / Poisson: {pct(lags, 0.99) / max(pct(p_lags, 0.99), 1e-9):.2f}")


if __name__ == "__main__":
    main()

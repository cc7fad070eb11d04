"""What the aggregator costs the controller: time per snapshot() and memory over a long session.

Run: .venv/bin/python tests/bench/aggregator_cost.py [--hours 2] [--edge reports|now] [--itl records|ticks]

1. 60 simulated seconds at 1,000 requests/s, 100 tokens each (100,000 tokens/s), 4 workers reporting progress
   at 10 Hz, a snapshot at 4 Hz over a 10 s window: time per snapshot() and per add_records() batch.
2. 2 simulated hours at 100 requests/s with a snapshot every second: traced memory every 10 simulated minutes
   (tracemalloc), which must stay flat.

Target: snapshot() < 2 ms; memory flat. Figures are printed, never asserted (speed is not a test). Times are
this thread's CPU time (thread_time_ns), so other jobs on a shared box do not inflate them.

--edge now: the window ending at now, as before the edge (engine/metrics/edge.py), for before/after figures; the
edge moves facts' entry into their window slot from add_*() into snapshot(). --itl ticks: ITL shipped on the
progress ticks, as live runs and recordings of schema 3 on do (the default, records, is the older and costlier
path where ITL comes from every record's chunk stamps; the ticks here carry no gaps, so that mode leaves ITL out).
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from collections.abc import Iterator

import numpy as np

from engine.control import ControlState
from engine.metrics.aggregator import Aggregator
from engine.records import ErrorClass, RequestRecord, StreamProgress
from engine.snapshot import RunState

S = 1_000_000_000
T0 = 10 * S
TOKENS = 100
RUNNING = ControlState(state=RunState.RUNNING, target_concurrency=256)


def requests(rng: np.random.Generator, t_from: float, t_to: float, rate: float, first_id: int) -> list[RequestRecord]:
    """Records ending in [t_from, t_to): 100 tokens, ~20 ms apart, TTFT ~ 80 ms; 1% fail."""
    n = round((t_to - t_from) * rate)
    ends = np.sort(rng.uniform(t_from, t_to, n))
    itl = rng.lognormal(np.log(0.02), 0.3, (n, TOKENS - 1))
    ttft = rng.lognormal(np.log(0.08), 0.5, n)
    out = []
    for i in range(n):
        end = T0 + int(ends[i] * S)
        offsets = np.concatenate([[0], np.cumsum((itl[i] * S).astype(np.int64))])
        first = end - int(offsets[-1])
        sched = first - int(ttft[i] * S)
        if i % 100 == 99:
            out.append(RequestRecord(worker=i % 4, request_id=first_id + i, t_scheduled_ns=sched, t_start_ns=sched,
                                     t_headers_ns=None, t_first_token_ns=None, t_end_ns=end, input_tokens=None,
                                     output_tokens=0, output_estimated=True, chunks=0, status=503,
                                     error=ErrorClass.HTTP_5XX, error_detail="503 Service Unavailable"))
            continue
        out.append(RequestRecord(worker=i % 4, request_id=first_id + i, t_scheduled_ns=sched, t_start_ns=sched,
                                 t_headers_ns=first, t_first_token_ns=first, t_end_ns=end, input_tokens=128,
                                 output_tokens=TOKENS, output_estimated=False, chunks=TOKENS, status=200,
                                 token_times_ns=tuple((offsets + first).tolist())))
    return out


def progress(t_from: float, t_to: float, tokens_per_s: float) -> Iterator[StreamProgress]:
    """Four workers, one report each at every multiple of 100 ms in (t_from, t_to]."""
    for k in range(int(t_from * 10) + 1, int(t_to * 10) + 1):
        t = T0 + k * S // 10
        for w in range(4):
            yield StreamProgress(worker=w, t_ns=t, chunks=int(tokens_per_s / 40), in_flight=64, loop_lag_ms=1.5)


def bench_snapshot_cost() -> None:
    rng = np.random.default_rng(1)
    agg = Aggregator(t0_ns=T0, window_s=10.0, itl_from_ticks=ITL_FROM_TICKS, watermark=WATERMARK)
    snap_ns: list[int] = []
    add_ns: list[int] = []
    per_batch = 0
    next_id = 0
    tick = 0.25
    for k in range(int(60 / tick)):
        t_from, t_to = k * tick, (k + 1) * tick
        batch = requests(rng, t_from, t_to, 1000.0, next_id)
        next_id += len(batch)
        per_batch = len(batch)
        start = time.thread_time_ns()
        agg.add_progress(progress(t_from, t_to, 1000.0 * TOKENS))
        agg.add_records(batch)
        add_ns.append(time.thread_time_ns() - start)
        start = time.thread_time_ns()
        snap = agg.snapshot(T0 + int(t_to * S), RUNNING)
        snap_ns.append(time.thread_time_ns() - start)
    steady = sorted(snap_ns[40:])  # after the window has filled
    print("1) 60 s at 1,000 req/s x 100 tokens, 10 s window, snapshot at 4 Hz")
    print(f"   snapshot(): mean {statistics.fmean(steady) / 1e6:.3f} ms, p50 {steady[len(steady) // 2] / 1e6:.3f} ms,"
          f" p99 {steady[int(len(steady) * 0.99)] / 1e6:.3f} ms, max {steady[-1] / 1e6:.3f} ms")
    per_record_us = statistics.fmean(add_ns) / per_batch / 1e3
    print(f"   add_records()+add_progress(): {statistics.fmean(add_ns) / 1e6:.2f} ms per {per_batch}-record batch"
          f" ({per_record_us:.1f} us per record, {per_record_us / 10:.1f}% of a core at 1,000 req/s)")
    w = snap.window
    print(f"   last window: {w.requests_per_s:.0f} req/s, {w.output_tokens_per_s:.0f} tok/s,"
          f" TTFT p99 {w.ttft.p99:.1f} ms, ITL p50 {w.itl.p50 or 0:.2f} ms, slots held {agg.window_slots}")


def bench_memory(hours: float) -> None:
    rng = np.random.default_rng(2)
    agg = Aggregator(t0_ns=T0, window_s=10.0, itl_from_ticks=ITL_FROM_TICKS, watermark=WATERMARK)
    tracemalloc.start()
    baseline = None
    next_id = 0
    total_s = int(hours * 3600)
    print(f"2) {hours:g} simulated hours at 100 req/s x 100 tokens, a snapshot every second (tracemalloc)")
    for sec in range(total_s):
        batch = requests(rng, sec, sec + 1, 100.0, next_id)
        next_id += len(batch)
        agg.add_progress(progress(sec, sec + 1, 100.0 * TOKENS))
        agg.add_records(batch)
        del batch
        agg.snapshot(T0 + (sec + 1) * S, RUNNING)
        if sec == 60:
            baseline = tracemalloc.get_traced_memory()[0]
        if (sec + 1) % 600 == 0:
            current, peak = tracemalloc.get_traced_memory()
            print(f"   t={(sec + 1) / 60:5.0f} min  traced {current / 1024:8.0f} KiB"
                  f"  (vs 1 min: {(current - (baseline or current)) / 1024:+7.0f} KiB)  peak {peak / 1024:8.0f} KiB"
                  f"  slots {agg.window_slots}  requests {next_id}")
    tracemalloc.stop()


ITL_FROM_TICKS = False  # records carry the ITL stamps (--itl records)
WATERMARK = True


def main() -> None:
    global ITL_FROM_TICKS, WATERMARK
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=2.0, help="simulated hours for the memory run")
    parser.add_argument("--edge", choices=("reports", "now"), default="reports", help="where the window ends")
    parser.add_argument("--itl", choices=("records", "ticks"), default="records", help="where ITL comes from")
    args = parser.parse_args()
    ITL_FROM_TICKS, WATERMARK = args.itl == "ticks", args.edge == "reports"
    print(f"window ends at {'the edge' if WATERMARK else 'now'}; ITL from {args.itl}")
    bench_snapshot_cost()
    bench_memory(args.hours)


if __name__ == "__main__":
    main()

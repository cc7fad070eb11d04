"""Ray's overhead per worker, measured in pairs (issue 16's "overhead <= 5%"); run through
``client_capacity.py --paired`` (prints figures; not a pytest test).

Sequential runs cannot resolve 5%: identical plain runs on the device machine moved +-20% from one to the next (other
tenants, clocks, caches). So each round runs two workers AT THE SAME TIME against the same fake servers, each
pinned to its own core (the servers on theirs), and compares them within the round:

    ray/plain     a plain worker process beside a Ray actor worker (the same worker loop on a thread of the actor)
    plain/plain   two plain worker processes: the noise floor of the pairing itself (the cores, the servers'
                  fairness between connections); a ray/plain interval no wider than this one is as good as it gets

The two cores swap every round (the first-named side on core A in even rounds, on core B in odd ones), so a faster
core does not pass for an overhead. Every thread of both workers is reniced to the same value (0, or -10 with
--boost; Ray starts its workers at nice 15) and the niceness seen is printed. Per pair: the ratio of tokens per
CPU-second (the worker process's own CPU time, Ray's threads in the actor included: that is the overhead) and of
tokens/s. A worker below 90% of its core waited on the servers: its tokens per CPU-second is not a capacity figure
(starved loops read bigger batches per wake-up), and the row says so.

Reading the summary: the geometric mean of the ratios, +- its standard error, and the 95% t interval. Ray costs at
most 5% where the ray/plain interval lies above 0.95; it is resolved only where that interval is not much wider than
the plain/plain one (which should hold 1.00).
"""

from __future__ import annotations

import math
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from worker_threads import describe_nice, equalize, settle

# t(0.975, df) for df = 1..30; 2.0 / 1.98 / 1.96 beyond
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
FULL_CORE = 0.90  # below this share of its core a worker waited on the servers
RUN_S = 600.0  # each controller's duration: longer than any pair; the pair stops both explicitly


def t975(df: int) -> float:
    if df <= 0:
        return float("nan")
    if df <= len(_T975):
        return _T975[df - 1]
    return 2.0 if df <= 60 else 1.98 if df <= 120 else 1.96


@dataclass
class Side:
    """One worker of a pair: its controller (one worker, plain process or Ray actor), its progress ticks."""

    label: str
    ray: str | None
    cpu: int
    controller: Any = None
    progress: list[Any] = field(default_factory=list)
    stamps: list[str] = field(default_factory=list)
    pid: int = 0
    cpu0: float = 0.0
    cpu1: float = 0.0
    nice_before: str = "?"  # as the worker started (a Ray actor: 15), before the renice
    nice: str = "?"


def _start(side: Side, url: str, kind: str, streams: int, tokens: int) -> None:
    from engine.config import RunConfig
    from engine.endpoint.stamped_socket import stamps_named_in
    from engine.load.controller import Controller
    from engine.load.ray_spec import RaySpec
    from engine.records import ControlEvent, EventKind, StreamProgress

    class Sink:
        def on_records(self, records: object) -> None: ...
        def on_progress(self, p: list[StreamProgress]) -> None:
            side.progress.extend(p)
        def on_telemetry(self, samples: object) -> None: ...
        def on_event(self, event: ControlEvent) -> None:
            if event.kind is EventKind.START:
                side.stamps.append(stamps_named_in(event.message) or "-")
        def on_snapshot(self, snapshot: object) -> None: ...
        def close(self) -> None: ...

    config = RunConfig(base_url=url, model="fake-model", concurrency=streams, workers=1, max_tokens=tokens,
                       input_tokens=32, duration_s=RUN_S, http_client=kind)
    side.controller = Controller(config, sinks=[Sink()], stop_grace_s=0.5,
                                 ray=RaySpec(address=side.ray) if side.ray else None)
    side.controller.start()


def _tokens_per_s(side: Side, w0: int, w1: int) -> float:
    ticks = [p for p in side.progress if w0 < p.t_ns <= w1]
    if len(ticks) < 2:
        return float("nan")
    return sum(p.chunks for p in ticks[1:]) / ((ticks[-1].t_ns - ticks[0].t_ns) / 1e9)


def run_pair(servers: Any, kind: str, streams: int, seconds: float, sides: list[Side], nice: int, tokens: int,
             warmup_s: float, cpu_seconds: Any) -> dict[str, Any]:
    """Both sides at once over one window; returns each side's figures and the pair's ratios (first / second)."""
    from engine.endpoint.stamped_socket import ENV

    kind, _, read_stamps = kind.partition("/")
    os.environ[ENV] = read_stamps or "kernel"  # the worker processes inherit it
    began = time.monotonic()
    try:
        for side in sides:
            _start(side, servers.url, kind, streams, tokens)
        deadline = time.monotonic() + 120
        while any(s.controller.worker_pids[0] is None for s in sides) and time.monotonic() < deadline:
            time.sleep(0.01)  # a Ray actor's pid is known once it is placed
        for side in sides:
            side.pid = side.controller.worker_pids[0]
            side.nice_before = describe_nice(side.pid)
            settle(side.pid, side.cpu, None)
        while any(s.controller.t0_ns is None for s in sides):
            if time.monotonic() > deadline or any(s.controller.wait(0) for s in sides):
                raise SystemExit(f"a worker did not start ({kind}, {streams} streams)")
            time.sleep(0.01)
        start = max(s.controller.t0_ns for s in sides)
        errors: list[str] = []
        for side in sides:  # again: the threads started since (a Ray actor's loop among them)
            errors += settle(side.pid, side.cpu, None)
        asked, more = equalize([s.pid for s in sides], nice)
        errors += more
        time.sleep(max(0.0, (start + warmup_s * 1e9 - time.perf_counter_ns()) / 1e9))
        for side in sides:
            errors += settle(side.pid, side.cpu, asked, rounds=1)
        for side in sides:
            side.cpu0 = cpu_seconds(side.pid)
        emitted0, w0 = servers.chunks(), time.perf_counter_ns()
        started_s = time.monotonic() - began
        time.sleep(seconds)
        for side in sides:
            side.cpu1 = cpu_seconds(side.pid)
        emitted1, w1 = servers.chunks(), time.perf_counter_ns()
        for side in sides:
            side.nice = describe_nice(side.pid)
            side.controller.stop("end of the pair")
        for side in sides:
            side.controller.wait(60)
    finally:  # both at once: closing a Ray pool waits for its actor to be gone
        closing = [threading.Thread(target=s.controller.close) for s in sides if s.controller is not None]
        for t in closing:
            t.start()
        for t in closing:
            t.join()
    for line in dict.fromkeys(errors):
        print(f"  ({line})", file=sys.stderr)
    wall_s = (w1 - w0) / 1e9
    out: dict[str, Any] = {"server_per_s": (emitted1 - emitted0) / wall_s, "asked_nice": asked, "sides": [],
                           "took": f"{started_s:.0f}+{seconds:g}+{time.monotonic() - began - started_s - seconds:.0f}"}
    for side in sides:
        share = (side.cpu1 - side.cpu0) / wall_s
        tps = _tokens_per_s(side, w0, w1)
        out["sides"].append({"label": side.label, "cpu": side.cpu, "tokens_per_s": tps, "cpu_share": share,
                             "per_cpu_s": tps / share if share > 0 else float("nan"),
                             "nice": side.nice if side.nice == side.nice_before else f"{side.nice_before}>{side.nice}",
                             "stamps": side.stamps[0] if side.stamps else "?"})
    a, b = out["sides"]
    out["ratio_cpu"] = a["per_cpu_s"] / b["per_cpu_s"]
    out["ratio_tps"] = a["tokens_per_s"] / b["tokens_per_s"]
    return out


def summarize(ratios: list[float]) -> str:
    """Geometric mean +- standard error (delta method) [95% t interval], from the ratios' logarithms."""
    logs = [math.log(r) for r in ratios if r > 0 and math.isfinite(r)]
    n = len(logs)
    if n == 0:
        return "no pairs"
    mean = statistics.fmean(logs)
    gm = math.exp(mean)
    if n < 2:
        return f"{gm:.3f} (n=1)"
    se = statistics.stdev(logs) / math.sqrt(n)
    t = t975(n - 1)
    return f"{gm:.3f} ± {gm * se:.3f} [95%: {math.exp(mean - t * se):.3f}-{math.exp(mean + t * se):.3f}] n={n}"


def main(servers: Any, args: Any, candidates: list[str], pair_cpus: tuple[int, int], tokens: int, warmup_s: float,
         cpu_seconds: Any) -> None:
    nice = -10 if args.boost else 0
    kinds = (["ray/plain"] if args.ray else []) + ["plain/plain"]
    if not args.ray:
        print("no --ray: plain/plain pairs only (the noise floor)")
    a_cpu, b_cpu = pair_cpus
    print(f"pairs: two workers at once on CPUs {a_cpu} and {b_cpu} (swapped every round), every thread of both at "
          f"nice {nice} (nice: every thread's niceness at the end of the window; 15>0: as the worker started, then); "
          f"{args.rounds} rounds; share: of its core; ratio = first side / second side; took: start and warm-up + "
          f"window + stop, s")
    print(f"{'round':>5} {'streams':>7} {'candidate':>10} {'pair':>11} | {'CPU':>3} {'tok/s':>9} {'share':>6} "
          f"{'tok/CPU-s':>10} {'nice':>6} | {'CPU':>3} {'tok/s':>9} {'share':>6} {'tok/CPU-s':>10} {'nice':>6} | "
          f"{'tok/CPU-s':>9} {'tok/s':>6} {'server/s':>9} {'took s':>8}")
    began = time.monotonic()
    results: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    starved: list[str] = []
    for r in range(args.rounds):
        first_cpu, second_cpu = (a_cpu, b_cpu) if r % 2 == 0 else (b_cpu, a_cpu)
        for streams in (int(s) for s in args.streams.split(",")):
            for kind in candidates:
                for pair in kinds:
                    sides = ([Side("ray", args.ray, first_cpu), Side("plain", None, second_cpu)] if pair == "ray/plain"
                             else [Side("plain", None, first_cpu), Side("plain", None, second_cpu)])
                    got = run_pair(servers, kind, streams, args.seconds, sides, nice, tokens, warmup_s, cpu_seconds)
                    results.setdefault((pair, kind, streams), []).append(got)
                    cells = []
                    for s in got["sides"]:
                        low = s["cpu_share"] < FULL_CORE
                        if low:
                            starved.append(f"round {r} {streams} streams {kind} {pair}: {s['label']} on CPU "
                                           f"{s['cpu']} at {s['cpu_share']:.0%}")
                        cells.append(f"{s['cpu']:>3} {s['tokens_per_s']:>9,.0f} {s['cpu_share']:>5.0%}"
                                     f"{'!' if low else ' '}{s['per_cpu_s']:>10,.0f} {s['nice']:>6}")
                    print(f"{r:>5} {streams:>7} {kind:>10} {pair:>11} | {cells[0]} | {cells[1]} | "
                          f"{got['ratio_cpu']:>9.3f} {got['ratio_tps']:>6.3f} {got['server_per_s']:>9,.0f} "
                          f"{got['took']:>8}", flush=True)
    if starved:
        print(f"WARNING: {len(starved)} worker(s) below {FULL_CORE:.0%} of their core (server-bound or disturbed: "
              "add --servers, or read their tok/CPU-s with care; marked ! above):")
        for line in starved:
            print(f"  {line}")
    print(f"{sum(len(v) for v in results.values())} pairs in {time.monotonic() - began:.0f} s")
    print("\ngeometric mean of the ratios ± standard error [95% t interval]:")
    for pair in kinds:
        for (p, kind, streams), got in sorted(results.items()):
            if p == pair:
                per_cpu, per_s = summarize([g["ratio_cpu"] for g in got]), summarize([g["ratio_tps"] for g in got])
                print(f"  {pair:>11} {kind:>10} {streams:>4} streams  tok/CPU-s {per_cpu}   tok/s {per_s}")
        every = [g for (p, _, _), got in results.items() if p == pair for g in got]
        print(f"  {pair:>11} {'all':>10} {'':>12}  tok/CPU-s {summarize([g['ratio_cpu'] for g in every])}"
              f"   tok/s {summarize([g['ratio_tps'] for g in every])}")
    if args.ray:
        print("ray/plain below 1 is Ray's cost (overhead = 1 - ratio); the target (<= 5%) holds where the ray/plain "
              "interval lies above 0.95, and the figure is as sharp as the pairing allows when that interval is no "
              "wider than plain/plain's")

"""A deterministic synthetic session written through the real Recorder, on a virtual clock.

Used where a live server would only add noise or time: the report tests (facts with hand-chosen stamps, so the
expected figures can be computed by hand) and the one-hour replay benchmark (written in seconds, not an hour).
Every fact goes through the same ``Recorder`` sink methods the controller calls; only the clock is virtual.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from engine.config import RunConfig
from engine.control import SessionMeta
from engine.records import ControlEvent, ErrorClass, EventKind, RequestRecord, StreamProgress, TelemetrySample
from engine.storage.recorder import Recorder

NS = 1_000_000_000
_MS = 1_000_000


class VirtualClock:
    """perf_counter_ns stand-in that only moves when told to."""

    def __init__(self, t_ns: int = 10 * NS) -> None:
        self.t_ns = t_ns

    def __call__(self) -> int:
        return self.t_ns


@dataclass(frozen=True)
class SyntheticSpec:
    duration_s: float = 60.0
    rate: float = 50.0  # completions per second
    input_tokens: int = 128
    output_tokens: int = 64
    ttft_ms: float = 80.0
    itl_ms: float = 12.0
    jitter: float = 0.2  # relative spread of TTFT and ITL
    workers: int = 2
    gpus: int = 1
    watts: float = 400.0
    tick_s: float = 0.1  # progress and telemetry period
    error_every: int = 0  # every Nth request fails with http_5xx (0 = never)
    events: tuple[tuple[float, EventKind, float | None], ...] = ()
    seed: int = 1
    record_tokens: bool = False
    config: dict = field(default_factory=dict)


def synthetic_config(**overrides: object) -> RunConfig:
    base: dict = {"base_url": "http://127.0.0.1:9/v1", "model": "synthetic-model", "concurrency": 8}
    return RunConfig(**{**base, **overrides})


def write_synthetic(path: str | Path, spec: SyntheticSpec = SyntheticSpec(), *, pricing: object = None) -> Recorder:
    """Write a synthetic session to ``path`` and return the closed recorder."""
    clock = VirtualClock()
    t0 = clock()
    cfg = synthetic_config(**spec.config)
    system = {"telemetry_source": "sim", "gpus": [{"index": i, "name": "SimGPU"} for i in range(spec.gpus)]}
    rec = Recorder(
        path,
        config_dump=cfg.safe_dump(),
        meta=SessionMeta(endpoint=cfg.base_url, model=cfg.model, workload=cfg.workload),
        system_info=system,
        pricing_dump=pricing,
        record_tokens=spec.record_tokens,
        t0_ns=t0,
        clock=clock,
    )
    for kind, t_ns, facts in _facts(spec, t0):
        clock.t_ns = t_ns
        if kind == "r":
            rec.on_records(facts)  # type: ignore[arg-type]
        elif kind == "p":
            rec.on_progress(facts)  # type: ignore[arg-type]
        elif kind == "t":
            rec.on_telemetry(facts)  # type: ignore[arg-type]
        else:
            for e in facts:
                rec.on_event(e)  # type: ignore[arg-type]
    rec.close()
    return rec


def _facts(spec: SyntheticSpec, t0: int) -> Iterator[tuple[str, int, Iterable[object]]]:
    """Facts in arrival order, batched per tick like the controller delivers them."""
    rnd = random.Random(spec.seed)
    tick = round(spec.tick_s * NS)
    n_ticks = round(spec.duration_s / spec.tick_s)
    gap = NS / spec.rate if spec.rate > 0 else None
    next_end = t0 + (gap or 0)
    events = sorted(spec.events, key=lambda e: e[0])
    energy_mj = [1_000_000 * (i + 1) for i in range(spec.gpus)]
    rid = 0
    for k in range(1, n_ticks + 1):
        now = t0 + k * tick
        due = [e for e in events if t0 + round(e[0] * NS) <= now]
        events = events[len(due):]
        if due:
            yield "e", now, [ControlEvent(t_ns=t0 + round(t * NS), kind=kind, value=v) for t, kind, v in due]
        records: list[RequestRecord] = []
        chunks = [0] * spec.workers
        while gap is not None and next_end <= now:
            rid += 1
            records.append(_request(spec, rnd, rid, round(next_end)))
            chunks[rid % spec.workers] += records[-1].chunks
            next_end += gap
        if records:
            yield "r", now, records
        yield "p", now, [StreamProgress(worker=w, t_ns=now, chunks=c, in_flight=4, loop_lag_ms=0.2)
                         for w, c in enumerate(chunks)]
        samples = []
        for g in range(spec.gpus):
            energy_mj[g] += round(spec.watts * spec.tick_s * 1000)
            samples.append(TelemetrySample(t_ns=now, gpu_index=g, power_w=spec.watts, energy_mj=energy_mj[g],
                                           sm_clock_mhz=1980, temperature_c=60, util_gpu_pct=90,
                                           power_limit_w=700.0, enforced_limit_w=700.0))
        yield "t", now, samples


def _request(spec: SyntheticSpec, rnd: random.Random, rid: int, end: int) -> RequestRecord:
    def jit(ms: float) -> int:
        return round(ms * _MS * (1 + spec.jitter * (2 * rnd.random() - 1)))

    out = spec.output_tokens
    ttft = jit(spec.ttft_ms)
    itl = [jit(spec.itl_ms) for _ in range(out - 1)]
    sched = end - ttft - sum(itl)
    failed = spec.error_every > 0 and rid % spec.error_every == 0
    times: tuple[int, ...] = ()
    if spec.record_tokens:
        t, acc = sched + ttft, []
        acc.append(t)
        for g in itl:
            t += g
            acc.append(t)
        times = tuple(acc)
    return RequestRecord(
        worker=rid % spec.workers,
        request_id=rid,
        t_scheduled_ns=sched,
        t_start_ns=sched,
        t_headers_ns=sched + ttft // 2,
        t_first_token_ns=None if failed else sched + ttft,
        t_end_ns=end,
        input_tokens=None if failed else spec.input_tokens,
        output_tokens=0 if failed else out,
        output_estimated=False,
        chunks=0 if failed else out,
        status=500 if failed else 200,
        error=ErrorClass.HTTP_5XX if failed else None,
        error_detail="500 Internal Server Error" if failed else "",
        token_times_ns=() if failed else times,
    )

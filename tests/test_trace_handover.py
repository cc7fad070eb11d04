"""A lost worker's trace rows (--ray) go to the survivors: each row due from its last report on is sent by exactly one
of them, none before it, and a row that came due while the loss went unnoticed is sent at once at its due time.

Two real worker loops (the Ray actor's shell, ``WorkerActor``, without Ray: its own thread and event loop) replay a
trace dealt over three workers against the simulator; worker 0 never runs, as if it had died, and a handover gives
its rows from 0.525 s on to workers 1 and 2. The same through a real Ray cluster and a killed actor is in
tests/test_ray_workers.py."""

from __future__ import annotations

import json
import time
from time import perf_counter_ns

from engine_helpers import config, sim_server

from engine.load.ray_actor import WorkerActor
from engine.load.trace_feed import Handover
from engine.load.worker import Batch, Done, Go, Ready, Stop, Target, WorkerTarget
from engine.session.trace_setup import prepare_trace
from engine.snapshot import LoadMode
from engine.workload.traces import open_trace

ROWS = 30
SPACING_MS = 50  # trace time between rows: 1.5 s of trace at speed 1
LOST_FROM_S = 0.525  # the lost worker's last report, in trace seconds (between two rows)
NOTICED_S = 0.9  # when the controller hands its rows over: the rows of 0.55-0.85 s are already due


def write_trace(path) -> None:
    lines = [json.dumps({"timestamp": k * SPACING_MS, "input_length": 20, "output_length": 3, "hash_ids": [k]})
             for k in range(ROWS)]
    path.write_text("\n".join(lines) + "\n")


def collect(actors: dict[int, WorkerActor], until, timeout_s: float) -> dict[int, list]:
    """Drain every actor's outbox until ``until(messages)`` holds; bounded in time."""
    got: dict[int, list] = {i: [] for i in actors}
    deadline = time.monotonic() + timeout_s
    while not until(got):
        assert time.monotonic() < deadline, f"timed out: {[(i, len(m)) for i, m in got.items()]}"
        for i, actor in actors.items():
            got[i] += actor.take(0.02)
    return got


def test_the_lost_workers_rows_from_its_last_report_go_to_exactly_one_survivor(tmp_path):
    trace = tmp_path / "trace.jsonl"
    write_trace(trace)
    with sim_server(speed=50.0) as url:
        factory, cfg, _ = prepare_trace(config(url, workers=3), str(trace), calibrate=False)
        cfg = cfg.model_copy(update={"max_requests": None, "duration_s": None})
        rows = list(open_trace(trace).rows())
        assert len(rows) == ROWS
        actors = {i: WorkerActor(i, cfg, factory, None) for i in (1, 2)}
        seq = {i: 0 for i in actors}

        def command(i: int, msg: object) -> None:
            actors[i].command(seq[i], msg)
            seq[i] += 1

        for actor in actors.values():
            actor.start()
        collect(actors, lambda got: all(any(isinstance(m, Ready) for m in ms) for ms in got.values()), 30.0)
        t0 = perf_counter_ns()
        for i in actors:  # the deal of three workers: rows k % 3 == i
            command(i, Go(t0, WorkerTarget(LoadMode.RATE, 0, 1 / 3, i, 3, 1.0)))
        time.sleep(max(0.0, t0 / 1e9 + NOTICED_S - perf_counter_ns() / 1e9))
        handover = (Handover(0, t0 + round(LOST_FROM_S * 1e9), (1, 2)),)
        now = perf_counter_ns()
        for k, i in enumerate(actors):  # the rebalance: two workers now, and worker 0's rows
            command(i, Target(WorkerTarget(LoadMode.RATE, 0, 0.5, k, 2, 1.0), now, handover))

        def records(got) -> list:
            return [r for ms in got.values() for m in ms if isinstance(m, Batch) for r in m.records]

        expected = [row for k, row in enumerate(rows) if k % 3 != 0 or row.t_s >= LOST_FROM_S]
        got = collect(actors, lambda got: len(records(got)) >= len(expected), 30.0)
        for i in actors:
            command(i, Stop(1.0))
        rest = collect(actors, lambda more: all(any(isinstance(m, Done) for m in ms) for ms in more.values()), 30.0)
        got = {i: got[i] + rest[i] for i in actors}

    sent = records(got)
    assert all(r.ok for r in sent), [r.error_detail for r in sent if not r.ok][:3]
    noticed_s = (now - t0) / 1e9
    late = [row for k, row in enumerate(rows) if k % 3 == 0 and LOST_FROM_S <= row.t_s < noticed_s]
    on_time = [row for row in expected if row not in late]
    # every row once (none twice, none of worker 0's before its last report), each at its own due time...
    assert sorted(round((r.t_scheduled_ns - t0) / 1e6) for r in sent if r.t_scheduled_ns != now) == [
        round(row.t_s * 1000) for row in on_time]
    # ...but those that came due while the loss went unnoticed: sent at once, scheduled at the handover
    at_handover = [r for r in sent if r.t_scheduled_ns == now]
    assert len(late) == len(at_handover) >= 2 and all(r.t_start_ns >= now for r in at_handover)
    taken = {round(row.t_s * 1000) for k, row in enumerate(rows) if k % 3 == 0 and row.t_s >= noticed_s}
    by_worker = {i: {round((r.t_scheduled_ns - t0) / 1e6) for r in sent if r.worker == i} for i in actors}
    assert by_worker[1] & taken and by_worker[2] & taken  # both survivors took some of them

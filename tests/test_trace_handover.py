"""A lost worker's trace rows (--ray) go to the survivors by count: the rows it had not started at its last report
(whatever their due times: its sender may have been late) are each sent by exactly one of them, none it started, and a
row that came due while the loss went unnoticed is sent at once, scheduled at the handover.

The first tests drive ``TraceFeed`` itself (the real trace factory, every row already due, a budget standing in for
a sender that fell behind); the last runs two real worker loops (the Ray actor's shell, ``WorkerActor``, without Ray:
its own thread and event loop) against the simulator, worker 0 never running, as if it had died after starting its
first four rows. The same through a real Ray cluster and a killed actor is in tests/test_ray_workers.py."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from time import perf_counter_ns

from engine_helpers import config, sim_server

from engine.endpoint.http_choice import open_stream_client
from engine.load.ray_actor import WorkerActor
from engine.load.trace_feed import OWN, Handover, TraceFeed
from engine.load.worker import Batch, Done, Go, Ready, Stop, Target, WorkerTarget, _Worker
from engine.session.trace_setup import prepare_trace
from engine.snapshot import LoadMode
from engine.workload.traces import open_trace

ROWS = 30
SPACING_MS = 50  # trace time between rows: 1.5 s of trace at speed 1
LOST_FROM_S = 0.525  # the lost worker's last report, in trace seconds (between two rows)
NOTICED_S = 0.9  # when the controller hands its rows over: the rows of 0.55-0.85 s are already due


def write_trace(path, rows: int = ROWS) -> None:
    lines = [json.dumps({"timestamp": k * SPACING_MS, "input_length": 20, "output_length": 3, "hash_ids": [k]})
             for k in range(rows)]
    path.write_text("\n".join(lines) + "\n")


def factory_of(tmp_path, workers: int, rows: int = ROWS):
    trace = tmp_path / "trace.jsonl"
    write_trace(trace, rows)
    factory, _, _ = prepare_trace(config("http://127.0.0.1:9/v1", workers=workers), str(trace), calibrate=False,
                                  max_context=100_000)  # no server is asked anything
    return factory, list(open_trace(trace).rows())


def drive(feed: TraceFeed, most: int | None = None) -> list:
    """Send what ``feed`` has, every row already due (the clock anchored long ago), stopping after ``most``: a
    sender that started only that many of its due rows."""
    sent: list = []
    starts = itertools.count()
    feed.clock.run(1.0, perf_counter_ns() - 10**12)
    asyncio.run(feed.run(lambda: most is None or next(starts) < most, lambda row, due: sent.append(row)))
    return sent


def take(feed: TraceFeed, handovers: list[Handover]) -> None:
    """What the worker loop does with a target's handovers, on this thread: find each stream's first row, merge."""
    taken = [(key, first, rest) for key, rest in feed.take_over(handovers) if (first := next(rest, None)) is not None]
    feed.adopt(taken)


def test_a_late_senders_due_but_unstarted_rows_go_to_the_survivors(tmp_path):
    factory, rows = factory_of(tmp_path, 3)
    lost = TraceFeed(factory, 0, 3)
    started = drive(lost, most=2)
    # its report came at 0.525 s of trace: rows 0, 0.15, 0.30 and 0.45 s were due, but it had started two of them
    assert [round(r.t_s, 2) for r in started] == [0.0, 0.15]
    assert lost.started_counts() == (((0, OWN), 2),)
    handover = Handover(0, lost.started_counts(), (1, 2))
    survivors = {i: TraceFeed(factory, i, 3) for i in (1, 2)}
    sent = {}
    for i, feed in survivors.items():
        take(feed, [handover])
        sent[i] = drive(feed)
    everyone = started + sent[1] + sent[2]
    assert sorted(r.row for r in everyone) == sorted(r.row for r in rows)  # every row once: none lost, none twice
    late = {r.row for r in rows[:30:3] if 0.3 <= r.t_s < LOST_FROM_S}
    assert late and late <= {r.row for r in sent[1] + sent[2]}  # due at the report but unstarted: taken
    moved = {r.row for r in rows[::3]} - {r.row for r in started}
    assert {r.row for r in sent[1]} & moved and {r.row for r in sent[2]} & moved  # both take some
    # each survivor reports the taken stream apart from its own
    assert {key for key, _ in survivors[1].started_counts()} == {(1, OWN), (0, 0)}


def test_a_survivor_lost_in_turn_hands_over_its_own_and_its_taken_rows(tmp_path):
    factory, rows = factory_of(tmp_path, 4, rows=60)
    first = TraceFeed(factory, 0, 4)
    started = drive(first, most=3)
    h0 = Handover(0, first.started_counts(), (1, 2, 3))
    second = TraceFeed(factory, 1, 4)
    take(second, [h0])
    started += drive(second, most=6)  # its own rows and worker 0's, merged in time order: some of each
    counts = dict(second.started_counts())
    assert counts[(1, OWN)] > 0 and counts[(0, 0)] > 0
    h1 = Handover(1, second.started_counts(), (2, 3))
    third, fourth = TraceFeed(factory, 2, 4), TraceFeed(factory, 3, 4)
    take(third, [h0])  # one target with the first handover, the next with both
    take(third, [h0, h1])
    take(fourth, [h0, h1])  # or both at once: the same rows
    sent = {2: drive(third), 3: drive(fourth)}
    everyone = started + sent[2] + sent[3]
    assert sorted(r.row for r in everyone) == sorted(r.row for r in rows)  # every row once
    # worker 1's own rows and its share of worker 0's went on past what it had started
    relayed = {key for key, n in fourth.started_counts() if n} | {key for key, n in third.started_counts() if n}
    assert {(0, 1), (1, 1)} <= relayed


def test_a_report_does_not_count_a_just_recorded_request_as_unrecorded(tmp_path):
    """A request whose record is in the batch but whose task's done callback has not run yet (it runs a loop turn
    later) is not among the requests a loss would count: counted there too, it would be a record and worker_lost."""
    factory, _ = factory_of(tmp_path, 1)
    cfg = config("http://127.0.0.1:9/v1")
    sent: list = []

    class Outbox:
        on_broken = staticmethod(lambda: None)

        def send(self, obj: object) -> None:
            sent.append(obj)

    async def scenario() -> None:
        worker = _Worker(0, cfg, factory, None, Outbox(), None)  # type: ignore[arg-type]
        async with open_stream_client(cfg, "lean") as client:
            worker._client = client

            async def request() -> None:
                worker._records.append("a record")

            task = asyncio.get_running_loop().create_task(request())
            worker._in_flight.add(task)
            task.add_done_callback(worker._in_flight.discard)
            await asyncio.sleep(0)  # the request ends this turn; its done callback is due the next
            assert task.done() and task in worker._in_flight
            worker._report()

    asyncio.run(scenario())
    (batch,) = sent
    assert batch.records == ["a record"] and batch.unrecorded == 0  # what a loss would count as worker_lost
    assert batch.progress.in_flight == 1  # the live figure: until its replacement starts (see _report)
    assert batch.trace_started == (((0, OWN), 0),)


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
        # worker 0 had started its rows due before 0.525 s (0, 0.15, 0.30, 0.45): the rest go to 1 and 2
        handover = (Handover(0, (((0, OWN), 4),), (1, 2)),)
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

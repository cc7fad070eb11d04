"""Open-loop arrivals: seeded, absolute, at the asked rate, and latency counted from the schedule."""

import statistics

import pytest
from engine_helpers import CollectingSink, SlowFactory, config, run_to_end, sim_server, sim_stamps

from engine.load.controller import Controller
from engine.load.schedule import PoissonArrivals, split_concurrency, split_rate, worker_seed
from engine.snapshot import LoadMode


@pytest.mark.parametrize(("total", "workers"), [(0, 1), (1, 3), (8, 3), (256, 5), (7, 7)])
def test_concurrency_shares_sum_to_the_target_and_differ_by_at_most_one(total, workers):
    shares = split_concurrency(total, workers)
    assert len(shares) == workers and sum(shares) == total and max(shares) - min(shares) <= 1


def test_rate_shares_sum_to_the_target():
    assert sum(split_rate(30.0, 4)) == pytest.approx(30.0)
    assert len({worker_seed(0, i) for i in range(8)}) == 8


def test_arrivals_are_seeded_absolute_and_average_the_rate():
    a, b = PoissonArrivals(50.0, 9, 1_000), PoissonArrivals(50.0, 9, 1_000)
    due_a = [a.next_due_ns() for _ in range(20_000)]
    assert due_a == [b.next_due_ns() for _ in range(20_000)]
    gaps = [y - x for x, y in zip([1_000, *due_a], due_a, strict=False)]
    assert statistics.fmean(gaps) == pytest.approx(1e9 / 50.0, rel=0.03)
    # exponential gaps: the standard deviation equals the mean
    assert statistics.pstdev(gaps) == pytest.approx(1e9 / 50.0, rel=0.05)
    a.restart(10.0, 5_000_000_000)
    assert a.next_due_ns() > 5_000_000_000 and a.rate == 10.0
    assert PoissonArrivals(0.0, 1, 0).next_due_ns() is None


def schedule_of(c: Controller, n: int, rate: float, seed: int) -> list[int]:
    arrivals = PoissonArrivals(rate, worker_seed(seed, 0), c.t0_ns)
    return [arrivals.next_due_ns() for _ in range(n)]


def run_rate(url: str, rate: float, duration_s: float, **kw) -> tuple[Controller, CollectingSink]:
    sink = CollectingSink()
    factory = kw.pop("request_factory", None)
    c = Controller(config(url, mode=LoadMode.RATE, rate=rate, duration_s=duration_s, seed=5, **kw),
                   sinks=[sink], request_factory=factory, stop_grace_s=0.5)
    run_to_end(c)
    sink.records.sort(key=lambda r: r.t_scheduled_ns)
    return c, sink


def test_rate_mode_sends_on_the_seeded_schedule_at_the_target_rate():
    with sim_server(speed=50.0) as url:
        c, sink = run_rate(url, 25.0, 2.0, max_tokens=8)
    records = sink.records
    assert records and all(r.ok for r in records)
    assert [r.t_scheduled_ns for r in records] == schedule_of(c, len(records), 25.0, 5)
    sent_in_time = [r for r in records if r.t_scheduled_ns - c.t0_ns < 2e9]
    assert 15 <= len(sent_in_time) / 2.0 <= 35  # 25/s; with seed 5 the exact count is fixed, this is a sanity band
    assert all(r.t_start_ns >= r.t_scheduled_ns - 1_000_000 for r in records)  # never sent early (1 ms timer slop)


def test_when_the_server_saturates_latency_counts_its_queue():
    # one sequence at a time, ~16 decode steps of ~7 ms each: the server manages ~8 requests/s, we send 20/s
    with sim_server(speed=1.0, max_batch=1) as url:
        c, sink = run_rate(url, 20.0, 2.0, max_tokens=16)
        truth = {r.response_id: sim_stamps(url, r.response_id) for r in sink.records}
    records = sink.records
    assert len(records) >= 6 and c.cancelled_at_stop > 0  # still queued at the server when the run stopped
    assert [r.t_scheduled_ns for r in records] == schedule_of(c, len(records), 20.0, 5)  # the sender never slowed
    ttft = [r.ttft_ns for r in records]
    waited = [truth[r.response_id]["chunk_write_ns"][0] - truth[r.response_id]["t_received_ns"] for r in records]
    # the server received each request about when it was due, then queued it: TTFT grows with the queue
    assert max(ttft) > 4 * min(ttft)
    assert all(t >= w for t, w in zip(ttft, waited, strict=True))


def test_a_client_behind_schedule_counts_its_own_delay_and_reports_it():
    # the factory holds the worker's loop 0.1 s per request: it can send 10/s of the 20/s scheduled
    with sim_server(speed=50.0) as url:
        c, sink = run_rate(url, 20.0, 2.0, max_tokens=8, request_factory=SlowFactory(0.1))
    records = sink.records
    assert [r.t_scheduled_ns for r in records] == schedule_of(c, len(records), 20.0, 5)
    send_lag = [r.t_start_ns - r.t_scheduled_ns for r in records]
    assert send_lag[-1] > 0.3e9 and send_lag[-1] > 5 * max(send_lag[0], 1)  # the backlog grows
    assert all(r.ttft_ns >= lag for r, lag in zip(records, send_lag, strict=True))  # and is part of TTFT
    health = [s.client for s in sink.snapshots if s.client.saturated]
    assert health and "send lag" in health[-1].reason

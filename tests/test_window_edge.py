"""The live window ends where every worker still reporting has reported (engine/metrics/edge.py), on injected time:
reports that reach the controller late must not make the windowed rates read low, J/token must cover the same
span, and a worker that is gone or silent must not hold the window back."""

from dataclasses import replace

import pytest

from engine.control import ControlState
from engine.gpu.energy import EnergyAccount
from engine.metrics.aggregator import Aggregator
from engine.records import RequestRecord, StreamProgress, TelemetrySample
from engine.snapshot import RunState

T0 = 1_000_000_000_000
S = 1_000_000_000
MS = 1_000_000
RUNNING = ControlState(state=RunState.RUNNING, target_concurrency=8)


def at(seconds: float) -> int:
    return T0 + round(seconds * S)


def report(worker: int, t: float, chunks: int = 10, **kw: object) -> StreamProgress:
    return StreamProgress(worker=worker, t_ns=at(t), chunks=chunks, in_flight=4, loop_lag_ms=0.1, **kw)


def feed_until(agg: Aggregator, arrivals: list[tuple[int, object]], pos: int, now_ns: int) -> int:
    """Hand the aggregator everything that arrived by ``now_ns`` (arrival order), as the controller does."""
    while pos < len(arrivals) and arrivals[pos][0] <= now_ns:
        fact = arrivals[pos][1]
        if isinstance(fact, StreamProgress):
            agg.add_progress([fact])
        elif isinstance(fact, TelemetrySample):
            agg.add_telemetry([fact])
        else:
            assert isinstance(fact, RequestRecord)
            agg.add_records([fact])
        pos += 1
    return pos


def two_workers(seconds: float) -> list[tuple[int, object]]:
    """Two workers at 100 chunks/s each, one report every 100 ms: worker 0's reach the controller 5 ms after their
    stamp, worker 1's (reporting half a period later) 100 ms after; a GPU at a constant 300 W read at 10 Hz."""
    arrivals: list[tuple[int, object]] = []
    for k in range(1, round(seconds * 10) + 1):
        arrivals.append((at(k / 10 + 0.005), report(0, k / 10)))
        arrivals.append((at(k / 10 + 0.05 + 0.1), report(1, k / 10 + 0.05)))
        arrivals.append((at(k / 10), TelemetrySample(t_ns=at(k / 10), gpu_index=0, energy_mj=30_000 * k,
                                                     power_w=300.0)))
    arrivals.sort(key=lambda a: a[0])
    return arrivals


def test_a_report_lagging_by_100_ms_does_not_make_the_windowed_rate_read_low():
    """True rate 200 chunks/s. Ending the window at now misses the last ~50 ms of worker 0 and ~150 ms of worker 1
    (~10% low in a 1 s window); ending it at the edge, every snapshot reads 200 and J/token the GPU's 1.5 J."""
    arrivals = two_workers(12.0)
    agg = Aggregator(t0_ns=T0, window_s=1.0, energy=EnergyAccount(source="fake"))
    pos = 0
    snaps = []
    for k in range(200):  # snapshot times that fall anywhere between reports
        now = at(2.0 + 0.037 * k)
        pos = feed_until(agg, arrivals, pos, now)
        snaps.append(agg.snapshot(now, RUNNING))
    rates = [s.window.output_tokens_per_s for s in snaps]
    joules = [s.gpu.window.joules_per_output_token for s in snaps]
    assert min(rates) == pytest.approx(200.0, rel=0.01) and max(rates) == pytest.approx(200.0, rel=0.01)
    assert min(joules) == pytest.approx(1.5, rel=0.01) and max(joules) == pytest.approx(1.5, rel=0.01)
    lags = [round(s.t_s - s.window.end_s, 9) for s in snaps]
    assert 0.1 <= min(lags) and max(lags) <= 0.2 + 1e-9  # the edge is worker 1's latest report


def test_main_behaviour_is_kept_behind_the_switch_and_reads_low():
    """``watermark=False`` is the window ending at now (what tests/bench/window_edge.py compares against)."""
    arrivals = two_workers(6.0)
    agg = Aggregator(t0_ns=T0, window_s=1.0, workers=2, watermark=False)
    pos = 0
    rates = []
    for k in range(80):
        now = at(2.0 + 0.037 * k)
        pos = feed_until(agg, arrivals, pos, now)
        snap = agg.snapshot(now, RUNNING)
        assert snap.window.end_s == snap.t_s
        rates.append(snap.window.output_tokens_per_s)
    assert min(rates) < 0.96 * 200.0 and sum(rates) / len(rates) < 0.98 * 200.0


def test_a_silent_worker_holds_the_edge_back_one_second_at_most_and_a_final_report_not_at_all():
    agg = Aggregator(t0_ns=T0, window_s=10.0, workers=3)
    for k in range(1, 51):  # worker 0 reports to 5.0 s; worker 1 stops at 2.0 s; worker 2 says goodbye at 1.0 s
        agg.add_progress([report(0, k / 10)])
        if k <= 20:
            agg.add_progress([report(1, k / 10)])
        if k <= 10:
            agg.add_progress([report(2, k / 10, final=k == 10)])
    assert agg.snapshot(at(2.9), RUNNING).window.end_s == pytest.approx(2.0)  # worker 1 is waited for ...
    assert agg.snapshot(at(3.05), RUNNING).window.end_s == pytest.approx(3.05)  # ... for one second, then not
    agg.add_progress([report(1, 3.1, chunks=7)])  # it is back: its chunks are late, never lost
    snap = agg.snapshot(at(5.0), RUNNING)
    assert snap.window.end_s == pytest.approx(5.0)
    assert snap.window.output_tokens == snap.total.output_tokens == 500 + 200 + 100 + 7
    # a worker that never reported is waited for from the start, for one second
    fresh = Aggregator(t0_ns=T0, window_s=10.0, workers=2)
    fresh.add_progress([report(0, k / 10) for k in range(1, 9)])
    assert fresh.snapshot(at(0.8), RUNNING).window.end_s == 0.0
    assert fresh.snapshot(at(1.05), RUNNING).window.end_s == pytest.approx(0.8)


def test_the_edge_holds_records_and_first_tokens_of_faster_workers_until_it_passes_them():
    agg = Aggregator(t0_ns=T0, window_s=10.0, workers=2)
    ended = RequestRecord(worker=0, request_id=1, t_scheduled_ns=at(0.5), t_start_ns=at(0.5), t_headers_ns=at(0.6),
                          t_first_token_ns=at(0.6), t_end_ns=at(1.15), input_tokens=10, output_tokens=5,
                          output_estimated=False, chunks=5, status=200)
    agg.add_progress([report(0, 1.0, chunks=0, first_tokens=((1, at(0.6), at(0.5)),)), report(1, 1.0, chunks=0)])
    agg.add_progress([replace(report(0, 1.2, chunks=5), in_flight=0)])
    agg.add_records([ended])
    held = agg.snapshot(at(1.25), RUNNING)  # worker 1 has reported to 1.0 s only: the record (1.15 s) waits
    assert held.window.end_s == pytest.approx(1.0)
    assert (held.window.requests, held.window.ttft.count, held.total.requests) == (0, 1, 1)
    agg.add_progress([report(1, 1.2, chunks=0)])
    passed = agg.snapshot(at(1.3), RUNNING)
    assert passed.window.end_s == pytest.approx(1.2) and passed.window.requests == 1
    assert passed.window.output_tokens == 5 and passed.window.ttft.count == 1

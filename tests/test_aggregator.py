"""The aggregator on hand-built records with known stamps: every expected figure is worked out in the test."""

import numpy as np
import pytest

from engine.control import ControlState, SessionMeta
from engine.metrics.aggregator import Aggregator
from engine.metrics.histogram import RELATIVE_ERROR
from engine.records import ControlEvent, ErrorClass, EventKind, RequestRecord, StreamProgress
from engine.snapshot import CostStats, LoadMode, RunState

T0 = 1_000_000_000_000  # an arbitrary perf_counter origin
S = 1_000_000_000
MS = 1_000_000
RUNNING = ControlState(state=RunState.RUNNING, target_concurrency=4)


def at(seconds: float) -> int:
    return T0 + round(seconds * S)


def ok(sched: float, first: float, end: float, out: int, *, inp: int | None = 10, start: float | None = None,
       chunks: int | None = None, times: tuple[float, ...] = (), estimated: bool = False, worker: int = 0,
       rid: int = 0) -> RequestRecord:
    return RequestRecord(
        worker=worker, request_id=rid, t_scheduled_ns=at(sched), t_start_ns=at(sched if start is None else start),
        t_headers_ns=at(first), t_first_token_ns=at(first), t_end_ns=at(end), input_tokens=inp, output_tokens=out,
        output_estimated=estimated, chunks=out if chunks is None else chunks, status=200,
        token_times_ns=tuple(at(t) for t in times),
    )


def failed(end: float, cls: ErrorClass, detail: str = "", *, chunks: int = 0, rid: int = 0) -> RequestRecord:
    return RequestRecord(
        worker=0, request_id=rid, t_scheduled_ns=at(end - 0.01), t_start_ns=at(end - 0.01), t_headers_ns=None,
        t_first_token_ns=None, t_end_ns=at(end), input_tokens=None, output_tokens=chunks, output_estimated=True,
        chunks=chunks, status=500 if cls is ErrorClass.HTTP_5XX else None, error=cls, error_detail=detail,
    )


def tick(t: float, chunks: int, *, worker: int = 0, in_flight: int = 0, lag: float = 0.0) -> StreamProgress:
    return StreamProgress(worker=worker, t_ns=at(t), chunks=chunks, in_flight=in_flight, loop_lag_ms=lag)


def exact_quantile(values, q: float) -> float:
    s = np.sort(np.asarray(values))
    return float(s[max(0, int(np.ceil(q * len(s))) - 1)])


def test_hand_computed_figures_over_window_and_total():
    # ITL from the records' chunk stamps: the path of recordings made before ticks carried ITL (schema < 3)
    agg = Aggregator(t0_ns=T0, itl_from_ticks=False,
                     meta=SessionMeta(endpoint="http://127.0.0.1:1/v1", model="m", workload="w"))
    r1 = ok(1.0, 1.1, 2.0, 11, inp=50, times=tuple(1.1 + 0.09 * i for i in range(11)))  # ITL 90 ms x10, TPOT 90
    r2 = ok(2.0, 2.2, 3.0, 5, inp=30, times=(2.2, 2.4, 2.6, 2.8, 3.0))  # ITL 200 ms x4, TPOT 200
    r3 = ok(3.0, 3.3, 4.0, 8, inp=20, start=3.005)  # sent 5 ms late; TTFT 300 from the schedule; TPOT 100
    bad = failed(4.5, ErrorClass.HTTP_5XX, "500 Internal Server Error")
    agg.add_progress([tick(2.0, 11), tick(3.0, 5), tick(4.0, 8), tick(5.0, 0)])  # the failure ships on the last
    agg.add_records([r1, r2, r3, bad])
    snap = agg.snapshot(at(5.0), RUNNING)

    assert (snap.seq, snap.t_s, snap.endpoint, snap.model, snap.workload) == (1, 5.0, "http://127.0.0.1:1/v1", "m", "w")
    assert (snap.state, snap.target_concurrency) == (RunState.RUNNING, 4)
    for w in (snap.window, snap.total):
        assert w.span_s == 5.0  # not 10 s: the session is 5 s old
        assert (w.requests, w.errors, w.errors_by_class) == (3, 1, {"http_5xx": 1})
        assert w.error_rate == 0.25
        assert w.requests_per_s == pytest.approx(3 / 5)
        assert (w.input_tokens, w.output_tokens) == (100, 24)
        assert w.input_tokens_per_s == pytest.approx(20.0)
        assert w.output_tokens_per_s == pytest.approx(4.8)
        assert w.ttft.count == 3 and w.ttft.mean == pytest.approx(200.0) and w.ttft.max == pytest.approx(300.0)
        assert w.ttft.p50 == pytest.approx(200.0, rel=RELATIVE_ERROR)
        assert w.e2e.count == 3 and w.e2e.p50 == pytest.approx(1000.0) and w.e2e.p99 == pytest.approx(1000.0)
        assert w.itl.count == 14 and w.itl.mean == pytest.approx((10 * 90 + 4 * 200) / 14)
        assert w.itl.p50 == pytest.approx(90.0, rel=RELATIVE_ERROR) and w.itl.max == pytest.approx(200.0)
        assert w.tpot.count == 3 and w.tpot.mean == pytest.approx(130.0) and w.tpot.max == pytest.approx(200.0)
    assert snap.client.schedule_lag_ms == pytest.approx(5.0, rel=RELATIVE_ERROR)
    assert not snap.client.saturated and snap.client.reason == ""
    assert not snap.tokens_estimated and not snap.input_tokens_unknown
    assert snap.gpu.available is False and snap.gpu.message == "no GPU telemetry"
    assert snap.cost == CostStats()
    assert agg.snapshot(at(5.25), RUNNING).seq == 2


def test_rates_in_the_first_second_use_the_elapsed_span():
    agg = Aggregator(t0_ns=T0)
    agg.add_records([ok(0.0, 0.05, 0.1 * (i + 1), 1, rid=i) for i in range(5)])
    w = agg.snapshot(at(0.5), RUNNING).window
    assert w.span_s == 0.5 and w.requests_per_s == pytest.approx(10.0)


def test_window_slides_and_old_records_fall_out():
    agg = Aggregator(t0_ns=T0, window_s=10.0)
    agg.add_progress([tick(1.5, 3), tick(12.5, 7)])
    agg.add_records([ok(1.0, 1.2, 1.5, 3, inp=100, rid=1), ok(12.0, 12.1, 12.5, 7, inp=40, rid=2)])
    snap = agg.snapshot(at(12.5), RUNNING)
    # slots are 1 s: the window is the whole slots from 3 s on plus the current one, 9.5 s in all
    assert snap.window.span_s == pytest.approx(9.5)
    assert (snap.window.requests, snap.window.input_tokens, snap.window.output_tokens) == (1, 40, 7)
    assert snap.window.requests_per_s == pytest.approx(1 / 9.5)
    assert snap.window.ttft.count == 1 and snap.window.ttft.max == pytest.approx(100.0)
    assert (snap.total.requests, snap.total.input_tokens, snap.total.output_tokens) == (2, 140, 10)
    assert snap.total.span_s == 12.5 and snap.total.requests_per_s == pytest.approx(2 / 12.5)
    assert snap.total.ttft.max == pytest.approx(200.0)
    agg.add_records([ok(1.0, 1.1, 2.0, 5, rid=3)])  # a straggler from a slot that already left the window
    again = agg.snapshot(at(12.75), RUNNING)
    assert (again.window.requests, again.total.requests, again.total.input_tokens) == (1, 3, 150)
    later = agg.snapshot(at(30.0), RUNNING)
    assert later.window.requests == 0 and later.window.ttft.p50 is None and later.window.span_s == 10.0
    assert later.total.requests == 3


def test_window_span_stays_within_one_slot_of_the_window():
    agg = Aggregator(t0_ns=T0, window_s=10.0)
    spans = [agg.snapshot(at(10 + k * 0.07), RUNNING).window.span_s for k in range(100)]
    assert all(9.0 < s <= 10.0 for s in spans)
    assert min(spans) < 9.2 and max(spans) > 9.9


def test_merged_percentiles_match_numpy_on_synthetic_data():
    rng = np.random.default_rng(3)
    n = 6000
    ends = np.sort(rng.uniform(0.5, 30.0, n))
    ttft = rng.lognormal(-2.5, 0.8, n)
    gaps = rng.lognormal(-4.0, 0.5, (n, 4))
    records = []
    for i in range(n):
        first = ends[i] - gaps[i].sum()
        times = tuple(first + np.concatenate([[0.0], np.cumsum(gaps[i])]))
        records.append(ok(first - ttft[i], first, ends[i], 5, times=times, rid=i))
    agg = Aggregator(t0_ns=T0, window_s=10.0, itl_from_ticks=False)
    for start in range(0, n, 250):  # batches span slot boundaries
        agg.add_records(records[start:start + 250])
    snap = agg.snapshot(at(30.0), RUNNING)
    ttft_ms = np.array([r.ttft_ns / MS for r in records])
    itl_ms = np.array([np.diff(r.token_times_ns) / MS for r in records])
    ended_in_window = np.array([r.t_end_ns >= at(20.0) for r in records])
    first_in_window = np.array([r.t_first_token_ns >= at(20.0) for r in records])  # TTFT counts at its first token
    everything = np.ones(n, bool)
    for stats, ended, first in ((snap.window, ended_in_window, first_in_window), (snap.total, everything, everything)):
        assert stats.ttft.count == first.sum() and stats.itl.count == 4 * ended.sum()
        for q, got_ttft, got_itl in ((0.5, stats.ttft.p50, stats.itl.p50), (0.9, stats.ttft.p90, stats.itl.p90),
                                     (0.95, stats.ttft.p95, stats.itl.p95), (0.99, stats.ttft.p99, stats.itl.p99)):
            assert got_ttft == pytest.approx(exact_quantile(ttft_ms[first], q), rel=RELATIVE_ERROR)
            assert got_itl == pytest.approx(exact_quantile(itl_ms[ended].ravel(), q), rel=RELATIVE_ERROR)
        assert stats.ttft.mean == pytest.approx(ttft_ms[first].mean(), rel=1e-9)
        assert stats.ttft.max == pytest.approx(ttft_ms[first].max(), rel=1e-9)


def test_progress_is_counted_live_and_usage_corrects_it_exactly():
    agg = Aggregator(t0_ns=T0)
    # two long requests stream 45 and 35 chunks; usage says 52 (several tokens in some chunks) and 29 (some chunks
    # carried no token of their own): the totals must end at usage, exactly
    agg.add_progress([tick(0.5 + 0.5 * k, 5, worker=w, in_flight=1) for k in range(8) for w in (0, 1)][:14])
    mid = agg.snapshot(at(4.0), RUNNING)
    # the window ends at the workers' last reports (3.5 s): 70 chunks over 3.5 s, not over 4 s
    assert mid.window.end_s == 3.5 and mid.window.span_s == 3.5
    assert mid.window.requests == 0 and mid.window.output_tokens == 70 and mid.window.output_tokens_per_s == 20.0
    assert mid.in_flight == 2
    agg.add_progress([tick(4.5, 10, worker=0, in_flight=0), tick(4.5, 0, worker=1, in_flight=0)])
    agg.add_records([ok(0.0, 0.5, 4.5, 52, chunks=45, worker=0), ok(0.0, 0.5, 4.4, 29, chunks=35, worker=1)])
    done = agg.snapshot(at(5.0), RUNNING)
    assert done.total.output_tokens == 52 + 29 and done.window.output_tokens == 52 + 29
    assert done.in_flight == 0 and not done.tokens_estimated


def test_estimated_and_unknown_token_flags_are_sticky():
    agg = Aggregator(t0_ns=T0)
    agg.add_records([failed(0.5, ErrorClass.CONNECT)])  # estimated, but zero tokens: nothing was estimated
    agg.add_records([ok(0.0, 0.1, 0.9, 4)])
    first = agg.snapshot(at(1.0), RUNNING)
    assert not first.tokens_estimated and not first.input_tokens_unknown
    agg.add_progress([tick(1.5, 6)])
    agg.add_records([ok(1.0, 1.1, 1.5, 6, inp=None, estimated=True)])
    second = agg.snapshot(at(2.0), RUNNING)
    assert second.tokens_estimated and second.input_tokens_unknown
    assert second.total.input_tokens == 10  # the unknown input counts as 0
    late = agg.snapshot(at(60.0), RUNNING)  # the estimate left the window but is still inside the totals
    assert late.window.requests == 0 and late.tokens_estimated and late.input_tokens_unknown


def test_errors_by_class_and_rate_limited_error_events():
    agg = Aggregator(t0_ns=T0)
    storm = [failed(1.0 + i / 1000, ErrorClass.HTTP_5XX, "500 Internal Server Error", rid=i) for i in range(1000)]
    timeouts = [failed(1.05 + i / 10, ErrorClass.TIMEOUT, "no bytes for 60 s", rid=i) for i in range(9)]
    agg.add_records(storm[:500] + timeouts + storm[500:])
    agg.add_records([ok(0.5, 0.6, 1.5, 3)])
    first = agg.snapshot(at(1.5), RUNNING)
    assert first.window.errors_by_class == {"http_5xx": 1000, "timeout": 9}
    assert first.window.errors == 1009 and first.window.requests == 1
    assert first.window.error_rate == pytest.approx(1009 / 1010)
    assert first.window.ttft.count == 1 and first.window.e2e.count == 1  # failures stay out of the latencies
    assert [(e.kind, e.message, e.t_s) for e in first.new_events] == [
        ("error", "http_5xx: 500 Internal Server Error", 1.0),
        ("error", "timeout: no bytes for 60 s", 1.05),
    ]
    second = agg.snapshot(at(2.5), RUNNING)
    assert sorted(e.message for e in second.new_events) == [
        "http_5xx x999: 500 Internal Server Error", "timeout x8: no bytes for 60 s"]
    assert agg.snapshot(at(3.5), RUNNING).new_events == ()
    agg.add_records([failed(4.0, ErrorClass.HTTP_5XX, "")])
    assert [e.message for e in agg.snapshot(at(4.1), RUNNING).new_events] == ["http_5xx: HTTP 500"]


def test_in_flight_and_client_health_from_progress():
    agg = Aggregator(t0_ns=T0)
    # out of order on purpose: the latest report of each worker is chosen by its stamp, not by its arrival
    agg.add_progress([tick(1.2, 1, worker=0, in_flight=7, lag=3.0), tick(1.0, 1, worker=0, in_flight=5, lag=2.0),
                      tick(1.1, 1, worker=1, in_flight=4, lag=25.0)])
    busy = agg.snapshot(at(1.5), RUNNING)
    assert busy.in_flight == 11
    assert busy.client.loop_lag_ms == 25.0 and busy.client.saturated
    assert "event-loop lag 25 ms" in busy.client.reason
    calm = agg.snapshot(at(2.5), RUNNING)  # no report in the last second: the spike is over
    assert calm.client.loop_lag_ms == 0.0 and not calm.client.saturated and calm.in_flight == 11
    agg.add_records([ok(2.0 + i / 100, 2.3, 2.5, 2, start=2.04 + i / 100, rid=i) for i in range(20)])
    late = agg.snapshot(at(3.0), RUNNING)
    assert late.client.schedule_lag_ms == pytest.approx(40.0, rel=RELATIVE_ERROR)
    assert late.client.saturated and late.client.reason.startswith("send lag p99 40 ms")


def test_steady_only_after_the_window_passed_the_last_change():
    agg = Aggregator(t0_ns=T0, window_s=10.0)
    agg.add_event(ControlEvent(t_ns=at(0.0), kind=EventKind.START))
    assert not agg.snapshot(at(5.0), RUNNING).steady
    assert agg.snapshot(at(10.0), RUNNING).steady
    agg.add_event(ControlEvent(t_ns=at(12.0), kind=EventKind.CONCURRENCY, value=16))
    assert not agg.snapshot(at(15.0), RUNNING).steady
    agg.add_event(ControlEvent(t_ns=at(16.0), kind=EventKind.ANNOTATION, message="note"))
    assert not agg.snapshot(at(21.9), RUNNING).steady
    assert agg.snapshot(at(22.0), RUNNING).steady  # annotations do not change the load
    agg.add_event(ControlEvent(t_ns=at(23.0), kind=EventKind.POWER_CAP, value=450, gpu_index=0))
    assert not agg.snapshot(at(30.0), RUNNING).steady


def test_events_are_delivered_once_with_readable_messages():
    agg = Aggregator(t0_ns=T0)
    agg.add_event(ControlEvent(t_ns=at(1.0), kind=EventKind.CONCURRENCY, value=16))
    agg.add_event(ControlEvent(t_ns=at(2.0), kind=EventKind.POWER_CAP, value=450, gpu_index=0, readback=450))
    agg.add_event(ControlEvent(t_ns=at(2.5), kind=EventKind.RATE, value=2.5))
    agg.add_event(ControlEvent(t_ns=at(3.0), kind=EventKind.WARNING, message="recording stopped: disk full"))
    agg.add_event(ControlEvent(t_ns=at(3.5), kind=EventKind.POWER_CAP, value=300))
    got = [(e.t_s, e.kind, e.message) for e in agg.snapshot(at(4.0), RUNNING).new_events]
    assert got == [
        (1.0, "concurrency", "concurrency -> 16"),
        (2.0, "power_cap", "power cap GPU0 -> 450 W (read back 450 W)"),
        (2.5, "rate", "rate -> 2.5 req/s"),
        (3.0, "warning", "recording stopped: disk full"),
        (3.5, "power_cap", "power cap all GPUs -> 300 W"),
    ]
    assert agg.snapshot(at(4.5), RUNNING).new_events == ()
    agg.add_event(ControlEvent(t_ns=at(5.0), kind=EventKind.PAUSE))
    assert [e.message for e in agg.snapshot(at(5.5), RUNNING).new_events] == ["paused"]


def test_control_state_is_passed_through():
    agg = Aggregator(t0_ns=T0, window_s=5.0, meta=SessionMeta(source="replay"))
    control = ControlState(state=RunState.PAUSED, mode=LoadMode.RATE, target_rate=3.5, recording="/tmp/r.wattload",
                           message="paused by operator")
    snap = agg.snapshot(at(2.0), control)
    assert (snap.source, snap.state, snap.mode, snap.target_rate, snap.recording, snap.message, snap.window_s) == (
        "replay", RunState.PAUSED, LoadMode.RATE, 3.5, "/tmp/r.wattload", "paused by operator", 5.0)


def _session(seed: int) -> list[tuple[int, str, object]]:
    """A random but time-ordered stream of records, progress and events over 30 s, two workers."""
    rng = np.random.default_rng(seed)
    items: list[tuple[int, str, object]] = []
    for i in range(600):
        sched = rng.uniform(0, 28)
        first = sched + rng.uniform(0.01, 0.4)
        n = int(rng.integers(1, 12))
        times = tuple(first + np.cumsum(np.r_[0.0, rng.uniform(0.005, 0.05, n - 1)]))
        end = times[-1] + 0.001
        if rng.random() < 0.1:
            r = failed(end, ErrorClass.HTTP_5XX if rng.random() < 0.7 else ErrorClass.TIMEOUT, "boom", rid=i)
        else:
            r = ok(sched, first, end, n + int(rng.integers(0, 3)), chunks=n, times=times, worker=i % 2,
                   estimated=bool(rng.random() < 0.05), inp=int(rng.integers(5, 50)), rid=i,
                   start=sched + rng.uniform(0, 0.02))
        items.append((r.t_end_ns, "record", r))
    for k in range(300):
        for w in (0, 1):
            items.append((at(k * 0.1 + 0.01 * w), "progress",
                          tick(k * 0.1 + 0.01 * w, int(rng.integers(0, 40)), worker=w,
                               in_flight=int(rng.integers(0, 9)), lag=float(rng.uniform(0, 15)))))
    for t, v in ((0.0, None), (7.3, 8.0), (15.1, 16.0)):
        kind = EventKind.START if v is None else EventKind.CONCURRENCY
        items.append((at(t) + 1, "event", ControlEvent(t_ns=at(t) + 1, kind=kind, value=v)))
    items.sort(key=lambda it: it[0])
    return items


def _replay(items, batch_sizes) -> list:
    """Feed items in batches (sizes drawn in turn), snapshotting every 250 ms with everything up to that time."""
    agg = Aggregator(t0_ns=T0)
    snaps, pos, b = [], 0, 0
    for k in range(1, 121):
        now = at(k * 0.25)
        due = []
        while pos < len(items) and items[pos][0] <= now:
            due.append(items[pos])
            pos += 1
        while due:
            size = batch_sizes[b % len(batch_sizes)]
            b += 1
            batch, due = due[:size], due[size:]
            for kind in ("record", "progress", "event"):
                objs = [obj for _, kd, obj in batch if kd == kind]
                if kind == "record" and objs:
                    agg.add_records(iter(objs))
                elif kind == "progress" and objs:
                    agg.add_progress(objs)
                else:
                    for e in objs:
                        agg.add_event(e)
        snaps.append(agg.snapshot(now, RUNNING).model_dump())
    return snaps


def test_replay_gives_identical_snapshots_whatever_the_batching():
    items = _session(11)
    whole = _replay(items, [10**9])
    assert whole == _replay(items, [1])
    assert whole == _replay(items, [3, 17, 1, 64, 5])
    assert whole[-1]["total"]["requests"] > 400 and whole[-1]["total"]["errors"] > 20  # the session is not empty
    assert any(s["new_events"] for s in whole)


def test_memory_is_bounded_by_the_window_over_a_long_session():
    agg = Aggregator(t0_ns=T0, window_s=10.0)
    for k in range(1200):  # 20 minutes at 2 req/s, a snapshot every second
        t = k * 1.0
        agg.add_progress([tick(t + 0.5, 8, in_flight=1)])
        agg.add_records([ok(t, t + 0.2, t + 0.5, 4, rid=2 * k), ok(t, t + 0.3, t + 0.9, 4, rid=2 * k + 1)])
        agg.snapshot(at(t + 1.0), RUNNING)
        assert agg.window_slots <= 11
    no_snapshots = Aggregator(t0_ns=T0, window_s=10.0)
    for k in range(1000):
        no_snapshots.add_records([ok(k, k + 0.1, k + 0.5, 2, rid=k)])
        assert no_snapshots.window_slots <= 31
    final = agg.snapshot(at(1201.0), RUNNING)
    assert final.total.requests == 2400 and final.total.output_tokens == 4 * 2400


def test_energy_window_matches_the_span_the_tokens_cover():
    from engine.gpu.energy import EnergyAccount
    from engine.records import TelemetrySample

    energy = EnergyAccount(source="fake")
    agg = Aggregator(t0_ns=T0, window_s=10.0, energy=energy)
    agg.add_event(ControlEvent(t_ns=at(0.0), kind=EventKind.START))
    # one GPU at a constant 300 W (counter in mJ), 100 output tokens per second in 10 ticks a second
    agg.add_telemetry(TelemetrySample(t_ns=at(k / 10), gpu_index=0, energy_mj=30_000 * k, power_w=300.0)
                      for k in range(206))
    agg.add_progress(tick((k + 0.5) / 10, 10) for k in range(205))  # 0.05 s .. 20.45 s
    snap = agg.snapshot(at(20.5), RUNNING)
    assert snap.gpu.available and snap.steady and snap.gpu.window.steady
    # the window ends at the last report (20.45 s) and starts with slot 11: the energy must cover the same 9.45 s
    assert snap.window.end_s == pytest.approx(20.45) and snap.window.span_s == pytest.approx(9.45)
    assert snap.window.output_tokens == 945  # the 11.05 s report's chunks arrived over (10.95, 11.05]: half of them
    assert snap.gpu.window.energy_j == pytest.approx(300.0 * 9.45)
    assert snap.gpu.window.joules_per_output_token == pytest.approx(3.0)
    assert snap.gpu.total.energy_j == pytest.approx(300.0 * 20.5) and snap.total.output_tokens == 2050
    assert snap.gpu.total.joules_per_output_token == pytest.approx(3.0)


def test_itl_on_ticks_gives_the_same_figures_as_the_records_stamps_and_enters_at_its_tick():
    """The same gaps shipped as bucket counts on ticks, or taken from a record's chunk stamps at its end, give
    identical percentiles, mean and max; on ticks they are in the window seconds before the request ends."""
    from dataclasses import replace

    from engine.metrics.histogram import interval_counts

    rng = np.random.default_rng(7)
    gaps = rng.integers(5 * MS, 80 * MS, size=400)
    first = at(1.0)
    times = tuple(int(t) for t in np.concatenate([[first], first + np.cumsum(gaps)]))
    record = replace(ok(0.9, 1.0, 1.0, len(times)), t_end_ns=times[-1], token_times_ns=times)
    from_records = Aggregator(t0_ns=T0, window_s=60.0, itl_from_ticks=False)
    from_records.add_records([record])
    from_ticks = Aggregator(t0_ns=T0, window_s=60.0)
    from_ticks.add_progress([replace(tick(2.0, 0), itl=interval_counts(gaps[:200]))])
    early = from_ticks.snapshot(at(2.5), RUNNING)
    assert early.window.itl.count == 200 and early.total.requests == 0  # long before the request ends
    from_ticks.add_progress([replace(tick(3.0, 0), itl=interval_counts(gaps[200:]))])
    from_ticks.add_records([record])  # its gaps came on the ticks: not counted again
    a = from_records.snapshot(at(40.0), RUNNING).window.itl
    b = from_ticks.snapshot(at(40.0), RUNNING).window.itl
    assert a == b and a.count == 400 and a.mean == pytest.approx(gaps.mean() / MS) and a.max == gaps.max() / MS


def test_ttfo_counts_once_from_a_tick_or_its_record_and_reasoning_shows():
    from dataclasses import replace

    agg = Aggregator(t0_ns=T0)
    thinking = replace(ok(1.0, 1.1, 3.0, 20, rid=1), t_first_output_ns=at(1.6), reasoning_chunks=5)
    plain = replace(ok(1.0, 1.2, 2.0, 20, rid=2), t_first_output_ns=at(1.2))
    agg.add_progress([replace(tick(1.3, 0), first_tokens=((1, at(1.1), at(1.0)), (2, at(1.2), at(1.0))),
                              first_outputs=((2, at(1.2), at(1.0)),))])
    s = agg.snapshot(at(1.4), RUNNING)
    assert (s.window.ttft.count, s.window.ttfo.count, s.reasoning) == (2, 1, False)  # no answer differs yet
    agg.add_progress([replace(tick(1.7, 0), first_outputs=((1, at(1.6), at(1.0)),))])
    s = agg.snapshot(at(1.8), RUNNING)
    assert s.reasoning and s.window.ttfo.count == 2 and s.window.ttfo.max == pytest.approx(600.0)
    agg.add_records([thinking, plain])
    s = agg.snapshot(at(5.0), RUNNING)
    assert (s.window.ttft.count, s.window.ttfo.count) == (2, 2)
    late = Aggregator(t0_ns=T0)  # records only (they ended between ticks): TTFO from the records
    late.add_records([thinking])
    s = late.snapshot(at(5.0), RUNNING)
    assert s.reasoning and s.window.ttfo.mean == pytest.approx(600.0) and s.window.ttft.mean == pytest.approx(100.0)

"""The controller over real worker processes against the simulated server: steering, stop conditions, sinks,
failures. One worker process mostly (spawning is the slow part); every wait has a deadline."""

import os
import signal

import httpx
import pytest
from engine_helpers import (
    CollectingSink,
    config,
    finish,
    root_of,
    run_to_end,
    sim_server,
    wait_for,
    wait_snapshot,
)

from engine.load.controller import Controller
from engine.records import EventKind
from engine.snapshot import LoadMode, RunState

START_S = 30.0  # spawning a worker on a loaded 2-core box can take seconds


@pytest.fixture(scope="module")
def slow_sim():
    """Real speed: requests of 150-300 tokens take 1-3 s, so in-flight counts hold still long enough to read."""
    with sim_server(speed=1.0, seed=1) as url:
        yield url


def test_concurrency_steps_take_effect_within_a_tick_and_lowering_cancels_nothing(slow_sim):
    sink = CollectingSink()
    c = Controller(config(slow_sim, concurrency=2, max_tokens=150, tick_hz=4), sinks=[sink], stop_grace_s=0.2)
    c.start()
    try:
        wait_snapshot(c, lambda s: s.state is RunState.RUNNING and s.in_flight == 2, START_S, "2 in flight")
        seq_before = c.latest.seq
        c.set_concurrency(6)
        s = wait_snapshot(c, lambda s: s.in_flight == 6, 10, "6 in flight")
        # Raising starts requests at once; the count reaches the snapshot with the worker's next progress report
        # (every 100 ms), i.e. on the next tick. One tick +/- a tick, counting the tick already under way: <= 3.
        assert s.seq - seq_before <= 3, (s.seq, seq_before)
        assert s.target_concurrency == 6 and s.mode is LoadMode.CONCURRENCY
        done_before = len(sink.records)
        c.set_concurrency(1)
        wait_snapshot(c, lambda s: s.in_flight == 1, 30, "in flight down to 1")
        finished_after = sink.records[done_before:]
        assert len(finished_after) >= 5 and all(r.ok for r in finished_after)  # the five extra ran to the end
    finally:
        finish(c)
    kinds = [e.kind for e in sink.events]
    assert kinds[0] is EventKind.START and EventKind.STOP in kinds
    assert [e.value for e in sink.events if e.kind is EventKind.CONCURRENCY] == [6, 1]
    assert sink.snapshots and sink.progress and sink.closed
    assert c.latest.state is RunState.STOPPED


def test_a_closed_loop_never_reports_fewer_open_requests_than_its_target():
    """A replacement starts in the callback that freed its slot. Were it a loop turn later, a report built in
    between would read one request too few: 0 for a closed loop of 1 (the matrix's drain took that for "the cell's
    load has ended" and let the next cell's figures take its last answers). Short answers at 50x: hundreds of
    request ends a second, each a chance for a report to land in such a gap."""
    sink = CollectingSink()
    with sim_server(speed=50.0, seed=2) as url:
        c = Controller(config(url, concurrency=1, max_tokens=2, tick_hz=10), sinks=[sink])
        c.start()
        try:
            # ~3 s of reports (10 a second), a few hundred request ends among them
            wait_for(lambda: sink.records and len(sink.progress) >= 32, START_S, "32 reports",
                     detail=lambda: f"{len(sink.records)} records, {len(sink.progress)} reports")  # fmt: skip
            seen = list(sink.progress)  # all made while the target was 1
        finally:
            finish(c)
    running = [p for p in seen if p.t_ns > sink.records[0].t_end_ns]  # after the first answer, before the pause
    assert len(running) >= 20 and len(sink.records) >= 100, (len(running), len(sink.records))
    assert min(p.in_flight for p in running) == 1, [p.in_flight for p in running]


def test_pause_drains_in_flight_to_zero_and_resume_restores(slow_sim):
    sink = CollectingSink()
    c = Controller(config(slow_sim, concurrency=3, max_tokens=40), sinks=[sink])
    c.start()
    try:
        wait_snapshot(c, lambda s: s.in_flight == 3, START_S, "3 in flight")
        c.pause()
        wait_snapshot(c, lambda s: s.state is RunState.PAUSED and s.in_flight == 0, 20, "paused and drained")
        seen = len(sink.records)
        before = len(sink.progress)
        wait_for(lambda: len(sink.progress) >= before + 3, 5, "three more progress reports")
        assert len(sink.records) == seen and c.latest.in_flight == 0  # nothing new started while paused
        c.resume()
        wait_snapshot(c, lambda s: s.state is RunState.RUNNING and s.in_flight == 3, 10, "3 in flight again")
    finally:
        finish(c)
    assert [e.kind for e in sink.events if e.kind in (EventKind.PAUSE, EventKind.RESUME)] == [
        EventKind.PAUSE,
        EventKind.RESUME,
    ]


def test_request_count_stops_after_exactly_n(slow_sim):
    sink = CollectingSink()
    c = Controller(config(slow_sim, concurrency=3, max_tokens=8, max_requests=7), sinks=[sink])
    run_to_end(c)
    assert len(sink.records) == 7 and c.latest.total.requests == 7
    assert c.stop_reason == "request count reached (7)" and c.latest.state is RunState.STOPPED
    assert sum(r.output_tokens for r in sink.records) == c.latest.total.output_tokens == 7 * 8


def test_two_workers_share_the_concurrency(slow_sim):
    sink = CollectingSink()
    c = Controller(config(slow_sim, concurrency=5, max_tokens=60, workers=2), sinks=[sink])
    c.start()
    try:
        wait_snapshot(c, lambda s: s.in_flight == 5, START_S, "5 in flight over two workers")
        wait_for(lambda: {r.worker for r in sink.records} == {0, 1}, 20, "records from both workers")
    finally:
        finish(c)


def test_a_dead_worker_fails_the_session_with_a_message(slow_sim):
    c = Controller(config(slow_sim, concurrency=2, max_tokens=300))
    c.start()
    try:
        wait_snapshot(c, lambda s: s.in_flight == 2, START_S, "running")
        os.kill(c.worker_pids[0], signal.SIGKILL)
        assert c.wait(20), "a dead worker must end the session, not hang it"
        assert c.latest.state is RunState.FAILED
        assert "worker 0 exited unexpectedly" in c.latest.message
    finally:
        c.close()


def test_power_caps_and_recording_controls(slow_sim, monkeypatch, tmp_path):
    monkeypatch.setenv("WATTLOAD_STATE_DIR", str(tmp_path))
    no_gpu = Controller(config(slow_sim))
    assert no_gpu.start_recording() == "recording is not available yet"
    no_gpu.close()

    recorder = CollectingSink()
    c = Controller(config(slow_sim, concurrency=1, max_tokens=20), gpu="sim", sim_url=slow_sim,
                   recorder_factory=lambda path, session: recorder)
    limit = httpx.get(f"{root_of(slow_sim)}/sim/gpu", timeout=5).json()["power_limit_w"]
    c.start()
    try:
        wait_snapshot(c, lambda s: s.gpu.available, START_S, "sim GPU telemetry")
        message = c.step_power_cap(-100)
        assert f"{limit - 100:.0f} W" in message and c.power_cap_changed
        assert httpx.get(f"{root_of(slow_sim)}/sim/gpu", timeout=5).json()["power_limit_w"] == limit - 100
        assert c.start_recording() == "collected.db"
        wait_for(lambda: len(recorder.records) >= 2, 20, "records reaching the recorder")
        wait_snapshot(c, lambda s: s.recording == "collected.db", 5, "the recording shown in the snapshot")
        assert c.stop_recording() == "recording saved to collected.db"
        wait_for(lambda: recorder.closed, 5, "the recorder closed")
    finally:
        finish(c)
    assert not c.power_cap_changed
    assert httpx.get(f"{root_of(slow_sim)}/sim/gpu", timeout=5).json()["power_limit_w"] == limit
    assert {e.kind for e in recorder.events} >= {EventKind.RECORD_START, EventKind.RECORD_STOP}
    assert Controller(config(slow_sim)).step_power_cap(10).startswith("no GPU power control: ")

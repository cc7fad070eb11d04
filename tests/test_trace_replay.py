"""Trace replay against the simulator: every row sent once, on the trace's clock, at its length by usage."""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from engine_helpers import CollectingSink, config, run_to_end, wait_for

from engine.load.controller import Controller
from engine.session.trace_setup import prepare_trace
from engine.sim.model import SimConfig
from engine.workload.traces import TraceWindow, open_trace

pytestmark = pytest.mark.slow
SAMPLES = Path(__file__).resolve().parents[1] / "profiles" / "traces"
SPEED = 3.0
WINDOW = TraceWindow(0.0, 6.0)
SIM = SimConfig(speed=50, max_model_len=32_768)  # conftest.py sim_url


def _replay(sim_url: str, name: str, **fields):
    cfg = config(sim_url, workers=1, **fields)
    factory, cfg, plan = prepare_trace(cfg, str(SAMPLES / name), speed=SPEED, window=WINDOW)
    sink = CollectingSink()
    controller = Controller(cfg, request_factory=factory, sinks=[sink])
    run_to_end(controller, timeout_s=90)
    return controller, sink.records, plan


@pytest.mark.parametrize("name", ["mooncake-sample.jsonl", "azure-sample.csv", "burstgpt-sample.csv"])
def test_each_format_replays_every_row_on_the_trace_clock_at_its_length(sim_url, name):
    controller, records, plan = _replay(sim_url, name)
    rows = list(open_trace(SAMPLES / name).rows(WINDOW))
    rows = [r for r in rows if r.output_tokens > 0]
    assert len(records) == len(rows) == plan.fingerprint.rows > 20
    assert all(r.ok for r in records), [r.error_detail for r in records if not r.ok][:3]
    t0 = controller.t0_ns
    records.sort(key=lambda r: r.t_scheduled_ns)
    # scheduled on the trace's own clock, compressed by the speed (absolute: independent of when sends happened)
    for rec, row in zip(records, rows, strict=True):
        assert (rec.t_scheduled_ns - t0) / 1e9 == pytest.approx(row.t_s / SPEED, abs=1e-3)
    lags_ms = sorted((r.t_start_ns - r.t_scheduled_ns) / 1e6 for r in records)
    assert lags_ms[0] >= -0.2, "a request went out before its due time (the sender allows 0.2 ms of timer slack)"
    # sends follow the schedule rather than each other: the median lag stays far below the rows' spacing even on
    # a busy shared machine (the bench measures the real figure: tests/bench/trace_replay.py)
    assert lags_ms[len(lags_ms) // 2] < 250, lags_ms
    # input lengths as the server counted them, per row (ties in time may swap rows of the same stamp)
    by_time: dict[int, list[int]] = {}
    for row in rows:
        by_time.setdefault(round(row.t_s * 1000), []).append(row.input_tokens)
    got: dict[int, list[int]] = {}
    for rec in records:
        got.setdefault(round((rec.t_scheduled_ns - t0) / 1e6 * SPEED), []).append(rec.input_tokens or 0)
    for stamp, targets in by_time.items():
        for target, actual in zip(sorted(targets), sorted(got[stamp]), strict=True):
            if target >= 64:  # shorter rows cannot go below the chat template's own tokens
                assert abs(actual - target) <= 0.02 * target, (stamp, target, actual)
    assert sum(r.output_tokens for r in records) == sum(r.output_tokens for r in rows)


def test_session_trace_replays_later_turns_with_the_earlier_answers(sim_url):
    _, records, plan = _replay(sim_url, "bailian-sample.jsonl")
    assert len(records) == plan.fingerprint.rows and all(r.ok for r in records)
    turns = {r.turn for r in records}
    assert 1 in turns and 2 in turns
    first = [r for r in records if r.turn == 1]
    later = [r for r in records if r.turn >= 2]
    # a continuation carries its history, so its prompt is longer than an opening on average
    assert sum(r.input_tokens or 0 for r in later) / len(later) > sum(r.input_tokens or 0 for r in first) / len(first)


def test_run_trace_headless_writes_the_fingerprint_to_json_and_the_recording(tmp_path):
    out, rec = tmp_path / "r.json", tmp_path / "r.wattload.sqlite"
    env = {**os.environ, "WATTLOAD_STATE_DIR": str(tmp_path), "XDG_STATE_HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "tui.cli", "run", "--sim", "--headless", "--trace",
           str(SAMPLES / "burstgpt-sample.csv"), "--trace-window", ":4", "--trace-speed", "4", "--json", str(out),
           "--record", str(rec), "--workers", "1"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "trace detected as BurstGPT CSV" in proc.stderr
    assert "failed in the source (0 output tokens)" in proc.stderr
    report = json.loads(out.read_text())
    trace = report["workload"]["trace"]
    assert trace["kind"] == "burstgpt" and trace["window_s"] == [0.0, 4.0]
    assert report["result"]["total"]["requests"] == trace["rows"]
    assert report["settings"]["mode"] == "rate" and report["settings"]["rate"] == 4.0
    assert report["settings"]["max_requests"] == trace["rows"]
    with sqlite3.connect(rec) as db:
        (workload,) = db.execute("SELECT value FROM meta WHERE key = 'workload'").fetchone()
    assert json.loads(workload)["trace"]["sha256"] == trace["sha256"]


def test_a_bad_trace_is_one_line_and_no_request_is_sent(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"timestamp": 5, "input_length": 10, "output_length": 2}\n'
                   '{"timestamp": 1, "input_length": 10, "output_length": 2}\n')  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "tui.cli", "run", "--sim", "--headless", "--trace", str(bad)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if "bad.jsonl" in line]
    assert lines == [f"wattload: {bad}:2: timestamp goes backwards (0.004 s before the previous row); sort the trace "
                     "by time first"]


def test_speed_changes_live_and_pause_resume_neither_skips_nor_repeats_rows(sim_url, tmp_path):
    """The rate keys call set_rate: in trace mode that is the speed. Rows 1 s apart at speed 4 (250 ms); after
    set_rate(16) they come 62.5 ms apart; a pause freezes the trace clock and a resume goes on from there."""
    path = tmp_path / "even.jsonl"
    path.write_text("".join(json.dumps({"timestamp": 1000 * i, "input_length": 40, "output_length": 2}) + "\n"
                            for i in range(40)))  # fmt: skip
    cfg = config(sim_url, workers=1)
    factory, cfg, _ = prepare_trace(cfg, str(path), speed=4.0)
    sink = CollectingSink()
    controller = Controller(cfg, request_factory=factory, sinks=[sink])
    controller.start()
    try:
        wait_for(lambda: len(sink.records) >= 6, 30, "the first rows at speed 4")
        controller.set_rate(16.0)
        wait_for(lambda: len(sink.records) >= 14, 30, "rows at speed 16")
        controller.pause()
        time.sleep(0.5)
        controller.resume()
        assert controller.wait(60), "the replay did not end with the trace"
    finally:
        controller.close()
    sched = sorted(r.t_scheduled_ns for r in sink.records)
    assert len(sched) == 40 and len(set(sched)) == 40
    gaps_ms = [(b - a) / 1e6 for a, b in itertools.pairwise(sched)]
    assert gaps_ms[1] == pytest.approx(250, abs=1) and gaps_ms[-1] == pytest.approx(62.5, abs=1)
    assert max(gaps_ms) > 400  # the pause: nothing was due while it lasted, and nothing was skipped after it

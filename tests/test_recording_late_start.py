"""A recording started with ``r`` partway through a session starts when recording starts (issue 15, item 2):
replay begins at that moment with the load settings then in force, and neither replay's since-start figures nor
the report count the span before it. Real Controller, real simulated server over 127.0.0.1, real recorder."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from engine_helpers import wait_for

from engine.config import RunConfig
from engine.load.controller import Controller
from engine.replay.player import Player
from engine.reports.report import build_report
from engine.sim.model import SimConfig
from engine.storage.reader import open_recording
from engine.storage.recorder import session_recorders

LATE_S = 2.5
SIM = SimConfig(speed=4.0, seed=5)  # conftest.py sim_url
CAP_W = 600.0  # the simulated H100's 700 W less one 100 W step


@pytest.fixture(scope="module")
def late(sim_url, tmp_path_factory):
    url = sim_url
    tmp = tmp_path_factory.mktemp("late")
    cfg = RunConfig(base_url=url, model=SimConfig().model, concurrency=2, max_tokens=24, input_tokens=32,
                    workers=1, window_s=1.0, tick_hz=4)  # fmt: skip
    c = Controller(cfg, gpu="sim", sim_url=url, stop_grace_s=0.5, recorder_factory=session_recorders())
    c.start()
    try:
        wait_for(lambda: c.t0_ns is not None, 60, "the workers to start")
        since = lambda: (time.perf_counter_ns() - c.t0_ns) / 1e9  # noqa: E731
        wait_for(lambda: since() >= 1.0, 30, "t=1")
        c.set_concurrency(4)  # before the recording: the file must still start at 4 streams
        c.step_power_cap(-100)  # and with this cap, though the change happened before it
        wait_for(lambda: any(r.power_limit_w == CAP_W for r in c.latest.gpu.gpus), 60, "the cap in the snapshots")
        wait_for(lambda: since() >= LATE_S and c.latest.target_concurrency == 4, 30, f"t={LATE_S}")
        started_at = since()
        path = Path(c.start_recording(str(tmp / "late.wattload.sqlite")))
        wait_for(lambda: since() >= LATE_S + 3.0, 30, "3 s of recording")
        c.stop()
        assert c.wait(30), "the session did not end"
    finally:
        c.close()
    return path, started_at


def test_the_file_says_when_recording_began(late):
    path, started_at = late
    with open_recording(path) as rec:
        assert rec.meta.recorded_from_us / 1e6 == pytest.approx(started_at, abs=0.2)
        control = rec.meta.start_control or {}
        assert control["mode"] == "concurrency" and control["concurrency"] == 4
        assert control["power_caps_w"] == {"0": CAP_W}  # the cap set before recording began


def test_replay_starts_when_recording_started_with_the_settings_then(late):
    path, started_at = late
    player = Player(path, playing=False)
    try:
        assert player.position_s == pytest.approx(started_at, abs=0.2)
        snap = player.latest
        assert snap.target_concurrency == 4
        player.seek_to(0)  # the span before the recording cannot be reached: it is not in the file
        assert player.wait_idle(5) and player.position_s == pytest.approx(player.start_s)
        player.seek_to(player.duration_s)
        assert player.wait_idle(5)
        end = player.latest
        assert end.total.requests > 0
        # since-start rates are over the recorded span only, not diluted by the seconds before it
        recorded_s = player.duration_s - player.start_s
        assert end.total.span_s == pytest.approx(recorded_s, abs=0.05)
        assert end.total.requests_per_s == pytest.approx(end.total.requests / recorded_s, rel=0.05)
    finally:
        player.close()


def test_the_report_counts_only_the_recorded_span(late):
    path, started_at = late
    with open_recording(path) as rec:
        report = build_report(rec)
        recorded_s = rec.duration_s - started_at
    first = report.phases[0]
    assert first.start_s == pytest.approx(started_at, abs=0.2)
    assert first.concurrency == 4 and first.requests > 0 and first.power_cap_w == CAP_W
    assert len(report.phases) == 1  # the same settings throughout the recorded span: one phase
    assert report.totals.span_s == pytest.approx(recorded_s, abs=0.25)
    assert report.totals.output_tokens_per_s == pytest.approx(report.totals.output_tokens / report.totals.span_s)

"""The dashboard over a real trace replay: the knob is the trace speed (×1.0), not a rate, and the keys say and do
so. The built-in simulator in a subprocess, the real Controller with one worker, the real Textual app via Pilot."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from engine_helpers import sim_server
from tui_canned import until

from engine.config import RunConfig
from engine.load.controller import Controller
from engine.session.trace_setup import prepare_trace
from engine.sim.model import SimConfig
from engine.snapshot import LoadMode, RunState
from tui.app import live_app
from tui.widgets.event_log import EventLogPanel
from tui.widgets.header import HeaderPanel
from tui.widgets.load import LoadPanel

pytestmark = pytest.mark.slow
START_S = 30.0
SIZE = (120, 36)


@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    with sim_server(seed=3, speed=20) as url:
        yield url


def trace_controller(url: str, tmp_path) -> Controller:
    path = tmp_path / "slow.jsonl"  # one row every 2 s of trace time: the session outlasts the test
    path.write_text("".join(json.dumps({"timestamp": 2000 * i, "input_length": 20, "output_length": 4}) + "\n"
                            for i in range(500)))  # fmt: skip
    cfg = RunConfig(base_url=url, model=SimConfig().model, workers=1, step=0.5)
    factory, cfg, _ = prepare_trace(cfg, str(path), calibrate=False)
    c = Controller(cfg, request_factory=factory, gpu="sim", sim_url=url)
    c.start()
    return c


async def test_trace_speed_is_shown_as_a_speed_and_the_keys_scale_it(sim_url, tmp_path, monkeypatch):
    monkeypatch.setenv("WATTLOAD_STATE_DIR", str(tmp_path))  # power-cap bookkeeping stays out of ~/.local/state
    c = trace_controller(sim_url, tmp_path)
    app = live_app(c)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.snapshot.state is RunState.RUNNING, START_S, "the replay to run")
            load = " ".join(str(app.screen.query_one(LoadPanel).render()).split())
            assert "speed ×1.0 trace clock" in load and "+/- 0.5" in load, load
            assert "target" not in load  # no "target 1 req/s": the trace's rate is whatever its rows say
            header = str(app.screen.query_one(HeaderPanel).render())
            assert "trace speed → ×1.0" in header and "req/s" not in header, header

            await pilot.press("plus")
            await until(pilot, lambda: c.latest.target_rate == 1.5, 5, "the speed to reach ×1.5")
            await until(pilot, lambda: "×1.5" in str(app.screen.query_one(LoadPanel).render()), 5, "the panel")
            await pilot.press("asterisk")
            await until(pilot, lambda: c.latest.target_rate == 3.0, 5, "the speed to double to ×3")
            log = app.screen.query_one(EventLogPanel)
            await until(pilot, lambda: any("trace speed -> ×3" in m for _, _, m in log.entries), 5, "the event log")

            await pilot.press("a")  # the auto-ramp steps concurrency, which would stop the trace's clock
            await pilot.pause(0.5)
            assert c.latest.mode is LoadMode.RATE and c.latest.target_rate == 3.0
            await pilot.press("q")
            await pilot.pause(0.2)
    finally:
        c.close()


def test_the_headless_summary_and_progress_line_name_the_trace_speed():
    from engine.reports.summary import format_summary, progress_line
    from engine.snapshot import Snapshot

    trace = Snapshot(mode=LoadMode.RATE, target_rate=2.0, trace=True, state=RunState.STOPPED)
    assert "load        trace speed ×2, " in format_summary(trace)
    assert "trace speed ×2" in progress_line(trace)
    rate = trace.model_copy(update={"trace": False})
    assert "load        rate 2/s, " in format_summary(rate)

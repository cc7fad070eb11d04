"""The dashboard over the real engine: the built-in simulated server in a subprocess (as `wattload demo` runs
it), the real Controller with a real worker process, and the simulated GPU behind the power-cap keys.

Every wait is bounded; worker processes are checked gone after quitting.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
from collections.abc import Iterator

import httpx
import pytest
from tui_canned import until

from engine.config import RunConfig
from engine.load.controller import Controller
from engine.sim.model import SimConfig
from engine.sim.process import SimProcess, start_sim_process
from engine.snapshot import RunState, Snapshot
from engine.sweep.rules import SweepSettings
from tui.app import WattloadApp, live_app
from tui.screens.confirm_quit import ConfirmQuitScreen
from tui.screens.failed import FailedScreen
from tui.screens.help import HelpScreen
from tui.widgets.event_log import EventLogPanel
from tui.widgets.header import HeaderPanel
from tui.widgets.load import LoadPanel

pytestmark = pytest.mark.slow
START_S = 30.0  # spawning a worker on a loaded 2-core box can take seconds
SIZE = (120, 36)


SIM = SimConfig(seed=3)  # real speed: 48-token answers take ~0.5 s, so in-flight counts can be read


@pytest.fixture(scope="module")
def sim_url(sim_process: SimProcess) -> str:
    """The module's simulator in its own process (conftest.py sim_process), as `wattload demo` runs it."""
    return sim_process.url


@pytest.fixture(scope="module")
def fast_sim_url() -> Iterator[str]:
    """The simulated server at 4x speed, for the auto-ramp: more tokens in its short windows settle steps sooner.
    Its GPU's limits span 700..650 W, so the `w` sweep has three caps to hold (default_caps; 8 on a real range)."""
    sim = start_sim_process(SimConfig(seed=3, speed=4, min_limit_w=650.0))
    try:
        yield sim.url
    finally:
        sim.stop()


def controller(url: str, **fields: object) -> Controller:
    settings = {"base_url": url, "model": SimConfig().model, "workers": 1, "input_tokens": 16, "max_tokens": 48}
    c = Controller(RunConfig(**{**settings, **fields}), gpu="sim", sim_url=url)
    c.start()
    return c


def sim_gpu(url: str) -> dict:
    reply = httpx.get(url.removesuffix("/v1") + "/sim/gpu", timeout=5.0, trust_env=False)
    reply.raise_for_status()
    return reply.json()


def set_sim(url: str, **patch: object) -> None:
    reply = httpx.post(url.removesuffix("/v1") + "/sim/config", json=patch, timeout=5.0, trust_env=False)
    reply.raise_for_status()


def shown(app: WattloadApp) -> Snapshot:
    return app.snapshot


def workers_gone(c: Controller) -> bool:
    names = [p.name for p in multiprocessing.active_children()]
    alive = []
    for pid in c.worker_pids:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            if os.waitpid(pid, os.WNOHANG) == (0, 0):
                alive.append(pid)
    return not any(n.startswith("wattload-worker") for n in names) and not alive


async def test_plus_raises_the_target_space_pauses_and_resumes_q_quits_and_workers_are_gone(sim_url):
    c = controller(sim_url, concurrency=2, step=2)
    app = live_app(c)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: shown(app).state is RunState.RUNNING and shown(app).in_flight == 2, START_S,
                        "2 streams running")  # fmt: skip
            await pilot.press("plus", "plus", "plus")
            await until(pilot, lambda: c.latest.target_concurrency == 8, 5, "the engine's target to reach 8")
            await until(pilot, lambda: shown(app).in_flight == 8, 10, "in-flight to follow the target")
            assert "in flight  8" in str(app.screen.query_one(LoadPanel).render())

            await pilot.press("space")
            await until(pilot, lambda: shown(app).state is RunState.PAUSED and shown(app).in_flight == 0, 10,
                        "pause to drain in-flight to 0")  # fmt: skip
            await pilot.press("space")
            await until(pilot, lambda: shown(app).state is RunState.RUNNING and shown(app).in_flight == 8, 10,
                        "resume to 8 streams")  # fmt: skip
            assert shown(app).total.requests > 0

            await pilot.press("q")  # nothing to lose: no question asked
            await until(pilot, lambda: app.return_code is not None, 30, "the app to exit")
        assert app.return_code == 0 and app.closed
        assert workers_gone(c)
    finally:
        c.close()


async def test_power_cap_keys_step_the_simulated_gpu_and_quit_restores_it(sim_url):
    c = controller(sim_url, concurrency=4)
    app = live_app(c, cap_step_w=50)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: shown(app).state is RunState.RUNNING and shown(app).gpu.available, START_S,
                        "telemetry from the simulated GPU")  # fmt: skip
            start_limit = sim_gpu(sim_url)["power_limit_w"]
            await pilot.press("left_square_bracket", "left_square_bracket")
            await until(pilot, lambda: shown(app).gpu.power_limit_w == start_limit - 100, 10, "the panel at -100 W")
            assert sim_gpu(sim_url)["power_limit_w"] == start_limit - 100
            assert any("power cap" in m for m in app.toasts.showing())
            await until(pilot, lambda: app.history.markers and app.history.markers[-1][1] == "cap", 5, "a chart marker")
            await pilot.press("q")
            assert isinstance(app.screen, ConfirmQuitScreen)
            await pilot.click("#restore")
            await until(pilot, lambda: app.return_code is not None, 30, "the app to exit")
        assert sim_gpu(sim_url)["power_limit_w"] == start_limit
    finally:
        c.close()


async def test_a_server_failing_every_request_keeps_the_ui_responsive_and_shows_why(sim_url):
    set_sim(sim_url, error_rate=1.0)
    c = controller(sim_url, concurrency=8)
    app = live_app(c)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: shown(app).total.errors >= 50, START_S, "errors to pile up")
            load_text = str(app.screen.query_one(LoadPanel).render())
            assert re.search(r"\b5xx \d", load_text) and "100% now" in load_text  # the compact class name
            log = app.screen.query_one(EventLogPanel)
            await until(pilot, lambda: any("http_5xx" in line.text for line in log.lines), 10, "an error reason")
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("escape", "q")
            await until(pilot, lambda: app.return_code is not None, 30, "the app to exit")
    finally:
        set_sim(sim_url, error_rate=0.0)
        c.close()


async def test_a_crashed_worker_shows_the_reason_and_offers_to_quit(sim_url):
    c = controller(sim_url, concurrency=2)
    app = live_app(c)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: shown(app).in_flight == 2, START_S, "running")
            os.kill(c.worker_pids[0], 9)
            await until(pilot, lambda: isinstance(app.screen, FailedScreen), 20, "the failure to be offered")
            assert "worker 0 exited unexpectedly" in app.screen.message
            await pilot.press("enter")
            await until(pilot, lambda: app.return_code is not None, 30, "the app to exit")
        assert app.return_code == 1
        assert workers_gone(c)
    finally:
        c.close()


async def test_a_starts_the_auto_ramp_which_raises_the_load_by_itself_until_a_stops_it(fast_sim_url):
    c = controller(fast_sim_url, concurrency=1, window_s=1.0, tick_hz=10, max_tokens=32)
    app = live_app(c, ramp_settings=SweepSettings(max=16, step_time_s=3.0))
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: shown(app).state is RunState.RUNNING and shown(app).in_flight == 1, START_S,
                        "1 stream running")  # fmt: skip
            await pilot.press("a")
            header = app.screen.query_one(HeaderPanel)
            await until(pilot, lambda: "auto: c=" in str(header.render()), 5, "the ramp's status in the header")
            log = app.screen.query_one(EventLogPanel)

            def logged() -> str:
                return "".join(line.text for line in log.lines)  # the narrow log wraps long lines

            await until(pilot, lambda: "auto-ramp: c=2" in logged(), 30, "the ramp to judge its second step")
            assert "auto-ramp: c=1" in logged() and "(improved)" in logged()
            await until(pilot, lambda: c.latest.target_concurrency >= 4, 5, "the ramp to step the load up twice")
            await until(pilot, lambda: shown(app).in_flight >= 4, 10, "in-flight to follow the ramp")

            await pilot.press("a")
            await until(pilot, lambda: not app.dashboard.ramp.ramp.enabled, 5, "the ramp to stop")
            await until(pilot, lambda: "auto:" not in str(header.render()), 5, "the status to leave the header")
            assert any(m.startswith("auto-ramp off") for _, m in app.toasts.said)  # said at once, shown when posted
            held = c.latest.target_concurrency
            await pilot.pause(0.5)
            assert c.latest.target_concurrency == held  # switched off, it leaves the load alone
            await pilot.press("q")
            await until(pilot, lambda: app.return_code is not None, 30, "the app to exit")
        assert workers_gone(c)
    finally:
        c.close()


async def test_w_runs_a_live_power_cap_sweep_into_the_event_log_and_puts_the_cap_back(fast_sim_url):
    c = controller(fast_sim_url, concurrency=16, window_s=1.0, tick_hz=10, max_tokens=32)
    app = live_app(c)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: shown(app).state is RunState.RUNNING and shown(app).gpu.available, START_S,
                        "telemetry from the simulated GPU")  # fmt: skip
            start_limit = sim_gpu(fast_sim_url)["power_limit_w"]
            await pilot.press("w")
            assert any(m.startswith("cap sweep on: 700, 675, 650 W") for _, m in app.toasts.said)
            log = app.screen.query_one(EventLogPanel)

            def logged() -> str:
                return "".join(line.text for line in log.lines)

            await until(pilot, lambda: "cap sweep 1/3 700 W" in logged(), 30, "the first cap's figures")
            await until(pilot, lambda: "cap sweep done: sweet spot" in logged(), 120, "the sweep's sweet spot")
            assert "cap sweep 3/3 650 W" in logged()
            await until(pilot, lambda: sim_gpu(fast_sim_url)["power_limit_w"] == start_limit, 10,
                        "the cap from before the sweep to come back")  # fmt: skip
            await pilot.press("q")
            await until(pilot, lambda: app.return_code is not None or len(app.screen_stack) > 1, 30, "quit")
            if app.return_code is None:  # it asks because the cap was changed during the session
                await pilot.press("q")
                await until(pilot, lambda: app.return_code is not None, 30, "the app to exit")
    finally:
        c.close()
    assert sim_gpu(fast_sim_url)["power_limit_w"] == start_limit

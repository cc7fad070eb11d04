"""The demo's dashboard opens before its session exists (issue 15, item 11): DeferredControl says what startup
is doing, reports a failure, and hands over to the real controller (real simulated server over 127.0.0.1)."""

from __future__ import annotations

import contextlib

from engine_helpers import wait_for

from engine.config import RunConfig
from engine.load.controller import Controller
from engine.load.deferred import STILL_STARTING, DeferredControl
from engine.snapshot import RunState, Snapshot
from tui.commands.demo import simulated_server


def test_before_the_session_it_says_what_is_happening_and_answers_keys():
    deferred = DeferredControl(model="m")
    seen: list[Snapshot] = []
    deferred.subscribe(seen.append)
    deferred.say("starting the simulated server…")
    assert seen[-1].state is RunState.STARTING and seen[-1].message == "starting the simulated server…"
    assert deferred.step_power_cap(-25) == STILL_STARTING and not deferred.power_cap_changed
    deferred.set_concurrency(4)  # nothing to steer yet: ignored, never an exception
    deferred.fail("cannot start the simulated server: port in use")
    assert seen[-1].state is RunState.FAILED and "port in use" in seen[-1].message


def test_it_hands_over_to_the_controller_and_closes_it(tmp_path, monkeypatch):
    monkeypatch.setenv("WATTLOAD_STATE_DIR", str(tmp_path))
    deferred = DeferredControl()
    seen: list[Snapshot] = []
    deferred.subscribe(seen.append)
    DeferredControl.prepare_process_spawning()
    with contextlib.ExitStack() as stack:
        url, model = stack.enter_context(simulated_server(0, 4.0))
        controller = Controller(RunConfig(base_url=url, model=model, concurrency=2, max_tokens=16), gpu="sim",
                                sim_url=url)  # fmt: skip
        assert deferred.attach(controller, endpoint=url)
        wait_for(lambda: any(s.state is RunState.RUNNING and s.in_flight > 0 for s in seen), 60,
                 "the controller's snapshots to reach the subscriber")  # fmt: skip
        assert deferred.latest.endpoint == url and deferred.config is controller.config
        deferred.set_concurrency(3)
        wait_for(lambda: deferred.latest.target_concurrency == 3, 30, "set_concurrency to reach the controller")
        deferred.close()
        assert controller.wait(30)


def test_a_controller_attached_after_the_dashboard_closed_is_closed_at_once():
    class Fake:
        closed = False

        def close(self, keep_power_caps: bool = False) -> None:
            self.closed = True

    deferred = DeferredControl()
    deferred.close()
    fake = Fake()
    assert not deferred.attach(fake)  # type: ignore[arg-type]
    assert fake.closed

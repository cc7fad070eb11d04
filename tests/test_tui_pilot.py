"""Pilot tests of the dashboard's behaviour: keys, quit flow, size handling, snapshot coalescing, and replay keys
driving the real replay player over a real (synthetic) recording file.

The live keys are checked against a canned LoadControl that records calls; the same keys against the real
Controller and simulated server are in test_tui_live.py.
"""

from __future__ import annotations

import asyncio
import threading

import pytest
from synthetic_recording import SyntheticSpec
from tui_canned import CannedControl, screen_text, session, session_snapshot, until

from engine.records import EventKind
from engine.replay.player import Player
from engine.snapshot import LoadMode, RunState
from engine.sweep.rules import SweepSettings
from tui.app import REPLAY_DISABLED, WattloadApp, live_app, replay_app
from tui.screens.confirm_quit import ConfirmQuitScreen
from tui.screens.failed import FailedScreen
from tui.screens.help import HelpScreen
from tui.screens.too_small import TooSmallScreen
from tui.widgets.charts import ChartsPanel
from tui.widgets.event_log import EventLogPanel
from tui.widgets.load import LoadPanel
from tui.widgets.timeline import TimelineBar

SIZE = (120, 36)


async def test_help_opens_and_closes_and_lists_every_live_key():
    app = live_app(CannedControl(session(20)), refresh_hz=0)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        needles = ("+ / ↑", "* / ⇧↑", "[", "space", "auto-ramp on/off", "ctrl+p", "power-cap step 25 W")
        for needle in needles:
            assert needle in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_q_quits_at_once_and_closes_the_control_restoring_caps():
    control = CannedControl(session(20))
    app = live_app(control, refresh_hz=0)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        await until(pilot, lambda: app.return_code is not None)
    assert control.calls[-1] == ("close", False)
    assert app.closed and app.return_code == 0


async def test_quit_asks_first_when_caps_changed_and_can_keep_them():
    control = CannedControl(session(20))
    app = live_app(control, refresh_hz=0)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("left_square_bracket")
        await until(pilot, lambda: ("step_power_cap", -25.0) in control.calls)
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmQuitScreen)
        await pilot.press("escape")  # cancel: still running
        assert not isinstance(app.screen, ConfirmQuitScreen) and app.return_code is None
        await pilot.press("q")
        await pilot.click("#keep")
        await until(pilot, lambda: app.return_code is not None)
    assert control.calls[-1] == ("close", True)


async def test_quit_asks_when_recording_and_a_second_q_forces_with_caps_restored():
    history = session(20)
    history[-1] = history[-1].model_copy(update={"recording": "recordings/x.wlrec"})
    control = CannedControl(history)
    app = live_app(control, refresh_hz=0)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmQuitScreen)
        assert "recordings/x.wlrec" in screen_text(app)
        await pilot.press("q")
        await until(pilot, lambda: app.return_code is not None)
    assert control.calls[-1] == ("close", False)


async def test_ctrl_c_forces_quit_without_asking():
    control = CannedControl(session(20))
    control.step_power_cap(-25)
    app = live_app(control, refresh_hz=0)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+c")
        await until(pilot, lambda: app.return_code is not None)
    assert control.calls[-1] == ("close", False)


async def test_load_keys_step_double_and_halve_from_the_newest_target():
    control = CannedControl(session(20))  # target 8
    app = live_app(control, refresh_hz=0, step=4)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("plus", "plus", "up", "minus", "asterisk", "slash", "shift+up", "shift+down", "down")
        sets = [call[1] for call in control.calls if call[0] == "set_concurrency"]
        assert sets == [12, 16, 20, 16, 32, 16, 32, 16, 12]


async def test_rate_mode_keys_set_the_rate():
    history = [s.model_copy(update={"mode": LoadMode.RATE, "target_rate": 2.0}) for s in session(20)]
    control = CannedControl(history)
    app = live_app(control, refresh_hz=0, step=0.5)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("plus", "asterisk", "minus")
        assert [c for c in control.calls if c[0] == "set_rate"] == [("set_rate", 2.5), ("set_rate", 5.0),
                                                                     ("set_rate", 4.5)]  # fmt: skip


async def test_pause_recording_and_cap_keys_call_the_control_and_show_its_answer():
    control = CannedControl(session(20), caps_message="GPU 0 power cap 675 W, enforced 675 W")
    app = live_app(control, refresh_hz=0)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("space", "right_square_bracket", "r")
        await until(pilot, lambda: len(app.toasts.showing()) >= 2)
        messages = app.toasts.showing()
        assert "GPU 0 power cap 675 W, enforced 675 W" in messages
        assert "recording to /tmp/wattload-test.wlrec" in messages
        assert ("pause",) in control.calls and ("step_power_cap", 25.0) in control.calls
        assert ("start_recording",) in control.calls


async def test_a_toggles_the_auto_ramp_which_steps_the_load_and_shows_its_status_in_the_header():
    """`a` is carried out by the engine's next snapshot (the ramp lives on the engine's thread); the ramp's
    figures and verdicts go to the event log, its start and end also pop up, and the header shows where it is."""
    control = CannedControl(session(20))  # target 8 at t = 5 s
    app = live_app(control, refresh_hz=0, ramp_settings=SweepSettings(step_time_s=2.0))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("a")
        assert not app.dashboard.ramp.ramp.enabled  # nothing happens between snapshots
        control.push(session_snapshot(21))
        await until(pilot, lambda: "↗ auto: c=8 step 1 0/2s" in screen_text(app))
        assert ("set_concurrency", 8) in control.calls  # step 1 holds the load it found
        assert "auto-ramp on: from concurrency 8, up to 512" in app.toasts.showing()

        # a step holds at least 3 request durations (E2E p50 ~1.6 s here), beyond its 2 s step time: 6 s of
        # snapshots, then step 1 runs out of time and the ramp doubles the load
        for seq in range(22, 46):
            control.push(session_snapshot(seq))
        await until(pilot, lambda: "↗ auto: c=16 step 2 0/2s" in screen_text(app))
        assert control.calls[-1] == ("set_concurrency", 16)
        log = app.screen.query_one(EventLogPanel)
        logged = "".join(line.text for line in log.lines)  # the narrow log wraps long lines
        assert logged.count("auto-ramp: c=8") == 1 and "tok/s (improved)" in logged
        assert not any("auto-ramp: c=8" in m for _, m in app.toasts.said)  # step lines stay in the log, never a toast

        await pilot.press("a")
        control.push(session_snapshot(46).model_copy(update={"target_concurrency": 16}))
        await until(pilot, lambda: "auto:" not in screen_text(app))
        assert not app.dashboard.ramp.ramp.enabled
        off = [m for m in app.toasts.showing() if m.startswith("auto-ramp off")]
        assert off and "capacity 8" in off[0] and "stopped by the operator" in off[0]
        assert control.calls[-1] == ("set_concurrency", 16)  # switched off: the load stays where it was


class RefusingControl(CannedControl):
    def set_concurrency(self, n: int) -> None:
        raise RuntimeError(f"cannot set {n}")


async def test_a_ramp_that_raises_is_dropped_with_one_line_and_the_dashboard_keeps_drawing():
    control = RefusingControl(session(20))
    app = live_app(control, refresh_hz=0)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("a")
        control.push(session_snapshot(21))
        await until(pilot, lambda: any("auto-ramp failed" in m for m in app.toasts.showing()))
        assert any("cannot set 8" in m for m in app.toasts.showing())
        control.push(session_snapshot(22))
        await until(pilot, lambda: app.snapshot.seq == 22)
        assert not app.dashboard.ramp.ramp.enabled and "auto:" not in screen_text(app)


async def test_too_small_terminal_shows_a_notice_and_recovers():
    app = live_app(CannedControl(session(20)), refresh_hz=0)
    async with app.run_test(size=(50, 12)) as pilot:
        assert isinstance(app.screen, TooSmallScreen)
        assert "Terminal too small: 50x12" in screen_text(app)
        await pilot.resize_terminal(100, 30)
        await pilot.pause()
        assert not isinstance(app.screen, TooSmallScreen)
        assert "Load" in screen_text(app)


async def test_failed_engine_offers_quit_and_exits_with_code_1():
    failed = session_snapshot(21).model_copy(update={"state": RunState.FAILED, "message": "worker 0 exited"})
    control = CannedControl([*session(20), failed])
    app = live_app(control, refresh_hz=0)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, FailedScreen))
        assert "worker 0 exited" in screen_text(app)
        await pilot.press("enter")  # Quit is focused
        await until(pilot, lambda: app.return_code is not None)
    assert app.return_code == 1


async def test_a_flood_of_snapshots_from_another_thread_is_coalesced_and_loses_no_event():
    """The engine thread may publish far faster than the UI draws: the UI skips to the newest snapshot, yet every
    chart row and every event reaches the history and the log."""
    control = CannedControl(session(4))
    app = live_app(control, refresh_hz=4.0)
    flood = [session_snapshot(i) for i in range(5, 1205)]  # 300 s of ticks, including all scripted events
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        renders_before = app.renders
        thread = threading.Thread(target=lambda: [control.push(s) for s in flood])
        thread.start()
        await asyncio.to_thread(thread.join, 10)
        await until(pilot, lambda: app.snapshot.seq == 1204)
        assert app.renders - renders_before < len(flood) / 10  # drew a handful of frames, not 1,200
        assert len(app.history) == 4 + len(flood)
        log = app.screen.query_one(EventLogPanel)
        assert log.count == 4  # start + three scripted changes
        markers = app.history.markers
        assert [kind for _, kind in markers] == ["load", "cap", "load"]
        assert "24" in str(app.screen.query_one(LoadPanel).render())


def _colours(app: WattloadApp) -> set[tuple[int, int, int]]:
    strips = app.screen._compositor.render_strips()
    return {
        tuple(colour.get_truecolor())
        for strip in strips
        for seg in strip
        if seg.style is not None
        for colour in (seg.style.color, seg.style.bgcolor)
        if colour is not None
    }


@pytest.mark.parametrize("no_color", [False, True])
async def test_no_color_turns_every_colour_grey(monkeypatch, no_color):
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    app = live_app(CannedControl(session(40)), refresh_hz=0)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        colours = _colours(app)
        assert colours
        greys = all(r == g == b for r, g, b in colours)
        assert greys is no_color


@pytest.fixture(scope="module")
def recording(synthetic_recording):
    spec = SyntheticSpec(duration_s=120.0, rate=20.0, events=((30.0, EventKind.CONCURRENCY, 16.0),
                                                             (60.0, EventKind.POWER_CAP, 400.0)))  # fmt: skip
    return synthetic_recording(spec, "session.wlrec")


async def test_replay_keys_drive_the_real_player(recording):
    player = Player(recording, playing=False)
    app = replay_app(player, refresh_hz=0)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("right")
            assert player.wait_idle(5)
            assert player.position_s == pytest.approx(10.0)
            await pilot.press("shift+right", "left")
            assert player.wait_idle(5)
            assert player.position_s == pytest.approx(60.0)
            await pilot.press("end")
            assert player.wait_idle(5) and player.position_s == pytest.approx(player.duration_s)
            await pilot.press("home")
            assert player.wait_idle(5) and player.position_s == 0.0
            for key, speed in (("2", 2.0), ("8", 8.0), ("0", 0.0), ("1", 1.0)):
                await pilot.press(key)
                assert player.speed == speed
            await pilot.press("space")
            assert player.playing
            await pilot.press("space")
            assert not player.playing
            timeline = app.screen.query_one(TimelineBar)
            assert {kind for _, kind in timeline.markers} >= {"concurrency", "power_cap"}
            await pilot.press("plus", "r", "a")
            assert [m for _, m in app.toasts.said].count(REPLAY_DISABLED) == 3
            assert app.toasts.showing().count(REPLAY_DISABLED) == 1  # replaced, not stacked
            await pilot.press("q")
            await until(pilot, lambda: app.return_code is not None)
        assert app.closed
    finally:
        player.close()


async def test_replay_charts_restart_after_a_seek_back(recording):
    player = Player(recording, playing=False)
    app = replay_app(player, refresh_hz=0)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("shift+right")
            assert player.wait_idle(5)
            await until(pilot, lambda: app.history.last_t is not None and app.history.last_t >= 59.0)
            await pilot.press("home")
            assert player.wait_idle(5)
            await until(pilot, lambda: app.history.last_t is not None and app.history.last_t < 1.0)
            assert len(app.history) <= 2
            assert app.screen.query_one(ChartsPanel).history is app.history
    finally:
        player.close()


async def test_the_command_palette_offers_the_hotkey_actions():
    control = CannedControl(session(20))  # target 8
    app = live_app(control, refresh_hz=0)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p")
        await pilot.press(*"double load")
        await until(pilot, lambda: "Double load" in screen_text(app))
        await pilot.press("enter")
        await until(pilot, lambda: ("set_concurrency", 16) in control.calls)

"""What an operator meets in the first ten minutes (issue 15): the event log follows the newest line and can be
read in full, toasts replace instead of stacking, the saturation warning does not flap or move the layout, and a
replay keeps its chart history and event log across seeks. Pilot over canned sources and the real replay player.
"""

from __future__ import annotations

import asyncio

import pytest
from synthetic_recording import SyntheticSpec
from tui_canned import CannedControl, screen_text, session, session_snapshot, until

from engine.records import EventKind
from engine.replay.player import Player
from engine.snapshot import ClientHealth, EventView, RunState
from tui.app import live_app, replay_app
from tui.screens.log_view import LogViewScreen
from tui.widgets.charts import ChartsPanel
from tui.widgets.event_log import EventLogPanel
from tui.widgets.status_line import SaturationLatch, StatusLine

SIZES = [(60, 16), (80, 24), (120, 40), (160, 48), (200, 60)]


def burst(control: CannedControl, first_seq: int, count: int) -> int:
    """Push ``count`` snapshots, each with one numbered event; returns the next seq."""
    for i in range(count):
        seq = first_seq + i
        snap = session_snapshot(seq).model_copy(
            update={"new_events": (EventView(t_s=seq * 0.25, kind="power_cap", message=f"cap step {i:03d}"),)}
        )
        control.push(snap)
    return first_seq + count


@pytest.mark.parametrize("size", [(120, 40), (160, 48), (200, 60)])
async def test_the_events_panel_follows_the_newest_line_after_a_burst(size):
    control = CannedControl(session(20))
    app = live_app(control, refresh_hz=0)
    async with app.run_test(size=size) as pilot:
        burst(control, 21, 60)
        await until(pilot, lambda: "cap step 059" in screen_text(app), what="the newest event on screen")
        assert "cap step 000" not in screen_text(app)  # scrolled: the oldest lines are above the view


@pytest.mark.parametrize("size", [(60, 16), (80, 24)])
async def test_with_the_events_panel_hidden_the_status_line_shows_the_newest_event(size):
    control = CannedControl(session(20))
    app = live_app(control, refresh_hz=0)
    async with app.run_test(size=size) as pilot:
        assert not app.screen.query_one(EventLogPanel).display
        burst(control, 21, 5)
        await until(pilot, lambda: "cap step 004" in str(app.screen.query_one(StatusLine).render()))
        assert "cap step 004" in screen_text(app)


async def test_the_events_panel_takes_focus_scrolls_and_follows_again():
    """Every step waits for its outcome (bounded), never for a fixed time, and the whole test is bounded too: once,
    under a CPU hog, a bare assert right after a key press raced the scroll and the run hung in teardown."""
    control = CannedControl(session(20))
    app = live_app(control, refresh_hz=0)
    async with asyncio.timeout(90), app.run_test(size=(160, 48)) as pilot:
        burst(control, 21, 80)
        log = app.screen.query_one(EventLogPanel)
        at_end = lambda: log.max_scroll_y > 0 and log.scroll_y >= log.max_scroll_y  # noqa: E731
        await until(pilot, lambda: log.count >= 81 and at_end(), 20, "the log to follow its newest line")
        assert app.focused is None  # the arrows belong to the dashboard until the operator picks the log
        await pilot.press("tab")
        await until(pilot, lambda: app.focused is log, 20, "the log to take the focus")
        await pilot.press("pageup", "up")
        await until(pilot, lambda: log.scroll_y < log.max_scroll_y, 20, "the log to scroll up")
        assert control.calls == []  # the arrows scrolled the log, not the load
        await pilot.press("escape")
        await until(pilot, lambda: app.focused is None and at_end(), 20, "esc to leave the log, following again")
        await pilot.press("up")
        await until(pilot, lambda: control.calls == [("set_concurrency", 9)], 20, "up to raise the load")


async def test_l_opens_the_full_log_with_a_filter_and_follows_new_lines():
    control = CannedControl(session(20))
    app = live_app(control, refresh_hz=0)
    async with app.run_test(size=(80, 24)) as pilot:
        burst(control, 21, 30)
        await pilot.pause()
        await pilot.press("l")
        assert isinstance(app.screen, LogViewScreen)
        view = app.screen
        assert view.shown == 31  # the scripted start and 30 caps: every line, even at 80 columns
        await pilot.press("slash", *"start")
        await until(pilot, lambda: view.shown == 1)
        assert "session started" in screen_text(app) and "cap step" not in screen_text(app)
        await pilot.press("enter")
        control.push(session_snapshot(60).model_copy(
            update={"new_events": (EventView(t_s=15.0, kind="start", message="start again"),)}))  # fmt: skip
        await until(pilot, lambda: view.shown == 2, what="a new matching line to appear in the open view")
        await pilot.press("escape")
        assert not isinstance(app.screen, LogViewScreen)


async def test_six_cap_presses_show_one_toast_with_the_newest_answer():
    control = CannedControl(session(20))
    app = live_app(control, refresh_hz=0)
    async with app.run_test(size=(120, 40)) as pilot:
        for i in range(6):
            control.caps_message = f"power cap {675 - 25 * i} W (read back {675 - 25 * i} W)"
            await pilot.press("left_square_bracket")
            await until(pilot, lambda n=i: len([k for k, _ in app.toasts.said if k == "power_cap"]) == n + 1)
        await pilot.pause()
        toasts = app.toasts.showing()
        assert toasts == ["power cap 550 W (read back 550 W)"]


def _saturated(seq: int, on: bool, state: RunState = RunState.RUNNING):
    health = ClientHealth(loop_lag_ms=14.2 if on else 1.0, saturated=on,
                          reason="event-loop lag 14.2 ms > 10 ms: chunks are stamped late" if on else "")  # fmt: skip
    return session_snapshot(seq).model_copy(update={"client": health, "state": state})


def test_the_saturation_latch_ignores_blips_and_clears_while_paused():
    latch = SaturationLatch(on_s=2.0, off_s=5.0)
    seq = 1
    for on in [False] * 4 + [True] * 4 + [False] * 4:  # a 1 s blip
        assert not latch.update(_saturated(seq, on))
        seq += 1
    results = [latch.update(_saturated(seq + i, True)) for i in range(12)]  # 3 s saturated
    assert results.index(True) == 8  # on after 2 s
    seq += 12
    results = [latch.update(_saturated(seq + i, False)) for i in range(24)]
    assert all(results[:19]) and not results[-1]  # off after 5 s without
    seq += 24
    for i in range(12):
        latch.update(_saturated(seq + i, True))
    assert latch.active
    assert not latch.update(_saturated(seq + 12, True, RunState.PAUSED))


async def test_the_saturation_warning_has_a_fixed_place_and_does_not_move_the_layout():
    control = CannedControl(session(20))
    app = live_app(control, refresh_hz=0)
    async with app.run_test(size=(120, 40)) as pilot:
        charts = app.screen.query_one(ChartsPanel)
        before = charts.region
        for seq in range(21, 37):  # 4 s saturated
            control.push(_saturated(seq, True))
        await until(pilot, lambda: "client saturated" in screen_text(app))
        assert "14.2 ms > 10 ms" in screen_text(app)
        assert charts.region == before
        control.push(_saturated(37, True, RunState.PAUSED))
        await until(pilot, lambda: "client saturated" not in screen_text(app), what="the warning to clear on pause")


@pytest.fixture(scope="module")
def recording(synthetic_recording):
    spec = SyntheticSpec(duration_s=120.0, rate=20.0, events=(
        (0.0, EventKind.START, None), (0.001, EventKind.ANNOTATION, None), (30.0, EventKind.CONCURRENCY, 16.0),
        (43.0, EventKind.RECORD_START, None), (60.0, EventKind.POWER_CAP, 400.0),
        (90.0, EventKind.CONCURRENCY, 24.0)))  # fmt: skip
    return synthetic_recording(spec, "session.wlrec")


def _log(app) -> list[tuple[float, str]]:
    return [(t, kind) for t, kind, _ in app.screen.query_one(EventLogPanel).entries]


async def _seek(pilot, app, player, *keys: str) -> None:
    landed = app.dashboard.backfills
    await pilot.press(*keys)
    assert player.wait_idle(5)
    await until(pilot, lambda: app.dashboard.backfills > landed, what="the history to be rebuilt")


async def test_replay_keeps_chart_history_and_every_event_once_across_seeks(recording):
    player = Player(recording, playing=False)
    app = replay_app(player, refresh_hz=0)
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            await until(pilot, lambda: app.dashboard.backfills >= 1)
            await _seek(pilot, app, player, "end")
            times, _ = app.history.ordered()
            assert times[0] <= 1.0 and times[-1] == pytest.approx(120.0)  # every second, not one column
            assert len(times) >= 100
            assert [k for _, k in _log(app)] == ["start", "annotation", "concurrency", "record_start",
                                                 "power_cap", "concurrency"]  # fmt: skip
            assert {kind for _, kind in app.history.markers} == {"load", "cap"}
            for keys in (("home",), ("shift+right",), ("right",), ("left",), ("end",), ("shift+left",)):
                await _seek(pilot, app, player, *keys)
                at = player.position_s
                logged = _log(app)
                assert len(logged) == len(set(logged))  # nothing twice
                expected = [t for t in (0.0, 0.001, 30.0, 43.0, 60.0, 90.0) if 0 < at and t <= at]  # first at 0.1 s
                assert [t for t, _ in logged] == expected
                times, _ = app.history.ordered()
                assert times[-1] == pytest.approx(at) and (at == 0 or times[0] <= max(0.0, at - 299))
            assert "rec" in screen_text(app)
    finally:
        player.close()


@pytest.mark.parametrize("size", SIZES)
async def test_every_size_draws_the_status_line_and_the_footer(size):
    app = live_app(CannedControl(session(40)), refresh_hz=0)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        lines = screen_text(app).splitlines()
        assert len(lines) == size[1]
        assert ("wattload" in lines[0] and "quit" in lines[-1]) or "help" in lines[-1]


async def test_s_saves_a_screenshot_in_the_working_directory_and_says_where(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = live_app(CannedControl(session(20)), refresh_hz=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("s")
        await until(pilot, lambda: any(k == "screenshot" for k, _ in app.toasts.said))
        saved = list(tmp_path.glob("*.svg"))
        assert len(saved) == 1 and saved[0].read_text().startswith("<svg")
        assert app.toasts.said[-1] == ("screenshot", f"saved {saved[0].resolve()}")


async def test_a_screenshot_that_cannot_be_saved_says_why(tmp_path):
    app = live_app(CannedControl(session(20)), refresh_hz=0)
    app.screenshot_dir = str(tmp_path / "missing" / "dir")
    async with app.run_test(size=(80, 24)) as pilot:
        app.deliver_screenshot()  # what the palette's "Save screenshot" calls
        await pilot.pause()
        kind, message = app.toasts.said[-1]
        assert kind == "screenshot" and "missing/dir" in message and "No such file or directory" in message

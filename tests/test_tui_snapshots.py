"""Screens of the dashboard at fixed sizes, fed with a fixed scripted session (no clock, no blinking cursor),
compared with the SVGs stored in tests/__snapshots__ (update with `pytest --snapshot-update` after reviewing)."""

from __future__ import annotations

import pytest
from tui_canned import CannedControl, CannedReplay, session, session_snapshot

from engine.snapshot import ClientHealth, RunState
from tui.app import WattloadApp, live_app, replay_app

FOUR_MINUTES = 960  # ticks of 0.25 s


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch):
    """The developer's own terminal settings must not leak into the pictures."""
    for name in ("NO_COLOR", "TEXTUAL_THEME", "TEXTUAL_ANIMATIONS", "COLORTERM", "TEXTUAL_FPS"):
        monkeypatch.delenv(name, raising=False)


def canned_app(ticks: int = FOUR_MINUTES, **kwargs: bool) -> WattloadApp:
    return live_app(CannedControl(session(ticks, **kwargs)), refresh_hz=0)


def test_dashboard_80x24(snap_compare):
    assert snap_compare(canned_app(), terminal_size=(80, 24))


def test_dashboard_160x48(snap_compare):
    assert snap_compare(canned_app(), terminal_size=(160, 48))


def test_dashboard_without_gpu_with_errors_and_estimated_tokens_120x36(snap_compare):
    history = session(240, gpu=False, errors=True, estimated=True)
    saturated = ClientHealth(loop_lag_ms=48.0, saturated=True, reason="event-loop lag 48 ms > 10 ms")
    for i in range(-16, 0):  # saturated for the last 4 s: past the warning's 2 s hysteresis
        history[i] = history[i].model_copy(update={"client": saturated})
    history[-1] = history[-1].model_copy(update={"recording": "recordings/demo.wlrec"})
    assert snap_compare(live_app(CannedControl(history), refresh_hz=0), terminal_size=(120, 36))


def test_replay_dashboard_with_timeline_120x36(snap_compare):
    assert snap_compare(replay_app(CannedReplay(session(FOUR_MINUTES)), refresh_hz=0),
                        terminal_size=(120, 36))  # fmt: skip


def test_help_screen_100x30(snap_compare):
    assert snap_compare(canned_app(40), terminal_size=(100, 30), press=["question_mark"])


def test_failed_engine_offers_to_quit_100x30(snap_compare):
    history = session(40)
    failed = session_snapshot(41).model_copy(
        update={"state": RunState.FAILED, "message": "worker 0 exited unexpectedly (exit code -9); the run was stopped"}
    )
    assert snap_compare(live_app(CannedControl([*history, failed]), refresh_hz=0), terminal_size=(100, 30))


def test_too_small_terminal_shows_a_notice(snap_compare):
    assert snap_compare(canned_app(40), terminal_size=(50, 12))

"""The dashboard in replay mode over the real Player: a damaged file's warning is in the header, and playing at
full speed drives the same panels to the recording's end (keys are covered in test_tui_pilot.py)."""

from __future__ import annotations

import sqlite3

import pytest
from synthetic_recording import SyntheticSpec, write_synthetic
from tui_canned import screen_text, until

from engine.records import EventKind
from engine.replay.player import Player
from engine.snapshot import RunState
from tui.app import replay_app
from tui.widgets.status_line import StatusLine
from tui.widgets.timeline import TimelineBar

SIZE = (120, 36)


@pytest.fixture
def damaged(tmp_path):
    path = tmp_path / "damaged.wattload.sqlite"
    write_synthetic(path, SyntheticSpec(duration_s=40.0, rate=10.0, events=((20.0, EventKind.CONCURRENCY, 12.0),)))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE requests SET worker = 'x' WHERE id IN (3, 4)")
    return path


async def test_replay_plays_to_the_end_and_shows_the_files_warning(damaged):
    player = Player(damaged, playing=False)
    app = replay_app(player, refresh_hz=0)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("0", "space")  # as fast as possible, play
            await until(pilot, lambda: not player.playing and player.position_s == player.duration_s, timeout=15)
            await until(pilot, lambda: app.snapshot.t_s == player.duration_s, timeout=15)
            await pilot.pause()
            assert app.snapshot.target_concurrency == 12 and app.snapshot.state is RunState.RUNNING
            assert "2 corrupt rows skipped" in str(app.screen.query_one(StatusLine).render())
            timeline = app.screen.query_one(TimelineBar)
            assert timeline.position_s == timeline.duration_s == player.duration_s
            text = screen_text(app)  # the header and the timeline say the same about the transport
            assert "■ end max  0:00:40 / 0:00:40" in text and "REPLAY ■ end (was running)" in text
            assert "paused" not in text and "playing" not in text
            await pilot.press("q")
            await until(pilot, lambda: app.return_code is not None, timeout=15)
    finally:
        player.close()

"""The replay player over real recording files: seeking equals playing, controls, and every kind of bad file."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from engine_helpers import wait_for
from synthetic_recording import SyntheticSpec

from engine.records import EventKind
from engine.replay.feeder import Feeder
from engine.replay.player import MAX_SPEED, Player
from engine.reports.report import build_report
from engine.snapshot import RunState, Snapshot
from engine.storage.reader import open_recording
from engine.storage.schema import SCHEMA_VERSION
from engine.storage.store import RecordingError
from tui.cli import main

DATA = Path(__file__).parent / "data" / "recordings"
EVENTS = ((30.0, EventKind.CONCURRENCY, 16.0), (60.0, EventKind.PAUSE, None), (70.0, EventKind.RESUME, None),
          (90.0, EventKind.POWER_CAP, 500.0))  # fmt: skip
IGNORED = {"seq", "new_events", "message"}


@pytest.fixture(scope="module")
def recording(synthetic_recording) -> Path:
    return synthetic_recording(SyntheticSpec(duration_s=120.0, rate=20.0, error_every=17, events=EVENTS))


def figures(s: Snapshot) -> dict:
    return s.model_dump(exclude=IGNORED)


def linear(path: Path, targets: list[float]) -> dict[float, Snapshot]:
    """What a replay playing from the start at 4 ticks a second shows at each target time."""
    out = {}
    with open_recording(path) as rec:
        feeder = Feeder(rec)
        t_us = 0
        for target in sorted(targets):
            goal = round(target * 1e6)
            while t_us + 250_000 < goal:
                t_us += 250_000
                feeder.advance(t_us)
                feeder.snapshot()
            feeder.advance(goal)
            t_us = goal
            out[target] = feeder.snapshot()
    return out


def seek_and_wait(player: Player, t_s: float) -> Snapshot:
    player.seek_to(t_s)
    assert player.wait_idle(10)
    return player.latest


@pytest.mark.parametrize("build_index", [True, False])
def test_seeking_shows_what_playing_there_would(recording, build_index):
    targets = [95.3, 12.0, 65.55, 119.9, 30.0]
    expected = linear(recording, targets)
    player = Player(recording, playing=False, build_index=build_index)
    try:
        if build_index:
            assert player.wait_index(30) and len(player.checkpoints) == 12
        for t in targets:  # forwards and backwards, near and far
            snap = seek_and_wait(player, t)
            assert snap.t_s == pytest.approx(t)
            assert figures(snap) == figures(expected[t])
    finally:
        player.close()


def test_replayed_snapshots_carry_the_recorded_control_state(recording):
    player = Player(recording, playing=False)
    try:
        first = player.latest
        assert (first.source, first.t_s, first.target_concurrency, first.state) == ("replay", 0.0, 8, RunState.RUNNING)
        assert seek_and_wait(player, 35).target_concurrency == 16
        paused = seek_and_wait(player, 65)
        assert paused.state is RunState.PAUSED and paused.window.requests > 0  # the window still holds 55-60 s
        later = seek_and_wait(player, 80)
        assert later.state is RunState.RUNNING and later.total.errors > 0
        assert later.gpu.available and later.gpu.watts == pytest.approx(400.0)
        assert [kind for _, kind in player.markers()] == ["concurrency", "pause", "resume", "power_cap"]
        assert player.markers()[0][0] == pytest.approx(30.0)
    finally:
        player.close()


def test_playing_as_fast_as_possible_reaches_the_end_and_stops(recording):
    player = Player(recording, playing=False, speed=0)
    seen: list[Snapshot] = []
    done = threading.Event()

    def on_snapshot(s: Snapshot) -> None:
        seen.append(s)
        if s.t_s >= player.duration_s:
            done.set()

    player.subscribe(on_snapshot)
    try:
        player.toggle()
        assert player.playing
        assert done.wait(30), "the replay never reached the end"
        wait_for(lambda: not player.playing, 5, "the player to stop at the end", interval_s=0.01)
        assert player.position_s == pytest.approx(player.duration_s)
        seqs = [s.seq for s in seen]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert seen[-1].total.requests == figures_at_end(recording)
        player.toggle()  # at the end, play starts over
        assert player.playing and player.position_s < 1.0
    finally:
        player.close()


def figures_at_end(path: Path) -> int:
    with open_recording(path) as rec:
        return sum(1 for r in rec.requests() if r.error is None)


def test_real_time_playback_advances_the_clock(recording):
    player = Player(recording, playing=True, speed=8)
    try:
        wait_for(lambda: player.position_s >= 1.0, 10, "playback to advance")
        player.toggle()
        stopped_at = player.position_s
        assert not player.playing
        time.sleep(0.3)
        assert player.position_s == pytest.approx(stopped_at, abs=8 * 0.3)  # at most the tick in flight
        player.set_speed(-3)
        assert player.speed == 0.0
        player.set_speed(1e9)
        assert player.speed == MAX_SPEED
        player.seek(-1e6)
        assert player.wait_idle(10) and player.position_s == 0.0
        player.seek(1e6)
        assert player.wait_idle(10) and player.position_s == player.duration_s
    finally:
        player.close()


# ------------------------------------------------------------------------------------------------ bad files


def copy_of(recording: Path, tmp_path: Path, name: str = "copy.wattload.sqlite") -> Path:
    target = tmp_path / name
    target.write_bytes(recording.read_bytes())
    return target


def test_corrupt_rows_are_skipped_and_counted(recording, tmp_path):
    path = copy_of(recording, tmp_path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE requests SET e2e_us = 'garbage' WHERE id = 5")
        conn.execute("UPDATE requests SET error = 'no_such_class' WHERE id = 6")
        conn.execute("UPDATE progress SET t_us = 'soon' WHERE id = 3")
    total = figures_at_end(recording)
    player = Player(path, playing=False)
    try:
        snap = seek_and_wait(player, player.duration_s)
        assert snap.total.requests == total - 2
        assert "3 corrupt rows skipped" in player.warning and player.warning in snap.message
    finally:
        player.close()
    with open_recording(path) as rec:
        assert build_report(rec).totals.requests == total - 2


def test_a_truncated_file_replays_what_is_there_with_one_warning(recording, tmp_path):
    path = copy_of(recording, tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])
    player = Player(path, playing=False)
    try:
        assert len(player.warnings) == 1 and "truncated or damaged" in player.warning
        assert 0 < player.duration_s < 120.0
        snap = seek_and_wait(player, player.duration_s)
        assert snap.total.requests > 0
    finally:
        player.close()
    with open_recording(path) as rec:
        assert build_report(rec).phases


def test_a_newer_schema_is_refused_in_one_line(recording, tmp_path):
    path = copy_of(recording, tmp_path)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 7")
        conn.execute("UPDATE meta SET value = '7' WHERE key = 'schema_version'")
        conn.execute("UPDATE meta SET value = '\"9.1\"' WHERE key = 'wattload_version'")
    with pytest.raises(RecordingError) as err:
        open_recording(path)
    message = str(err.value)
    assert "recorded by wattload 9.1 with schema 7; this version" in message
    assert f"reads up to {SCHEMA_VERSION}" in message
    assert "\n" not in message


def sqlite_file(path: Path, *statements: str) -> Path:
    with sqlite3.connect(path) as conn:
        for s in statements:
            conn.execute(s)
    return path


@pytest.mark.parametrize(("make", "expected"), [
    (lambda d: DATA / "not_a_recording.wattload.sqlite", "not an SQLite file"),
    (lambda d: (d / "empty.wattload.sqlite").write_bytes(b"") or d / "empty.wattload.sqlite", "empty file"),
    (lambda d: sqlite_file(d / "other.sqlite", "CREATE TABLE t (x)"), "without wattload's meta table"),
    (lambda d: sqlite_file(d / "alien.sqlite", "CREATE TABLE meta (key, value)",
                           "INSERT INTO meta VALUES ('format', '\"something-else\"')"), "not wattload's"),
    (lambda d: d / "missing.wattload.sqlite", "no such file"),
    (lambda d: d, "is a directory"),
])  # fmt: skip
def test_files_that_are_not_recordings_are_refused_in_one_line(tmp_path, make, expected, capsys):
    path = make(tmp_path)
    with pytest.raises(RecordingError, match=expected):
        open_recording(path)
    for command in (["replay", str(path)], ["report", str(path)], ["export", str(path), "--requests", "-"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1 and "Traceback" not in err


def test_unreadable_metadata_values_fall_back_to_defaults(recording, tmp_path):
    path = copy_of(recording, tmp_path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = '{broken' WHERE key = 'config'")
        conn.execute("UPDATE meta SET value = '\"ten\"' WHERE key = 'window_s'")
    with open_recording(path) as rec:
        assert rec.meta.config == {} and rec.meta.window_s == 10.0
        assert json.loads(build_report(rec).model_dump_json())["phases"]

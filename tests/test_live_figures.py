"""Live figures enter the window when their event happened, against the simulated server's real HTTP streams.

Long answers (thousands of tokens at real speed) make the difference between "when the first token arrived" and
"when the request ended" tens of seconds, so a TTFT counted at the end would not show at all within these tests.
Every wait has a deadline; no test depends on a sleep being long enough.
"""

import shutil
import sqlite3
import uuid
from pathlib import Path

import pytest
from engine_helpers import CollectingSink, config, finish, sim_server, wait_snapshot

from engine.config import RunConfig
from engine.load.controller import Controller
from engine.records import EventKind
from engine.replay.feeder import Feeder
from engine.snapshot import RunState
from engine.storage.reader import open_recording
from engine.storage.recorder import session_recorders

START_S = 90.0  # spawning a worker on a loaded 2-core box can take tens of seconds
WINDOW_S = 120.0  # longer than any wait here: a first token must not slide out of the window while we look


def long_answers(url: str) -> RunConfig:
    return config(url, concurrency=8, max_tokens=2000, tick_hz=4, window_s=WINDOW_S)


@pytest.fixture(scope="module")
def admits_four():
    """Admits 4 requests at once; a 2,000-token answer takes ~100 s (50 ms steps), far longer than these tests."""
    with sim_server(speed=1.0, seed=5, max_batch=4, decode_base_ms=50.0) as url:
        yield url


@pytest.fixture(scope="module")
def roomy():
    """Admits everything; 2,000-token answers at ~50 ms a token: no request of these tests ends."""
    with sim_server(speed=1.0, seed=6, decode_base_ms=50.0, decode_per_seq_ms=0.0) as url:
        yield url


def test_ttft_counts_at_the_first_token_and_the_queued_requests_show_as_waiting(admits_four):
    """A run shorter than one request: the window holds one TTFT per request that got its first token, and the
    four the server has not admitted are counted as waiting, with the age of the oldest."""
    sink = CollectingSink()
    c = Controller(long_answers(admits_four), sinks=[sink], stop_grace_s=0.0)
    c.start()
    try:
        s = wait_snapshot(
            c,
            lambda s: s.state is RunState.RUNNING and s.window.ttft.count == 4 and s.waiting_first_token == 4,
            START_S,
            "4 first tokens in the window and 4 requests waiting",
        )
        assert s.total.requests == 0 and s.total.ttft.count == 4 and s.in_flight == 8
        assert s.oldest_wait_s is not None and 0 < s.oldest_wait_s <= s.t_s
        later = wait_snapshot(c, lambda x: x.seq >= s.seq + 2, 30, "two more ticks")
        assert later.waiting_first_token == 4 and later.oldest_wait_s > s.oldest_wait_s  # still queued, older
        assert later.window.ttft.count == 4  # each first token counted once, not again on every tick
    finally:
        finish(c)
    shipped = [f for p in sink.progress for f in p.first_tokens]
    assert len(shipped) == len({rid for rid, _, _ in shipped}) == 4
    assert all(scheduled < first for _, first, scheduled in shipped)


@pytest.mark.alone  # counts ticks after an arrival: run with the cores to itself
def test_raising_concurrency_moves_windowed_ttft_within_two_ticks_of_the_new_first_tokens(roomy):
    sink = CollectingSink()
    c = Controller(long_answers(roomy), sinks=[sink], stop_grace_s=0.0)
    c.start()
    try:
        wait_snapshot(c, lambda s: s.state is RunState.RUNNING and s.window.ttft.count == 8, START_S, "8 TTFTs")
        c.set_concurrency(64)
        wait_snapshot(c, lambda s: s.window.ttft.count == 64, 60, "64 TTFTs in the window")
    finally:
        finish(c)
    t0 = next(e.t_ns for e in sink.events if e.kind is EventKind.START)
    last_first_s = (max(first for p in sink.progress for _, first, _ in p.first_tokens) - t0) / 1e9
    snaps = [s for s in sink.snapshots if s.t_s > last_first_s]
    shown = next(i for i, s in enumerate(snaps) if s.window.ttft.count == 64)
    assert shown <= 1, [(s.t_s, s.window.ttft.count) for s in snaps[: shown + 1]]  # the 1st or 2nd tick after
    assert all(r.ok for r in sink.records) and not sink.records  # no request ended: TTFT came from the ticks


def test_a_recording_replays_first_tokens_waiting_and_itl_and_older_schema_files_still_read(admits_four, tmp_path):
    c = Controller(long_answers(admits_four), stop_grace_s=0.0, recorder_factory=session_recorders(directory=tmp_path))
    path = Path(c.start_recording(str(tmp_path / f"long-{uuid.uuid4().hex[:8]}.wattload.sqlite")))
    c.start()
    try:
        shown = wait_snapshot(
            c, lambda s: s.window.ttft.count == 4 and s.waiting_first_token == 4, START_S, "4 TTFTs, 4 waiting"
        )
    finally:
        finish(c)
    with open_recording(path) as rec:
        feeder = Feeder(rec)
        feeder.advance(round(shown.t_s * 1e6))
        replay = feeder.snapshot()
    assert replay.window.ttft.count == 4 and replay.total.requests == 0
    assert replay.window.ttft.p50 == pytest.approx(shown.window.ttft.p50, rel=0.021)
    assert replay.waiting_first_token == 4 and replay.oldest_wait_s == pytest.approx(shown.oldest_wait_s, abs=0.3)

    assert replay.window.itl.count == shown.window.itl.count > 0  # gaps on the ticks, no per-token stamps
    # the same file as schema 2 wrote it: first tokens on the ticks, but no ITL there (it came from token_times)
    assert legacy_snapshot(path, tmp_path, 2, shown.t_s).window.ttft.count == 4
    assert legacy_snapshot(path, tmp_path, 2, shown.t_s).window.itl.count == 0
    # ... and as schema 1 wrote it: no first tokens on the ticks, so TTFT waits for the records (none here)
    legacy = legacy_snapshot(path, tmp_path, 1, None)
    assert legacy.total.ttft.count == 0 and legacy.waiting_first_token == 0
    assert legacy.total.output_tokens == replay_total_tokens(path)


def legacy_snapshot(path: Path, tmp_path: Path, schema: int, t_s: float | None):
    """Replay ``path`` rewritten as an older schema wrote it (its later columns dropped), at ``t_s`` or the end."""
    old = tmp_path / f"schema{schema}-{uuid.uuid4().hex[:6]}.wattload.sqlite"
    shutil.copy(path, old)
    with sqlite3.connect(old) as conn:
        later = ("outputs", "itl") if schema == 2 else ("waiting", "wait_us", "firsts", "outputs", "itl")
        for column in later:
            conn.execute(f"ALTER TABLE progress DROP COLUMN {column}")
        conn.execute("DROP VIEW requests_ms")  # it names ttfo_us, which schemas 1 and 2 did not have
        for column in ("ttfo_us", "rchunks"):
            conn.execute(f"ALTER TABLE requests DROP COLUMN {column}")
        conn.execute(f"PRAGMA user_version = {schema}")
        conn.execute(f"UPDATE meta SET value = '{schema}' WHERE key = 'schema_version'")
    conn.close()
    with open_recording(old) as rec:
        feeder = Feeder(rec)
        feeder.advance(rec.duration_us if t_s is None else round(t_s * 1e6))
        return feeder.snapshot()


def replay_total_tokens(path: Path) -> int:
    with open_recording(path) as rec:
        feeder = Feeder(rec)
        feeder.advance(rec.duration_us)
        return feeder.snapshot().total.output_tokens

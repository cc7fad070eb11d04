"""A recording whose process is killed with SIGKILL mid-run still opens, replays and reports."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from engine_helpers import wait_for

from engine.records import EventKind
from engine.replay.player import Player
from engine.reports.report import build_report
from engine.storage.reader import open_recording
from tui.cli import main

RECORDING_PROCESS = textwrap.dedent("""
    import sys, time
    from engine.control import SessionMeta
    from engine.records import ControlEvent, EventKind, RequestRecord, StreamProgress, TelemetrySample
    from engine.storage.recorder import Recorder

    t0 = time.perf_counter_ns()
    rec = Recorder(sys.argv[1], config_dump={"concurrency": 2, "window_s": 1.0}, meta=SessionMeta(model="m"),
                   system_info={"telemetry_source": "fake", "gpus": [{"index": 0, "name": "FakeGPU"}]}, t0_ns=t0)
    rec.on_event(ControlEvent(t0, EventKind.START))
    i, energy, stepped = 0, 0, False
    deadline = time.monotonic() + 30  # bounded even if nobody kills it
    while time.monotonic() < deadline:
        time.sleep(0.02)
        now = time.perf_counter_ns()
        if not stepped and now - t0 > 500_000_000:
            rec.on_event(ControlEvent(now, EventKind.CONCURRENCY, value=4.0))
            stepped = True
        i += 1
        energy += 6_000
        rec.on_records([RequestRecord(0, i, now - 200_000_000, now - 200_000_000, now - 190_000_000,
                                      now - 150_000_000, now, 20, 5, False, 5, 200)])
        rec.on_progress([StreamProgress(0, now, 5, 2, 0.1)])
        rec.on_telemetry([TelemetrySample(now, 0, power_w=300.0, energy_mj=energy)])
""")


def test_a_recording_killed_mid_run_opens_replays_and_reports(tmp_path, capsys):
    path = tmp_path / "killed.wattload.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", RECORDING_PROCESS, str(path)])
    try:

        def committed_rows() -> int:
            assert proc.poll() is None, "the recording process died on its own"
            if not path.exists():
                return 0
            try:
                with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
                    return conn.execute("SELECT count(*) FROM requests").fetchone()[0]
            except sqlite3.OperationalError:
                return 0  # the schema is not committed yet

        # > 1 s of facts, the concurrency step included
        committed = wait_for(lambda: (n := committed_rows()) >= 60 and n, 20, "the recording process to commit 60 "
                             "requests", interval_s=0.1)  # fmt: skip
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    assert Path(f"{path}-wal").exists()  # killed: nothing folded the WAL back

    with open_recording(path) as rec:
        assert not rec.closed_cleanly
        assert len(rec.warnings) == 1 and "not closed cleanly" in rec.warnings[0]
        n = rec.row_count("requests")
        assert n >= committed
        assert EventKind.CONCURRENCY in {e.kind for _, e in rec.events()}
        report = build_report(rec)
    assert [p.label.split(" ")[0] for p in report.phases] == ["c=2", "c=4"]
    assert report.totals.requests == n and report.totals.mean_watts is not None

    player = Player(path, playing=False)
    try:
        assert "not closed cleanly" in player.warning
        player.seek_to(player.duration_s)
        assert player.wait_idle(10)
        snap = player.latest
        assert snap.total.requests == n and snap.target_concurrency == 4
        assert "not closed cleanly" in snap.message  # shown in the dashboard's header
    finally:
        player.close()

    assert main(["report", str(path)]) == 0
    captured = capsys.readouterr()
    assert "| 2 | c=4" in captured.out and "not closed cleanly" in captured.err

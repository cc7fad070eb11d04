"""The recorder: file format and metadata, secrets, the session clock, commits, and failing without harm."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from engine_helpers import wait_for
from synthetic_recording import VirtualClock

from engine.config import RunConfig
from engine.control import SessionMeta
from engine.records import ControlEvent, ErrorClass, EventKind, RequestRecord, StreamProgress, TelemetrySample
from engine.replay.player import Player
from engine.snapshot import GpuReading, GpuStats, Snapshot
from engine.storage.reader import open_recording
from engine.storage.recorder import Recorder
from engine.storage.schema import APPLICATION_ID, SCHEMA_VERSION

NS = 1_000_000_000
KEY = "sk-wattload-test-KEY-0123456789abcdef"


def record(i: int, end_ns: int, *, error: ErrorClass | None = None, detail: str = "") -> RequestRecord:
    return RequestRecord(worker=0, request_id=i, t_scheduled_ns=end_ns - NS // 2, t_start_ns=end_ns - NS // 2,
                         t_headers_ns=end_ns - NS // 3, t_first_token_ns=None if error else end_ns - NS // 4,
                         t_end_ns=end_ns, input_tokens=None if error else 10, output_tokens=0 if error else 8,
                         output_estimated=False, chunks=0 if error else 8, status=500 if error else 200, error=error,
                         error_detail=detail)


def test_a_closed_recording_is_one_versioned_self_describing_file(tmp_path):
    clock = VirtualClock()
    cfg = RunConfig(base_url="http://127.0.0.1:9/v1", model="m", concurrency=3, window_s=5)
    path = tmp_path / "sub" / "one.wattload.sqlite"
    rec = Recorder(path, config_dump=cfg.safe_dump(), meta=SessionMeta(endpoint=cfg.base_url, model="m"),
                   system_info={"telemetry_source": "fake", "gpus": [{"index": 0, "name": "FakeGPU"}]},
                   workload_dump={"name": "chat", "input": {"kind": "fixed", "value": 10}}, t0_ns=clock(), clock=clock)
    clock.t_ns += 2 * NS
    rec.on_records([record(1, clock.t_ns - 1000)])
    rec.close()
    assert rec.failed is None and rec.closed
    assert not Path(f"{path}-wal").exists()  # folded back at close: one file to copy or mail
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    meta = {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}
    assert meta["format"] == "wattload-recording" and meta["schema_version"] == SCHEMA_VERSION
    assert meta["config"]["concurrency"] == 3 and "api_key" not in meta["config"]
    assert meta["window_s"] == 5 and meta["telemetry_source"] == "fake" and meta["gpus"][0]["name"] == "FakeGPU"
    assert meta["workload"]["name"] == "chat" and meta["closed"]["requests"] == 1
    row = conn.execute("SELECT ttft_ms, e2e_ms, end_ms FROM requests_ms").fetchone()
    assert row == (250.0, 500.0, 1999.999)


def test_no_api_key_reaches_the_file_or_its_wal(tmp_path):
    """The key rides in the config (excluded), in an error detail, an event message and the URL's userinfo."""
    cfg = RunConfig(base_url="http://user:hunter2pass@127.0.0.1:9/v1", model="m", api_key=KEY)
    path = tmp_path / "secret.wattload.sqlite"
    clock = VirtualClock()
    rec = Recorder(path, config_dump=cfg.safe_dump(), meta=SessionMeta(endpoint=cfg.base_url, model="m"),
                   t0_ns=clock(), clock=clock, secrets=[KEY], commit_interval_s=0.05)
    clock.t_ns += NS
    rec.on_records([record(1, clock.t_ns, error=ErrorClass.HTTP_4XX, detail=f"401: bad key {KEY}"),
                    record(2, clock.t_ns, error=ErrorClass.HTTP_4XX, detail=f"Authorization: Bearer {KEY}")])
    rec.on_event(ControlEvent(t_ns=clock.t_ns, kind=EventKind.WARNING, message=f"server said {KEY}"))
    rec.on_snapshot(Snapshot(t_s=1.0, endpoint=cfg.base_url, message=f"x {KEY}"))
    wal = Path(f"{path}-wal")
    wait_for(lambda: wal.exists() and wal.stat().st_size > 0, 10, "a first commit")
    time.sleep(0.2)
    during = path.read_bytes() + Path(f"{path}-wal").read_bytes()
    rec.close()
    after = path.read_bytes()
    for blob in (during, after):
        assert KEY.encode() not in blob and b"hunter2pass" not in blob
        assert b"0123456789abcdef" not in blob  # not even a tail of it
    with open_recording(path) as r:
        details = {x.error_detail for x in r.requests()}
    assert all("***" in d for d in details)


def test_the_session_clock_starts_at_the_start_event(tmp_path):
    """Armed before the workers are ready (t0 unknown), the recording's clock is the session's: its START."""
    clock = VirtualClock()
    rec = Recorder(tmp_path / "armed.wattload.sqlite", config_dump={}, meta=SessionMeta(model="m"), clock=clock,
                   commit_interval_s=0.05)
    rec.on_event(ControlEvent(t_ns=clock(), kind=EventKind.RECORD_START, message="recording"))
    rec.on_snapshot(Snapshot(message="starting workers"))
    time.sleep(0.2)  # several commit intervals pass while the workers start: nothing may be written yet
    clock.t_ns += 3 * NS
    t0 = clock()
    rec.on_event(ControlEvent(t_ns=t0, kind=EventKind.START, message="started"))
    clock.t_ns += NS
    rec.on_records([record(1, clock())])
    rec.close()
    with open_recording(rec.path) as r:
        assert r.meta.t0_ns == t0
        events = {e.kind: e.t_ns for _, e in r.events()}
        assert events[EventKind.START] == 0 and events[EventKind.RECORD_START] == -3 * NS
        assert next(r.requests()).t_end_ns == NS


def test_gpu_names_come_from_the_snapshots_when_not_given(tmp_path):
    clock = VirtualClock()
    rec = Recorder(tmp_path / "g.wattload.sqlite", config_dump={}, meta=SessionMeta(), t0_ns=clock(), clock=clock)
    rec.on_snapshot(Snapshot(gpu=GpuStats(available=True, source="sim",
                                          gpus=(GpuReading(index=1, name="Sim H100"),))))
    rec.on_telemetry([TelemetrySample(t_ns=clock(), gpu_index=1, power_w=100.0)])
    rec.close()
    with open_recording(rec.path) as r:
        assert r.meta.telemetry_source == "sim"
        assert [(g.index, g.name) for g in r.meta.gpus] == [(1, "Sim H100")]


def test_facts_are_committed_while_the_run_goes_on(tmp_path):
    """No close needed: another reader sees the facts within a commit interval or two (kill -9 loses < 1 s)."""
    rec = Recorder(tmp_path / "live.wattload.sqlite", config_dump={}, meta=SessionMeta(), t0_ns=time.perf_counter_ns())
    try:
        rec.on_records([record(i, time.perf_counter_ns()) for i in range(5)])
        rec.on_progress([StreamProgress(worker=0, t_ns=time.perf_counter_ns(), chunks=3, in_flight=1,
                                        loop_lag_ms=0.1)])
        def committed() -> int:
            with sqlite3.connect(f"file:{rec.path}?mode=ro", uri=True) as conn:
                return conn.execute("SELECT count(*) FROM requests").fetchone()[0]

        wait_for(lambda: committed() == 5, 10, "the writer to commit the five requests", interval_s=0.05)
    finally:
        rec.close()


def test_an_unwritable_destination_warns_once_and_never_raises(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    warnings: list[ControlEvent] = []
    rec = Recorder(blocker / "rec.wattload.sqlite", config_dump={}, meta=SessionMeta(), on_warning=warnings.append)
    rec.on_records([record(1, time.perf_counter_ns())])
    rec.on_event(ControlEvent(t_ns=0, kind=EventKind.PAUSE))
    rec.on_snapshot(Snapshot())
    rec.close()
    assert rec.failed is not None and rec.failed.startswith("recording stopped:")
    assert [w.kind for w in warnings] == [EventKind.WARNING] and warnings[0].message == rec.failed


def test_a_fact_that_cannot_be_encoded_stops_the_recording_not_the_run(tmp_path):
    warnings: list[ControlEvent] = []
    rec = Recorder(tmp_path / "bad.wattload.sqlite", config_dump={}, meta=SessionMeta(), on_warning=warnings.append,
                   t0_ns=time.perf_counter_ns(), commit_interval_s=0.05)
    rec.on_records([record(1, time.perf_counter_ns())])
    rec.on_records([object()])  # type: ignore[list-item]
    rec.on_records(42)  # type: ignore[arg-type]
    rec.close()
    assert rec.failed is not None and len(warnings) == 1


DISK_FULL = textwrap.dedent("""
    import json, resource, signal, sys, time
    from engine.control import SessionMeta
    from engine.records import ErrorClass, RequestRecord
    from engine.storage.recorder import Recorder

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, like ENOSPC
    resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
    warnings = []
    rec = Recorder(sys.argv[1], config_dump={}, meta=SessionMeta(model="m"), on_warning=warnings.append,
                   t0_ns=time.perf_counter_ns(), commit_interval_s=0.02)
    fed, deadline = 0, time.monotonic() + 20
    while rec.failed is None and time.monotonic() < deadline:
        now = time.perf_counter_ns()
        batch = [RequestRecord(0, fed + i, now - 10**9, now - 10**9, None, None, now, None, 0, False, 0, 500,
                               ErrorClass.HTTP_5XX, f"500 unique detail {fed + i}") for i in range(200)]
        rec.on_records(batch)
        fed += len(batch)
        time.sleep(0.005)
    rec.on_records(batch)  # after the failure: ignored, no exception
    rec.close()
    print(json.dumps({"failed": rec.failed, "warnings": [w.message for w in warnings], "fed": fed}))
""")


def test_disk_full_stops_the_recording_with_one_warning_and_keeps_what_was_written(tmp_path):
    path = tmp_path / "full.wattload.sqlite"
    out = subprocess.run([sys.executable, "-c", DISK_FULL, str(path)], capture_output=True, text=True, timeout=60,
                         check=True)
    result = json.loads(out.stdout)
    assert result["failed"].startswith("recording stopped:") and "disk" in result["failed"]
    assert result["warnings"] == [result["failed"]]
    with open_recording(path) as rec:
        kept = rec.row_count("requests")
        assert 0 < kept < result["fed"]
        assert not rec.closed_cleanly and rec.warnings
    player = Player(path, playing=False)
    try:
        player.seek_to(player.duration_s)
        assert player.wait_idle(10)
        assert player.latest.total.errors == kept
    finally:
        player.close()

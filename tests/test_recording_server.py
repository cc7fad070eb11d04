"""Server samples are recorded and replayed into the same Server figures; files without the table still open."""

import json
import sqlite3

import pytest
from engine_helpers import sim_server

from engine.replay.feeder import Feeder
from engine.storage.reader import open_recording
from tui.cli import main


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    path = tmp_path_factory.mktemp("rec") / "server.wattload.sqlite"
    with sim_server(speed=5.0) as url:
        code = main(["run", url, "--headless", "-d", "5s", "-c", "4", "--max-tokens", "16", "--workers", "1",
                     "--gpu", "none", "--server-metrics", "auto", "--scrape-interval", "200ms", "--window", "1s",
                     "--record", str(path)])  # fmt: skip
    assert code == 0
    return path


def test_replay_shows_the_server_figures_the_live_run_showed(recorded):
    rec = open_recording(recorded)
    samples = rec.server_samples()
    assert len(samples) >= 5 and all(s.engine == "vllm" for _, s in samples)
    # a snapshot the live run published mid-run (the last one is stored at close, later than it was published)
    t_us, shown = next(s for s in rec.snapshots()[1:-1] if s[1]["server"]["ttft"]["count"] > 0)
    feeder = Feeder(rec)
    feeder.advance(t_us)
    replayed = feeder.snapshot().server
    assert replayed.available and replayed.engine == "vllm"
    assert replayed.ttft.count == shown["server"]["ttft"]["count"]
    assert replayed.running == shown["server"]["running"]
    assert replayed.generation_tokens_per_s == pytest.approx(shown["server"]["generation_tokens_per_s"], rel=1e-3)
    rec.close()


def test_a_recording_without_the_server_table_still_replays(recorded, tmp_path):
    old = tmp_path / "old.wattload.sqlite"
    old.write_bytes(recorded.read_bytes())
    with sqlite3.connect(old) as conn:
        conn.execute("DROP TABLE server_samples")
    rec = open_recording(old)
    assert rec.server_samples() == []
    feeder = Feeder(rec)
    feeder.advance(rec.duration_us)
    snap = feeder.snapshot()
    assert snap.total.requests > 0 and not snap.server.available and snap.server.endpoints == ()
    rec.close()


def test_report_has_server_columns_per_phase(recorded, capsys):
    assert main(["report", str(recorded)]) == 0
    md = capsys.readouterr().out
    assert "Server-side (from its Prometheus metrics" in md
    assert "| # | phase | running | waiting | KV % | gen tok/s | TTFT p50 ms | TTFT p99 ms | preempt |" in md
    assert main(["report", str(recorded), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    phase = report["phases"][0]
    assert phase["server_running"] > 0 and phase["server_generation_tokens_per_s"] > 0
    assert report["totals"]["server_ttft_p50_ms"] is not None and report["totals"]["server_ttft_p99_ms"] is not None
    # the server's tokens and the client's agree over the same span (usage-counted, 16-token answers)
    assert phase["server_generation_tokens_per_s"] == pytest.approx(phase["output_tokens_per_s"], rel=0.5)


def test_a_report_without_server_samples_has_no_server_table(recorded, tmp_path, capsys):
    old = tmp_path / "old.wattload.sqlite"
    old.write_bytes(recorded.read_bytes())
    with sqlite3.connect(old) as conn:
        conn.execute("DROP TABLE server_samples")
    assert main(["report", str(old)]) == 0
    assert "Server-side" not in capsys.readouterr().out

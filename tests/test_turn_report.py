"""Per-turn figures in `report` (the recording's `turn` column) and the server's prefix-cache hit rate beside them
in the summary, the --json file and the report. Real runs against the simulator's /metrics (vLLM names, its own
prefix cache); an old-schema file is made by removing the column from a real recording."""

from __future__ import annotations

import json
import sqlite3

import pytest
from synthetic_recording import SyntheticSpec, write_synthetic

from engine.reports.render import report_markdown
from engine.reports.report import build_report
from engine.storage.reader import open_recording
from engine.telemetry.prefix_cache import PrefixCacheTally
from engine.telemetry.samples import ServerSample
from tui.cli import main

SESSION_TOML = """
input = 400
output = 12
[session]
turns = 3
input = 40
output = 12
"""


def _sample(t_s: float, source: str, queries: float | None, hits: float | None, **gauges: float) -> ServerSample:
    counters = {k: v for k, v in (("prefix_queries", queries), ("prefix_hits", hits)) if v is not None}
    return ServerSample(t_ns=round(t_s * 1e9), source=source, engine="vllm", counters=counters, gauges=gauges)


def test_prefix_hit_rate_sums_increases_across_replicas_and_survives_a_restart():
    tally = PrefixCacheTally()
    assert tally.figures() is None
    tally.add([_sample(0, "a", 1000, 900), _sample(0, "b", 50, 0)])  # the baselines: what came before the run
    tally.add([_sample(1, "a", 1400, 1000), _sample(1, "b", 150, 60)])  # +400/+100 and +100/+60
    tally.add([ServerSample(t_ns=2, source="a", error="timed out")])  # a failed scrape changes nothing
    tally.add([_sample(3, "a", 200, 150)])  # a restarted server: the new value counts whole (+200/+150)
    f = tally.figures()
    assert f is not None and f.basis == "counters"
    assert (f.queries, f.hits) == (700, 310)
    assert f.hit_rate_pct == pytest.approx(100 * 310 / 700)
    assert "44.3% of 700 prompt tokens hit" in f.line()


def test_an_engine_with_only_a_gauge_gets_its_mean_and_says_so():
    tally = PrefixCacheTally()
    tally.add([_sample(0, "s", None, 10, prefix_hit_rate=0.2), _sample(1, "s", None, 30, prefix_hit_rate=0.4)])
    f = tally.figures()
    assert f is not None and f.basis == "gauge" and f.hit_rate_pct == pytest.approx(30.0)
    assert "mean of the server's gauge" in f.line()


@pytest.mark.slow
def test_a_session_run_shows_turns_and_the_prefix_cache_in_summary_json_and_report(tmp_path, capsys):
    profile, out, rec = tmp_path / "s.toml", tmp_path / "r.json", tmp_path / "r.wattload.sqlite"
    profile.write_text(SESSION_TOML)
    code = main(["run", "--sim", "--headless", "--profile", str(profile), "-c", "2", "-n", "24", "--workers", "1",
                 "--server-metrics", "auto", "--scrape-interval", "100ms", "--gpu", "none", "--json", str(out),
                 "--record", str(rec)])  # fmt: skip
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "per turn" in printed.out and "prefix cache" in printed.out, printed.out
    data = json.loads(out.read_text())
    turns, cache = data["turns"], data["prefix_cache"]
    assert [t["turn"] for t in turns] == [1, 2, 3]
    assert cache["basis"] == "counters"
    assert cache["hit_rate_pct"] == pytest.approx(100 * cache["hits"] / cache["queries"])
    with open_recording(rec) as recording:
        records = list(recording.requests())
        scrapes = sorted(t.t_ns for _, t in recording.server_samples() if t.ok)
        report = build_report(recording)
    assert sorted({r.turn for r in records}) == [1, 2, 3]
    # The server's own counters, checked against what the client knows (both clocks are the session's). Each
    # prompt is looked up once, when admitted (after its send, before its first token). A scrape reads the
    # counters between the previous answer's arrival and its own (one source is polled one fetch at a time), so
    # the queries from the first to the last scrape hold at least the prompts sent after the first answer and
    # answered before the last-but-one, and at most every prompt sent before the last answer, the turns cancelled
    # at the stop included (admitted, never finished; none longer than the run's longest prompt). Only later
    # turns resend a conversation the cache can hold.
    first, before_last, last = scrapes[0], scrapes[-2], scrapes[-1]
    inside = sum(r.input_tokens or 0 for r in records
                 if r.t_start_ns >= first and (r.t_first_token_ns or before_last + 1) <= before_last)  # fmt: skip
    cancelled = data["cancelled_at_stop"] * max(r.input_tokens or 0 for r in records)
    sent = [r for r in records if r.t_start_ns <= last]
    assert inside <= cache["queries"] <= sum(r.input_tokens or 0 for r in sent) + cancelled, (cache, inside)
    assert 0 < cache["hits"] <= sum(r.input_tokens or 0 for r in sent if r.turn >= 2) + cancelled, cache
    assert cache["baseline_late_s"] == pytest.approx((first - min(r.t_start_ns for r in records)) / 1e9, abs=1e-3)
    assert [(t.turn, t.requests, t.errors) for t in report.turns] == [(t["turn"], t["requests"], t["errors"])
                                                                      for t in turns]  # fmt: skip
    for mine, live in zip(report.turns, turns, strict=True):  # the same requests, by the server's usage
        assert mine.mean_input_tokens == pytest.approx(live["mean_input_tokens"])
    assert report.prefix_cache is not None and report.prefix_cache.queries == cache["queries"]
    # the server table's rate per span: over the session's span it is nearly the same counters' increase (the
    # session figure also counts turns admitted after the last request ended, cancelled at the stop)
    assert report.totals.server_prefix_hit_pct == pytest.approx(report.prefix_cache.hit_rate_pct, abs=5.0)
    md = report_markdown(report)
    assert "Per turn" in md and "| 3 | " in md and "server prefix cache" in md and "| prefix hit % |" in md


def test_a_schema_2_recording_without_the_turn_column_still_reads_as_single_requests(tmp_path):
    path = tmp_path / "old.wattload.sqlite"
    write_synthetic(path, SyntheticSpec(duration_s=5.0, rate=20.0))
    with sqlite3.connect(path) as db:
        db.execute("DROP VIEW requests_ms")
        db.execute("ALTER TABLE requests DROP COLUMN turn")
        db.execute("PRAGMA user_version=2")
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    with open_recording(path) as rec:
        records = list(rec.requests())
        report = build_report(rec)
    assert len(records) > 50 and {r.turn for r in records} == {0}
    assert report.turns == [] and report.totals.requests == len(records)
    assert "Per turn" not in report_markdown(report)

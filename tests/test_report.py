"""Phase reports against figures computed by hand from a small recording with hand-chosen stamps.

The session (written through the real Recorder on a virtual clock, arrival = the stamps below):
  0 s  START, concurrency 2           phase 1 = [0, 20): warm-up min(10 s window, 20% of 20 s) = 4 s
 20 s  concurrency -> 4               phase 2 = [20, 80): warm-up min(10 s, 20% of 60 s) = 10 s
 80 s  STOP
Phase 1 requests end at 2 (warm-up), 5, 7, ..., 19; TTFT 100 ms, 11 tokens, TPOT 100 ms, 50 prompt tokens;
one http_5xx at 10 s. Phase 2 requests end at 22, 25 (warm-up), 35, 45, ..., 75, 80; TTFT 200 ms, 21 tokens,
TPOT 50 ms, 80 prompt tokens. Stream progress brings each request's chunks at its end. The GPU's energy counter
rises 300 J/s until 20 s and 500 J/s after. Pricing: $2 per GPU-hour, power included.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from synthetic_recording import VirtualClock

from engine.config import RunConfig
from engine.control import SessionMeta
from engine.pricing import PricingProfile
from engine.records import ControlEvent, ErrorClass, EventKind, RequestRecord, StreamProgress, TelemetrySample
from engine.reports.render import render_comparison, render_report
from engine.reports.report import build_report, compare
from engine.storage.reader import open_recording
from engine.storage.recorder import Recorder
from tui.cli import main

NS = 1_000_000_000
MS = 1_000_000
PRICING = PricingProfile(name="test-rental", gpu="TestGPU", source="hand", rental={"dollars_per_gpu_hour": 2.0},
                         energy={"included_in_gpu_price": True, "dollars_per_kwh": 0.1})
PHASE1_ENDS = [2, 5, 7, 9, 11, 13, 15, 17, 19]
PHASE2_ENDS = [22, 25, 35, 45, 55, 65, 75, 80]


def request(i: int, end_ns: int, ttft_ms: int, tokens: int, tpot_ms: int, prompt: int) -> RequestRecord:
    sched = end_ns - (ttft_ms + (tokens - 1) * tpot_ms) * MS
    return RequestRecord(worker=0, request_id=i, t_scheduled_ns=sched, t_start_ns=sched, t_headers_ns=sched + 10 * MS,
                         t_first_token_ns=sched + ttft_ms * MS, t_end_ns=end_ns, input_tokens=prompt,
                         output_tokens=tokens, output_estimated=False, chunks=tokens, status=200)


def hand_recording(path: Path, *, max_tokens: int = 128, workload: str = "chat",
                   extra_events: tuple[tuple[float, EventKind, float | None, str], ...] = ()) -> Path:
    clock = VirtualClock()
    t0 = clock()
    cfg = RunConfig(base_url="http://127.0.0.1:9/v1", model="hand-model", concurrency=2, window_s=10,
                    max_tokens=max_tokens, workload=workload)
    rec = Recorder(path, config_dump=cfg.safe_dump(), meta=SessionMeta(endpoint=cfg.base_url, model=cfg.model,
                                                                        workload=workload),
                   system_info={"telemetry_source": "fake", "gpus": [{"index": 0, "name": "TestGPU"}]},
                   pricing_dump=PRICING, workload_dump={"name": workload}, t0_ns=t0, clock=clock)
    facts: list[tuple[int, int, str, object]] = []  # (time ns, order, kind, fact)
    energy = 0
    for k in range(81):
        energy += 0 if k == 0 else (300_000 if k <= 20 else 500_000)
        facts.append((k * NS, 3, "t", TelemetrySample(t_ns=t0 + k * NS, gpu_index=0, power_w=400.0,
                                                      energy_mj=energy)))
    for i, end in enumerate(PHASE1_ENDS + PHASE2_ENDS):
        r = request(i, t0 + end * NS, *((100, 11, 100, 50) if end < 20 else (200, 21, 50, 80)))
        facts.append((end * NS, 1, "r", r))
        facts.append((end * NS, 2, "p", StreamProgress(worker=0, t_ns=r.t_end_ns, chunks=r.chunks, in_flight=2,
                                                       loop_lag_ms=0.1)))
    failed = RequestRecord(worker=0, request_id=99, t_scheduled_ns=t0 + 9 * NS, t_start_ns=t0 + 9 * NS,
                           t_headers_ns=t0 + 10 * NS, t_first_token_ns=None, t_end_ns=t0 + 10 * NS, input_tokens=None,
                           output_tokens=0, output_estimated=False, chunks=0, status=500, error=ErrorClass.HTTP_5XX,
                           error_detail="500 Internal Server Error")
    facts.append((10 * NS, 1, "r", failed))
    facts.append((0, 0, "e", ControlEvent(t_ns=t0, kind=EventKind.START)))
    facts.append((20 * NS, 0, "e", ControlEvent(t_ns=t0 + 20 * NS, kind=EventKind.CONCURRENCY, value=4.0)))
    facts.append((80 * NS, 9, "e", ControlEvent(t_ns=t0 + 80 * NS, kind=EventKind.STOP)))
    for t_s, kind, value, message in extra_events:  # (seconds, kind, value, message)
        t = round(t_s * NS)
        facts.append((t, 0, "e", ControlEvent(t_ns=t0 + t, kind=kind, value=value, message=message)))
    for t, _, kind, fact in sorted(facts, key=lambda f: (f[0], f[1])):
        clock.t_ns = t0 + t
        {"r": rec.on_records, "p": rec.on_progress, "t": rec.on_telemetry}.get(kind, lambda f: None)([fact])
        if kind == "e":
            rec.on_event(fact)  # type: ignore[arg-type]
    rec.close()
    assert rec.failed is None
    return path


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    return hand_recording(tmp_path_factory.mktemp("hand") / "a.wattload.sqlite")


@pytest.fixture(scope="module")
def report(recording):
    with open_recording(recording) as rec:
        return build_report(rec)


def dollars_per_m(seconds: float, tokens: int) -> float:
    return 2.0 * seconds / 3600 / tokens * 1e6


def test_phases_split_at_the_control_events_with_the_warm_up_rule(report):
    assert [(p.label, p.start_s, p.end_s, p.steady_from_s) for p in report.phases] == [
        ("c=2", 0.0, 20.0, 4.0),  # 20% of a 20 s phase
        ("c=4", 20.0, 80.0, 30.0),  # capped at the 10 s window
    ]
    assert report.duration_s == 80.0 and report.window_s == 10.0


def test_phase_figures_match_the_hand_computation(report):
    p1, p2 = report.phases
    assert (p1.span_s, p1.requests, p1.errors) == (16.0, 8, 1)
    assert p1.error_rate == pytest.approx(1 / 9)
    assert (p1.output_tokens, p1.input_tokens) == (88, 400)
    assert p1.output_tokens_per_s == pytest.approx(88 / 16) and p1.input_tokens_per_s == pytest.approx(400 / 16)
    assert (p1.ttft_p50_ms, p1.ttft_p99_ms, p1.tpot_p50_ms, p1.tpot_p99_ms) == pytest.approx((100, 100, 100, 100))
    assert p1.mean_watts == pytest.approx(300.0)
    assert p1.energy_j == pytest.approx(300.0 * 16)
    assert p1.joules_per_output_token == pytest.approx(4800 / 88)
    assert p1.dollars_per_million_output == pytest.approx(dollars_per_m(16, 88))

    assert (p2.span_s, p2.requests, p2.errors, p2.error_rate) == (50.0, 6, 0, 0.0)
    assert (p2.output_tokens, p2.input_tokens) == (126, 480)
    assert p2.output_tokens_per_s == pytest.approx(126 / 50)
    assert (p2.ttft_p50_ms, p2.ttft_p99_ms, p2.tpot_p50_ms, p2.tpot_p99_ms) == pytest.approx((200, 200, 50, 50))
    assert p2.mean_watts == pytest.approx(500.0)
    assert p2.joules_per_output_token == pytest.approx(500 * 50 / 126)
    assert p2.dollars_per_million_output == pytest.approx(dollars_per_m(50, 126))


def test_session_totals_match_the_hand_computation(report):
    t = report.totals
    assert (t.span_s, t.requests, t.errors) == (80.0, 17, 1)
    assert t.error_rate == pytest.approx(1 / 18)
    assert (t.output_tokens, t.input_tokens) == (9 * 11 + 8 * 21, 9 * 50 + 8 * 80)
    assert t.ttft_p50_ms == pytest.approx(100, rel=0.01)  # 9 of 17 at 100 ms: the median is a 100 ms bucket
    assert t.ttft_p99_ms == pytest.approx(200, rel=0.01)  # a bucket's value: within the histogram's 1%
    assert t.energy_j == pytest.approx(300 * 20 + 500 * 60)
    assert t.mean_watts == pytest.approx(36000 / 80)
    assert t.joules_per_output_token == pytest.approx(36000 / 267)
    assert t.dollars_per_million_output == pytest.approx(dollars_per_m(80, 267))


def test_markdown_csv_and_json_say_the_same(report):
    md = render_report(report, "md")
    assert "| 1 | c=2 | 0.0 | 20.0 | 16.0 | 8 | 11.11% | 5.50 | 25.0 | 100 | 100 | 100 | 100 | 300 | 54.5 | 101 |" in md
    assert "min(window, 20% of the phase)" in md and "pricing: test-rental" in md
    rows = list(csv.DictReader(io.StringIO(render_report(report, "csv"))))
    assert [r["label"] for r in rows] == ["c=2", "c=4", "session"]
    assert float(rows[1]["output_tokens_per_s"]) == pytest.approx(126 / 50)
    assert rows[0]["power_cap_w"] == ""  # unknown, not zero
    data = json.loads(render_report(report, "json"))
    assert data["phases"][1]["joules_per_output_token"] == pytest.approx(500 * 50 / 126)
    assert data["methodology"]["settings"]["max_tokens"] == 128


def test_two_recordings_compare_phase_by_phase_and_flag_methodology(recording, report, tmp_path):
    other = hand_recording(tmp_path / "b.wattload.sqlite", max_tokens=256, workload="rag")
    with open_recording(other) as rec:
        b = build_report(rec)
    same = compare(report, report)
    assert same.methodology_warnings == [] and [p.index for p in same.pairs] == [1, 2]
    diff = compare(report, b)
    text = " | ".join(diff.methodology_warnings)
    assert "different workload profiles" in text
    assert "max_tokens 128 vs 256" in text and "workload 'chat' vs 'rag'" in text
    md = render_comparison(diff, "md")
    assert "**methodology differs**" in md and "## phase 2: c=4 / c=4" in md
    assert "| out tok/s | 2.52 | 2.52 | +0.0% |" in md
    rows = list(csv.DictReader(io.StringIO(render_comparison(diff, "csv"))))
    assert {r["phase"] for r in rows} == {"1", "2", "session"}
    assert json.loads(render_comparison(diff, "json"))["methodology_warnings"] == diff.methodology_warnings


def test_report_command_writes_each_format(recording, tmp_path, capsys):
    assert main(["report", str(recording)]) == 0
    assert "| 2 | c=4 |" in capsys.readouterr().out
    out = tmp_path / "r.json"
    assert main(["report", str(recording), "--format", "json", "-o", str(out)]) == 0
    assert json.loads(out.read_text())["totals"]["requests"] == 17
    assert main(["report", str(recording), str(recording), "-f", "csv"]) == 0
    assert capsys.readouterr().out.startswith("phase,label_a,label_b,metric,a,b,delta_pct")
    assert main(["report", str(recording), str(recording), str(recording)]) == 2

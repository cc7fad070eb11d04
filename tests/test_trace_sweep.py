"""`sweep --trace`: the load axis is the trace speed, the trace goes on from step to step (never restarted), and
it says when the trace ran out; `replay --drive` of a trace recording sends the same rows on the same schedule.
Real runs against the simulator; the rules on hand-made steps."""

from __future__ import annotations

import hashlib
import itertools
import json
import sqlite3
from pathlib import Path

import pytest
from engine_helpers import sim_server, wait_for

from engine.session.build import build_session
from engine.session.spec import RecordingSpec, SessionSpec, TraceSpec
from engine.sweep.rules import CeilingFinder, StepResult, SweepSettings, Verdict, speed_steps
from tui.cli import main

ROWS = 150  # 0.1 s apart: 10 req/s at ×1, 15 s of trace


def even_trace(path: Path, rows: int = ROWS, gap_ms: int = 100) -> Path:
    path.write_text("".join(json.dumps({"timestamp": gap_ms * i, "input_length": 30 + i % 7, "output_length": 3})
                            + "\n" for i in range(rows)))  # fmt: skip
    return path


def speed_step(i: int, speed: float, tps: float, in_flight: int = 4) -> StepResult:
    return StepResult(index=i, concurrency=in_flight, held_s=5, steady=True, requests=100, errors=0, error_rate=0.0,
                      requests_per_s=tps / 10, output_tokens_per_s=tps, input_tokens_per_s=tps, speed=speed)


def test_speed_plans_step_by_factor_or_increment_and_end_at_max():
    assert speed_steps(1, 64) == (1, 2, 4, 8, 16, 32, 64)
    assert speed_steps(0.5, 3, factor=2) == (0.5, 1, 2, 3)
    assert speed_steps(1, 2, linear=0.25) == (1, 1.25, 1.5, 1.75, 2)
    with pytest.raises(ValueError, match="0 < start <= max"):
        speed_steps(4, 2)
    assert SweepSettings(axis="speed", speeds=(1, 2, 4)).load_steps() == [1, 2, 4]


def test_the_finder_reads_capacity_and_knee_as_trace_speeds():
    finder = CeilingFinder(SweepSettings(axis="speed", speeds=(0.5, 1, 2, 4, 8)))
    for i, tps in enumerate((100, 200, 390, 400)):  # keeps up to ×2, then saturates
        speed = finder.next_load()
        assert speed is not None
        judged = finder.record(speed_step(i, speed, tps))
    assert judged.verdict is Verdict.PLATEAU and finder.done
    o = finder.outcome()
    assert (o.capacity_speed, o.knee_speed, o.capacity, o.knee) == (2, 2, None, None)
    assert o.stop_reason == "trace speed ×4: saturated: trace speed ×4 gained under 5% over trace speed ×2"


@pytest.mark.parametrize(("argv", "expected"), [
    (["--profile", "chat"], "--trace and --profile cannot be combined"),
    (["--start", "2", "--trace-speed", "2"], "give the first speed once: --start or --trace-speed"),
    (["--start", "4", "--max", "2"], "0 < start <= max"),
    (["--power-caps", "300:200:50"], "--trace and --power-caps cannot be combined"),
])  # fmt: skip
def test_bad_trace_sweep_input_is_one_line(tmp_path, capsys, argv, expected):
    assert main(["sweep", "--sim", "--trace", str(even_trace(tmp_path / "t.jsonl")), *argv]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1, err


def test_a_concurrency_sweep_wants_whole_steps(capsys):
    assert main(["sweep", "--sim", "--start", "0.5"]) == 2
    assert "--start 0.5: concurrency steps are whole numbers" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.own_core  # each step's verdict compares its output tok/s with the last: a starved client blurs that
def test_sweep_steps_the_trace_speed_and_goes_on_through_the_trace_until_it_ends(tmp_path, capsys):
    trace, out = even_trace(tmp_path / "even.jsonl"), tmp_path / "sweep.json"
    code = main(["sweep", "--sim", "--sim-set", "speed=50", "--trace", str(trace), "--step-time", "1.5s",
                 "--window", "1s", "--max", "8", "--workers", "1", "--gpu", "none", "--json", str(out)])  # fmt: skip
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "trace detected as Mooncake JSONL" in printed.err and "the sweep stops where it ends" in printed.err
    report = json.loads(out.read_text())
    outcome = report["result"]["outcome"]
    steps = outcome["steps"]
    assert report["settings"]["axis"] == "speed" and report["settings"]["speeds"] == [1, 2, 4, 8]
    assert [s["speed"] for s in steps] == [1, 2, 4][: len(steps)] and len(steps) >= 2
    for s in steps:  # open loop on the trace's clock: ×k offers k times the trace's 10 req/s
        assert s["requests_per_s"] == pytest.approx(10 * s["speed"], rel=0.3), s
    # 1.5 s at ×1, ×2 and ×4 replays 10.5 of the trace's 15 s, so it runs out during ×8, and every row went out
    # once: a sweep that restarted the trace per step would have sent its first rows again
    assert outcome["stop_reason"].startswith("the trace ended during step 4 (×8)"), outcome["stop_reason"]
    assert report["result"]["lengths"]["requests"] == ROWS
    assert report["profile"]["sha256"] == hashlib.sha256(trace.read_bytes()).hexdigest()
    assert "speed" in printed.out and "×2" in printed.out
    assert main(["report", str(out), "--html", str(tmp_path / "sweep.html")]) == 0
    page = (tmp_path / "sweep.html").read_text()
    assert "<th>trace speed</th>" in page and "<td>×2</td>" in page and "<p>capacity ×" in page


def _scheduled_ms(path: Path) -> list[float]:
    with sqlite3.connect(path) as db:
        return sorted(row[0] for row in db.execute("SELECT scheduled_ms FROM requests_ms"))


@pytest.mark.slow
def test_replay_drive_of_a_trace_recording_keeps_the_trace_schedule(tmp_path, capsys):
    trace = even_trace(tmp_path / "even.jsonl", rows=60)
    first, again = tmp_path / "a.wattload.sqlite", tmp_path / "b.wattload.sqlite"
    with sim_server(speed=50) as url:
        spec = SessionSpec(config=_config(url), probe="resolve", trace=TraceSpec(path=str(trace), speed=4.0),
                           recording=RecordingSpec(directory=str(tmp_path)))  # fmt: skip
        controller = build_session(spec).controller
        try:
            controller.start_recording(str(first))
            controller.start()
            wait_for(lambda: controller.completed >= 20, 30, "the first rows at ×4")
            controller.set_rate(8.0)  # the operator's speed key: re-driving must repeat it
            assert controller.wait(60), "the replay did not end with the trace"
        finally:
            controller.close()
        code = main(["replay", str(first), "--drive", url, "--record", str(again)])
        printed = capsys.readouterr()
        assert code == 0, printed.err
        assert "trace speed -> ×8" in printed.out
        moved = tmp_path / "other.jsonl"
        moved.write_text(trace.read_text().replace('"output_length": 3', '"output_length": 4'))
        assert main(["replay", str(first), "--drive", url, "--trace", str(moved)]) == 2
        assert "is not the trace" in capsys.readouterr().err
    a, b = _scheduled_ms(first), _scheduled_ms(again)
    assert len(a) == len(b) == 60
    # the same rows due at the same offsets from each session's start: ×4, then ×8 from the recorded change on.
    # The change itself lands when the re-drive applies it (a few ms), so only rows before it match exactly.
    assert a[:20] == pytest.approx(b[:20], abs=2.0)
    gaps_a = [y - x for x, y in itertools.pairwise(a[30:])]
    gaps_b = [y - x for x, y in itertools.pairwise(b[30:])]
    assert gaps_a == pytest.approx([12.5] * len(gaps_a), abs=1.0) and gaps_b == pytest.approx(gaps_a, abs=1.0)


def _config(url: str):
    from engine.config import RunConfig

    return RunConfig(base_url=url, workers=1)

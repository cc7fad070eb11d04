"""Report phases that should not look like measurements: a change to the same point does not split, a phase with
no completed request has no figures, each phase shows only its own mode's target, and the auto-ramp's result
(logged by the session as an annotation) is in the report. Plus `export ... - | head` on a closed pipe."""

from __future__ import annotations

import subprocess
import sys

import pytest
from test_report import hand_recording

from engine.records import EventKind
from engine.reports.render import render_report
from engine.reports.report import build_report
from engine.storage.reader import open_recording

EXTRA = (
    (50.0, EventKind.CONCURRENCY, 4.0, "concurrency -> 4"),  # already 4: no new phase
    (60.0, EventKind.CONCURRENCY, 6.0, "concurrency -> 6"),  # a 0.3 s phase: nothing completes in it
    (60.3, EventKind.CONCURRENCY, 4.0, "concurrency -> 4"),
    (70.0, EventKind.ANNOTATION, 4.0, "auto-ramp result: capacity 4 (1,000 tok/s), knee 4. reached --max 4"),
)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    path = hand_recording(tmp_path_factory.mktemp("phases") / "p.wattload.sqlite", extra_events=EXTRA)
    with open_recording(path) as rec:
        return build_report(rec)


def test_a_change_to_the_same_point_does_not_split_and_short_empty_phases_have_no_figures(report):
    assert [(p.label, round(p.start_s, 1)) for p in report.phases] == [
        ("c=2", 0.0), ("c=4", 20.0), ("c=6", 60.0), ("c=4", 60.3)]
    short = report.phases[2]
    assert short.requests == 0 and short.errors == 0
    assert short.output_tokens_per_s is None and short.ttft_p99_ms is None and short.joules_per_output_token is None
    md = render_report(report, "md")
    row = next(ln for ln in md.splitlines() if "| c=6 |" in ln)
    assert row.count("–") >= 8 and "| 0 |" not in row.split("| c=6 |", 1)[1].split("|", 3)[2]


def test_each_phase_shows_only_its_own_modes_target_and_the_ramp_result_is_reported(report):
    assert all(p.rate is None and p.concurrency is not None for p in report.phases)
    csv_text = render_report(report, "csv")
    header, first = csv_text.splitlines()[:2]
    cells = dict(zip(header.split(","), first.split(","), strict=False))
    assert cells["mode"] == "concurrency" and cells["rate"] == "" and cells["concurrency"] == "2"
    assert report.notes == ["1:10.0 auto-ramp result: capacity 4 (1,000 tok/s), knee 4. reached --max 4"]
    assert "- 1:10.0 auto-ramp result: capacity 4" in render_report(report, "md")


def test_export_to_a_closed_pipe_exits_quietly(synthetic_recording):
    path = synthetic_recording()  # thousands of rows: far more than a pipe buffer holds
    export = subprocess.Popen([sys.executable, "-m", "tui.cli", "export", str(path), "--requests", "-"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    export.stdout.readline()  # like `head -1`: read one line, then close the pipe
    export.stdout.close()
    err = export.stderr.read().decode()
    assert export.wait(timeout=60) == 0
    assert err == ""

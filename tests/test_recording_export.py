"""CSV export of a recording (hand-made stamps, so every value can be checked) and the export command."""

from __future__ import annotations

import csv
import io

import pytest
from test_report import PHASE1_ENDS, PHASE2_ENDS, hand_recording

from engine.reports.export import REQUEST_FIELDS, write_csv
from engine.storage.reader import open_recording
from tui.cli import main


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    return hand_recording(tmp_path_factory.mktemp("export") / "hand.wattload.sqlite")


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_requests_export_in_milliseconds_since_the_session_start(recording):
    out = io.StringIO()
    with open_recording(recording) as rec:
        n = write_csv(rec, "requests", out)
    table = rows(out.getvalue())
    assert n == len(table) == len(PHASE1_ENDS) + len(PHASE2_ENDS) + 1
    assert list(table[0]) == list(REQUEST_FIELDS)
    first = table[0]  # ends at 2 s: TTFT 100 ms, 11 tokens at 100 ms each after the first
    assert (first["end_ms"], first["scheduled_ms"], first["first_token_ms"]) == ("2000.000", "900.000", "1000.000")
    assert (first["ttft_ms"], first["tpot_ms"], first["e2e_ms"]) == ("100.000", "100.000", "1100.000")
    assert (first["input_tokens"], first["output_tokens"], first["status"], first["error"]) == ("50", "11", "200", "")
    failed = next(r for r in table if r["error"])
    assert (failed["error"], failed["error_detail"], failed["input_tokens"], failed["first_token_ms"]) == (
        "http_5xx", "500 Internal Server Error", "", "")


def test_export_command_writes_requests_telemetry_and_events(recording, tmp_path, capsys):
    req, tel = tmp_path / "req.csv", tmp_path / "tel.csv"
    assert main(["export", str(recording), "--requests", str(req), "--telemetry", str(tel), "--events", "-"]) == 0
    captured = capsys.readouterr()
    events = rows(captured.out)
    assert [(e["t_ms"], e["kind"], e["value"]) for e in events] == [
        ("0.000", "start", ""), ("20000.000", "concurrency", "4.0"), ("80000.000", "stop", "")]
    assert f"18 requests rows -> {req}" in captured.err
    telemetry = rows(tel.read_text())
    assert len(telemetry) == 81 and telemetry[-1]["energy_mj"] == str(300_000 * 20 + 500_000 * 60)
    assert telemetry[0]["power_limit_w"] == ""  # n/a stays empty, never 0
    assert main(["export", str(recording)]) == 2
    assert "say what to export" in capsys.readouterr().err

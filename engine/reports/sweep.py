"""What ``wattload sweep`` writes: one JSON report (a sweep or a matrix) and its CSV table.

The report carries what makes it reproducible: the profile as loaded with its sha256, the seed, the sweep and run
settings (never the API key), the pricing profile's name, and the system metadata.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from engine import __version__
from engine.sweep.matrix import MatrixCell
from engine.sweep.powercap_sweep import CapSweepResult
from engine.sweep.rules import StepResult, SweepSettings
from engine.sweep.session import CeilingResult
from engine.workload.profile import ProfileInfo

REPORT_FORMAT = "wattload-sweep"
REPORT_VERSION = 1


class SweepReport(BaseModel):
    """A ceiling search (``kind="sweep"``) or a token matrix (``kind="matrix"``)."""

    model_config = ConfigDict(extra="forbid")

    format: str = REPORT_FORMAT
    version: int = REPORT_VERSION
    wattload_version: str = __version__
    kind: Literal["sweep", "matrix", "powercap"]
    created: str
    endpoint: str
    model: str
    profile: ProfileInfo
    seed: int
    settings: SweepSettings
    run_settings: dict[str, Any]
    pricing: str | None = None
    sysinfo: dict[str, Any] | None = None
    interrupted: bool = False
    result: CeilingResult | None = None
    cells: list[MatrixCell] | None = None
    powercap: CapSweepResult | None = None
    """kind="powercap": the cap steps, the per-cap intervals and the sweet spot (``result``: the ceiling found
    first with --at capacity)."""


def write_json(report: SweepReport, path: str | Path) -> None:
    """Indented JSON, written atomically (a half-written file never replaces a good one)."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    tmp.replace(target)


STEP_COLUMNS = (
    "step",
    "concurrency",
    "speed",
    "held_s",
    "steady",
    "requests",
    "errors",
    "error_rate",
    "requests_per_s",
    "output_tokens_per_s",
    "input_tokens_per_s",
    "ttft_p50_ms",
    "ttft_p99_ms",
    "ttft_p99_censored",
    "waiting_first_token",
    "ttfo_p50_ms",
    "ttfo_p99_ms",
    "tpot_p50_ms",
    "tpot_p99_ms",
    "itl_p99_ms",
    "e2e_p99_ms",
    "mean_input_tokens",
    "mean_output_tokens",
    "watts",
    "joules_per_output_token",
    "dollars_per_million_output",
    "dollars_per_million_total",
    "verdict",
    "reason",
    "hold_note",
)

CELL_COLUMNS = (
    "input_tokens",
    "output_tokens",
    "status",
    "capacity",
    "knee",
    "output_tokens_per_s",
    "ttft_p99_ms",
    "tpot_p99_ms",
    "joules_per_output_token",
    "dollars_per_million_output",
    "dollars_per_million_total",
    "goodput_tokens_per_s",
    "actual_input_tokens",
    "actual_output_tokens",
    "message",
)


def step_row(step: StepResult) -> dict[str, Any]:
    row = step.model_dump(mode="json")
    row["step"] = step.index + 1
    return {k: row.get(k) for k in STEP_COLUMNS}


def cell_row(cell: MatrixCell) -> dict[str, Any]:
    r = cell.result
    row: dict[str, Any] = {"input_tokens": cell.input_tokens, "output_tokens": cell.output_tokens, "status": r.status}
    row.update(cell.figures())
    row["actual_input_tokens"] = r.lengths.actual_input
    row["actual_output_tokens"] = r.lengths.actual_output
    row["message"] = r.message or (r.outcome.stop_reason if r.outcome else "")
    return {k: row.get(k) for k in CELL_COLUMNS}


def write_csv(report: SweepReport, path: str | Path) -> None:
    """A sweep: one row per step; a matrix: one row per cell."""
    columns: tuple[str, ...]
    if report.kind == "matrix":
        columns, rows = CELL_COLUMNS, [cell_row(c) for c in report.cells or []]
    else:
        steps = report.result.outcome.steps if report.result and report.result.outcome else []
        columns, rows = STEP_COLUMNS, [step_row(s) for s in steps]
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    tmp.replace(target)

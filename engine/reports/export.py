"""Export a recording's facts as CSV: one row per request (or telemetry sample, or event), times in milliseconds
since the session start, for spreadsheets and notebooks that should not need to know the SQLite schema.

Rows are streamed from the file in pages and written as they come: memory stays flat for any recording size.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from engine.records import RequestRecord, TelemetrySample
from engine.storage.reader import Recording

REQUEST_FIELDS = (
    "worker", "request_id", "scheduled_ms", "start_ms", "headers_ms", "first_token_ms", "end_ms", "ttft_ms",
    "tpot_ms", "e2e_ms", "input_tokens", "output_tokens", "output_estimated", "chunks", "status", "error",
    "error_detail",
)
TELEMETRY_FIELDS = ("t_ms", "gpu", *(f for f in TelemetrySample.__slots__ if f not in ("t_ns", "gpu_index")))
EVENT_FIELDS = ("t_ms", "kind", "value", "gpu", "readback", "message")


def _ms(t_ns: int | float | None) -> str:
    return "" if t_ns is None else f"{t_ns / 1e6:.3f}"


def request_row(r: RequestRecord) -> list[Any]:
    tpot = r.tpot_ns
    return [
        r.worker, r.request_id, _ms(r.t_scheduled_ns), _ms(r.t_start_ns), _ms(r.t_headers_ns),
        _ms(r.t_first_token_ns), _ms(r.t_end_ns), _ms(r.ttft_ns), _ms(tpot), _ms(r.e2e_ns),
        "" if r.input_tokens is None else r.input_tokens, r.output_tokens, int(r.output_estimated), r.chunks,
        "" if r.status is None else r.status, "" if r.error is None else r.error.value, r.error_detail,
    ]


def _request_rows(rec: Recording) -> Iterator[list[Any]]:
    for r in rec.requests():
        yield request_row(r)


def _telemetry_rows(rec: Recording) -> Iterator[list[Any]]:
    for s in rec.telemetry():
        values = [getattr(s, f) for f in TELEMETRY_FIELDS[2:]]
        yield [_ms(s.t_ns), s.gpu_index, *("" if v is None else v for v in values)]


def _event_rows(rec: Recording) -> Iterator[list[Any]]:
    for _, e in rec.events():
        values = (e.value, e.gpu_index, e.readback)
        yield [_ms(e.t_ns), e.kind.value, *("" if v is None else v for v in values), e.message]


TABLES = {
    "requests": (REQUEST_FIELDS, _request_rows),
    "telemetry": (TELEMETRY_FIELDS, _telemetry_rows),
    "events": (EVENT_FIELDS, _event_rows),
}


def write_csv(rec: Recording, table: str, out: IO[str]) -> int:
    """Write one table as CSV to ``out``; returns the number of data rows."""
    fields, rows = TABLES[table]
    w = csv.writer(out, lineterminator="\n")
    w.writerow(fields)
    n = 0
    for row in rows(rec):
        w.writerow(row)
        n += 1
    return n


def export_csv(rec: Recording, table: str, path: str | Path) -> int:
    """Write one table to a CSV file (``-`` is not handled here: the CLI passes stdout to ``write_csv``)."""
    with Path(path).open("w", newline="", encoding="utf-8") as f:
        return write_csv(rec, table, f)

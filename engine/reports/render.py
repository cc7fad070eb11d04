"""Reports as text: markdown for people, CSV for spreadsheets, JSON for programs (the pydantic models as is)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from typing import Any

from engine.reports.numbers import fmt_num
from engine.reports.report import Comparison, PhaseFigures, SessionReport, SpanFigures, comparable_metrics
from engine.reports.server import server_table_markdown

FORMATS = ("md", "csv", "json")
DASH = "–"

_COLUMNS: tuple[tuple[str, str, Callable[[Any], str]], ...]


def _num(v: float | None) -> str:
    """The one report number format (engine.reports.numbers); a dash when unknown."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return DASH
    return fmt_num(v)


def _pct(v: float | None) -> str:
    return DASH if v is None else f"{100 * v:.2f}%"


def _s(v: float) -> str:
    return f"{v:.1f}"


_COLUMNS = (
    ("requests", "req", lambda v: str(v)),
    ("error_rate", "err", _pct),
    ("output_tokens_per_s", "out tok/s", _num),
    ("input_tokens_per_s", "in tok/s", _num),
    ("ttft_p50_ms", "TTFT p50 ms", _num),
    ("ttft_p99_ms", "TTFT p99 ms", _num),
    ("tpot_p50_ms", "TPOT p50 ms", _num),
    ("tpot_p99_ms", "TPOT p99 ms", _num),
    ("mean_watts", "W", _num),
    ("joules_per_output_token", "J/out tok", _num),
    ("dollars_per_million_output", "$/M out tok", _num),
)


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _figures(f: SpanFigures) -> list[str]:
    return [fmt(getattr(f, name)) for name, _, fmt in _COLUMNS]


def report_markdown(r: SessionReport) -> str:
    lines = [
        f"# wattload report: {r.file}",
        "",
        f"- recorded {r.wall_start or DASH} on {r.host or DASH}, {r.duration_s:.1f} s, "
        f"wattload {r.methodology.wattload_version or '?'}",
        f"- endpoint {r.endpoint or DASH}, model {r.model or DASH}, workload {r.workload or DASH}",
        f"- GPUs: {', '.join(r.gpus) if r.gpus else 'no GPU telemetry'}; pricing: {r.methodology.pricing or 'none'}",
        f"- steady state: {r.warmup_rule} (window {r.window_s:g} s)",
    ]
    lines += [f"- warning: {w}" for w in r.warnings]
    lines += ["", _row(["#", "phase", "start s", "dur s", "steady s", *[h for _, h, _ in _COLUMNS]]),
              _row(["---"] * (5 + len(_COLUMNS)))]
    for p in r.phases:
        lines.append(_row([str(p.index), p.label, _s(p.start_s), _s(p.duration_s), _s(p.span_s), *_figures(p)]))
    lines.append(_row(["", "**session**", "0.0", _s(r.totals.span_s), _s(r.totals.span_s), *_figures(r.totals)]))
    rows = [(str(p.index), p.label, p.model_dump()) for p in r.phases] + [("", "**session**", r.totals.model_dump())]
    lines += server_table_markdown(rows, _num)
    lines += turns_markdown(r)
    if r.notes:
        lines += ["", *[f"- {n}" for n in r.notes]]
    return "\n".join(lines) + "\n"


def turns_markdown(r: SessionReport) -> list[str]:
    """Per turn number of multi-turn sessions ([] for single requests), the server's prefix-cache rate under it."""
    if not r.turns:
        return []
    lines = ["", "Per turn (whole session; TTFT of later turns shows what the prefix cache saves):", "",
             _row(["turn", "req", "err", "TTFT p50 ms", "TTFT p99 ms", "E2E p50 ms", "in tok", "out tok"]),
             _row(["---"] * 8)]  # fmt: skip
    for t in r.turns:
        lines.append(_row([str(t.turn), str(t.requests), str(t.errors), _num(t.ttft_p50_ms), _num(t.ttft_p99_ms),
                           _num(t.e2e_p50_ms), _num(t.mean_input_tokens), _num(t.mean_output_tokens)]))  # fmt: skip
    if r.prefix_cache is not None:
        lines += ["", f"- server {r.prefix_cache.line()}"]
    return lines


_CSV_FIELDS = ("index", "label", "start_s", "end_s", "duration_s", "steady_from_s", "mode", "concurrency", "rate",
               "power_cap_w", "paused", *SpanFigures.model_fields)


def report_csv(r: SessionReport) -> str:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=_CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for p in r.phases:
        w.writerow(_csv_values(p.model_dump()))
    w.writerow(_csv_values({"index": "", "label": "session", "start_s": 0.0, "end_s": r.totals.span_s,
                            "duration_s": r.totals.span_s, **r.totals.model_dump()}))
    return out.getvalue()


def _csv_values(d: dict[str, Any]) -> dict[str, Any]:
    return {k: ("" if d.get(k) is None else d.get(k)) for k in _CSV_FIELDS}


def _delta(a: float | None, b: float | None) -> str:
    if a is None or b is None or a == 0:
        return DASH
    return f"{100 * (b - a) / abs(a):+.1f}%"


def comparison_markdown(c: Comparison) -> str:
    lines = ["# wattload comparison", "", f"- A: {c.a.file} ({c.a.model or DASH}, {c.a.duration_s:.1f} s)",
             f"- B: {c.b.file} ({c.b.model or DASH}, {c.b.duration_s:.1f} s)",
             f"- steady state: {c.a.warmup_rule}"]
    lines += [f"- **methodology differs**: {w}" for w in c.methodology_warnings]
    lines += [f"- warning (A): {w}" for w in c.a.warnings] + [f"- warning (B): {w}" for w in c.b.warnings]
    sides: list[tuple[str, PhaseFigures | SpanFigures | None, PhaseFigures | SpanFigures | None]] = [
        (f"phase {p.index}: " + " / ".join(x.label for x in (p.a, p.b) if x is not None), p.a, p.b) for p in c.pairs
    ]
    sides.append(("session", c.a.totals, c.b.totals))
    for title, a, b in sides:
        lines += ["", f"## {title}", "", _row(["", "A", "B", "B vs A"]), _row(["---"] * 4)]
        for name, label, _ in comparable_metrics():
            va = None if a is None else getattr(a, name)
            vb = None if b is None else getattr(b, name)
            shown = _pct if name == "error_rate" else _num
            lines.append(_row([label, shown(va), shown(vb), _delta(va, vb)]))
    return "\n".join(lines) + "\n"


def comparison_csv(c: Comparison) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["phase", "label_a", "label_b", "metric", "a", "b", "delta_pct"])
    rows: list[tuple[str, Any, Any]] = [(str(p.index), p.a, p.b) for p in c.pairs]
    rows.append(("session", c.a.totals, c.b.totals))
    for phase, a, b in rows:
        for name, _, _ in comparable_metrics():
            va = None if a is None else getattr(a, name)
            vb = None if b is None else getattr(b, name)
            delta = "" if va in (None, 0) or vb is None else 100 * (vb - va) / abs(va)
            w.writerow([phase, getattr(a, "label", "session" if a is not None else ""),
                        getattr(b, "label", "session" if b is not None else ""), name,
                        "" if va is None else va, "" if vb is None else vb, delta])
    return out.getvalue()


def render_report(r: SessionReport, fmt: str) -> str:
    if fmt == "json":
        return r.model_dump_json(indent=2) + "\n"
    return report_csv(r) if fmt == "csv" else report_markdown(r)


def render_comparison(c: Comparison, fmt: str) -> str:
    if fmt == "json":
        return c.model_dump_json(indent=2) + "\n"
    return comparison_csv(c) if fmt == "csv" else comparison_markdown(c)

"""Terminal output of ``wattload sweep``: the step table, the matrix table and its heatmaps (rich, never textual).

Pure rendering from the report models: nothing here measures or decides, so the same report renders the same way
live, from ``--json``, or in a test.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Group, JustifyMethod, RenderableType
from rich.table import Table
from rich.text import Text

from engine.reports.format import DASH, dollars, ms, percent, sig
from engine.sweep.matrix import MatrixCell
from engine.sweep.rules import Verdict
from engine.sweep.session import CeilingResult

_VERDICT_STYLE = {
    Verdict.IMPROVED: "green",
    Verdict.PLATEAU: "yellow",
    Verdict.DROPPED: "red",
    Verdict.ERRORS: "red",
    Verdict.SLO: "magenta",
    Verdict.QUEUED: "red",
}


def _joules(v: float | None) -> str:
    return DASH if v is None else f"{sig(v)} J"


def _tok(v: float | None) -> str:
    return DASH if v is None else f"{v:.1f}"


def steps_table(result: CeilingResult, title: str = "") -> Table:
    """One row per concurrency step, the capacity step marked."""
    outcome = result.outcome
    by_speed = outcome is not None and any(st.speed is not None for st in outcome.steps)
    table = Table(title=title or f"ceiling search: {result.workload}", title_justify="left", header_style="bold")
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        *((("speed", "right"), ("in flight", "right")) if by_speed else (("conc.", "right"),)),
        ("out tok/s", "right"),
        ("req/s", "right"),
        ("TTFT p50", "right"),
        ("TTFT p99", "right"),
        ("TPOT p99", "right"),
        ("errors", "right"),
        ("in/out tok", "right"),
        ("J/tok", "right"),
        ("$/M out", "right"),
        ("held", "right"),
        ("verdict", "left"),
    )
    for name, justify in columns:
        table.add_column(name, justify=justify)
    if outcome is None:
        return table
    for st in outcome.steps:
        mark = " *" if outcome.capacity_step is not None and st.index == outcome.capacity_step.index else ""
        load = (f"×{st.speed:g}{mark}", str(st.concurrency)) if by_speed else (f"{st.concurrency}{mark}",)
        table.add_row(
            *load,
            sig(st.output_tokens_per_s),
            sig(st.requests_per_s),
            ms(st.ttft_p50_ms),
            ("≥ " if st.ttft_p99_censored else "") + ms(st.ttft_p99_ms),
            ms(st.tpot_p99_ms),
            percent(st.error_rate),
            f"{_tok(st.mean_input_tokens)}/{_tok(st.mean_output_tokens)}",
            _joules(st.joules_per_output_token),
            dollars(st.dollars_per_million_output),
            f"{st.held_s:.0f}s{'' if st.steady else '~'}",
            Text(str(st.verdict or ""), style=_VERDICT_STYLE.get(st.verdict, "")) if st.verdict else "",
        )
    return table


def summary_lines(result: CeilingResult) -> list[str]:
    """Capacity, knee, goodput, why it stopped, and the length check, one line each."""
    lines = [result.capacity_line]
    o = result.outcome
    if o is not None:
        if o.goodput_tokens_per_s is not None:
            lines.append(
                f"goodput: {o.goodput_tokens_per_s:,.0f} output tok/s within the SLOs "
                + (f"(trace speed ×{o.goodput_speed:g})" if o.goodput_speed is not None
                   else f"(concurrency {o.goodput_concurrency})")
            )
        lines.append(f"stopped: {o.stop_reason}")
    if result.lengths.requests:
        lines.append(f"lengths: {result.lengths.line()}")
    if result.calibration is not None:
        lines.append(f"calibration: {result.calibration.message}")
    if any(not s.steady for s in (o.steps if o else [])):
        lines.append("~ = the step's window was not steady by --step-time; its figures are from its last window")
    return lines


def sweep_view(result: CeilingResult) -> RenderableType:
    return Group(steps_table(result), *(Text(line) for line in summary_lines(result)))


# -- matrix --------------------------------------------------------------------------------------------------


def matrix_table(cells: list[MatrixCell]) -> Table:
    """One row per cell: capacity and the figures at capacity."""
    table = Table(title="token matrix: ceiling per cell", title_justify="left", header_style="bold")
    for name in ("input", "output", "capacity", "out tok/s", "TTFT p99", "TPOT p99", "J/out tok", "$/M out", "note"):
        table.add_column(name, justify="left" if name == "note" else "right")
    for cell in cells:
        f = cell.figures()
        r = cell.result
        note: str = "" if r.status == "ok" else r.status
        if r.status == "ok" and r.outcome is not None and r.outcome.capacity_step is not None:
            note = _short_reason(r.outcome.stop_reason)
        table.add_row(
            str(cell.input_tokens),
            str(cell.output_tokens),
            DASH if f["capacity"] is None else str(f["capacity"]),
            sig(f["output_tokens_per_s"]),
            ms(f["ttft_p99_ms"]),
            ms(f["tpot_p99_ms"]),
            _joules(f["joules_per_output_token"]),
            dollars(f["dollars_per_million_output"]),
            Text(note, style="yellow" if r.status != "ok" else "dim"),
        )
    return table


def _short_reason(reason: str) -> str:
    for key, short in (
        ("saturated", "plateau"),
        ("fell", "dropped"),
        ("error rate", "errors"),
        ("SLO", "SLO"),
        ("--max", "reached max"),
        ("interrupted", "interrupted"),
    ):
        if key in reason:
            return short
    return reason[:24]


Metric = Callable[[MatrixCell], float | None]

HEATMAPS: dict[str, tuple[str, Metric, Callable[[float | None], str], bool]] = {
    # name: (title, value, format, higher is better)
    "tokens": ("output tok/s at capacity", lambda c: c.figures()["output_tokens_per_s"], sig, True),
    "capacity": ("capacity (concurrent requests)", lambda c: c.figures()["capacity"], sig, True),
    "joules": ("J per output token", lambda c: c.figures()["joules_per_output_token"], _joules, False),
    "dollars": ("$ per million output tokens", lambda c: c.figures()["dollars_per_million_output"], dollars, False),
    "ttft": ("TTFT p99 at capacity", lambda c: c.figures()["ttft_p99_ms"], ms, False),
}


def heatmap(cells: list[MatrixCell], metric: str = "tokens") -> Table | None:
    """Rows = input tokens, columns = output tokens; green is good, red is bad. None when no cell has the value."""
    title, value, fmt, higher_better = HEATMAPS[metric]
    inputs = sorted({c.input_tokens for c in cells})
    outputs = sorted({c.output_tokens for c in cells})
    by_key = {(c.input_tokens, c.output_tokens): c for c in cells}
    values = [v for c in cells if (v := value(c)) is not None]
    if not values:
        return None
    lo, hi = min(values), max(values)
    table = Table(title=f"heatmap: {title}", title_justify="left", show_lines=False, header_style="bold")
    table.add_column("in \\ out", justify="right", style="bold")
    for o in outputs:
        table.add_column(str(o), justify="center", min_width=9)
    for i in inputs:
        row: list[RenderableType] = [str(i)]
        for o in outputs:
            cell = by_key.get((i, o))
            if cell is None:
                row.append(Text("·", style="dim"))
                continue
            v = value(cell)
            if v is None:
                label = "ctx" if cell.status == "exceeds context" else DASH
                row.append(Text(label, style="dim"))
                continue
            share = 0.5 if hi == lo else (v - lo) / (hi - lo)
            row.append(Text(f" {fmt(v)} ", style=f"black on {_colour(share if higher_better else 1 - share)}"))
        table.add_row(*row)
    return table


def _colour(goodness: float) -> str:
    """Red (0) through yellow to green (1), as an RGB colour rich understands."""
    g = max(0.0, min(1.0, goodness))
    if g < 0.5:
        r, gr = 230, round(80 + 300 * g)
    else:
        r, gr = round(230 - 340 * (g - 0.5)), 200
    return f"rgb({r},{gr},90)"


def matrix_view(cells: list[MatrixCell], metrics: tuple[str, ...] = ("tokens", "joules")) -> RenderableType:
    parts: list[RenderableType] = [matrix_table(cells)]
    for m in metrics:
        h = heatmap(cells, m)
        if h is not None:
            parts.append(h)
    if any(c.status == "exceeds context" for c in cells):
        parts.append(Text("ctx = the cell exceeds the server's context window (HTTP 400); it was skipped", style="dim"))
    return Group(*parts)

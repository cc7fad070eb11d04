"""The report's charts, drawn with matplotlib into SVG (inline in the HTML) and PNG (``--png``) from one figure.

Why matplotlib: it is well kept, draws offline with no JavaScript and no fonts to fetch (SVG text is written as
paths, so the file looks the same everywhere), and the same Figure saves to SVG and PNG. ``Figure`` objects are
made directly (never pyplot), so nothing global is touched and no display is needed.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from engine.sweep.powercap_sweep import CapSweepResult

INK = "#1f2933"
ACCENT = "#d9480f"
BLUE = "#1971c2"
GREEN = "#2f9e44"
GREY = "#868e96"
_GIDS = itertools.count()


def _gid() -> str:
    """An SVG id for an artist that draws data ("data-N"): the browser test checks every chart has some."""
    return f"data-{next(_GIDS)}"


@dataclass
class Chart:
    """One chart: a stable id (file name for --png), a title, and its figure."""

    id: str
    title: str
    figure: Figure
    points: int = 0  # data points drawn (a chart with none is not worth showing)

    def svg(self) -> str:
        buf = io.StringIO()
        self.figure.savefig(buf, format="svg", bbox_inches="tight")
        text = buf.getvalue()
        text = text[text.index("<svg") :]  # drop the XML prolog and DOCTYPE: the SVG goes inline
        start, end = text.find("<metadata>"), text.find("</metadata>")
        return text[:start] + text[end + len("</metadata>") :] if 0 <= start < end else text

    def png(self, path: str) -> None:
        self.figure.savefig(path, format="png", dpi=120, bbox_inches="tight")


@dataclass
class Timeline:
    """A session over time: seconds since start with the figures the dashboard charts."""

    t_s: list[float] = field(default_factory=list)
    output_tps: list[float | None] = field(default_factory=list)
    ttft_p50: list[float | None] = field(default_factory=list)
    ttft_p99: list[float | None] = field(default_factory=list)
    watts: list[float | None] = field(default_factory=list)
    concurrency: list[float | None] = field(default_factory=list)
    markers: list[tuple[float, str]] = field(default_factory=list)  # (t_s, "load" | "power cap" | ...)


def _figure(rows: int = 1, height: float = 3.2) -> Figure:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, height * rows), layout="constrained")
    return fig


def _style(ax: Any) -> None:
    ax.grid(True, color="#e9ecef", linewidth=0.8)
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(colors=INK, labelsize=8)


def _xy(xs: Sequence[float], ys: Sequence[float | None]) -> tuple[list[float], list[float]]:
    pairs = [(x, y) for x, y in zip(xs, ys, strict=False) if y is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def timeline_chart(tl: Timeline) -> Chart:
    fig = _figure(rows=4, height=1.7)
    axes = fig.subplots(4, 1, sharex=True)
    series = (
        ("output tok/s", [tl.output_tps], [BLUE]),
        ("TTFT ms (p50, p99)", [tl.ttft_p50, tl.ttft_p99], [GREEN, ACCENT]),
        ("GPU W", [tl.watts], [ACCENT]),
        ("in flight", [tl.concurrency], [GREY]),
    )
    n = 0
    for ax, (label, ys_list, colors) in zip(axes, series, strict=True):
        for ys, color in zip(ys_list, colors, strict=True):
            xs, vs = _xy(tl.t_s, ys)
            n += len(vs)
            ax.plot(xs, vs, color=color, linewidth=1.4, marker="." if len(vs) < 60 else None, gid=_gid())
        ax.set_ylabel(label, fontsize=8, color=INK)
        _style(ax)
        for t, kind in tl.markers:
            ax.axvline(t, color=ACCENT if kind == "power cap" else GREY, linewidth=0.7, linestyle=":")
    axes[-1].set_xlabel("seconds since start (dotted: load and power-cap changes)", fontsize=8)
    return Chart("timeline", "Session timeline", fig, n)


def sweep_chart(outcome: dict[str, Any]) -> Chart:
    """Throughput against TTFT p99 over the concurrency (or trace-speed) steps, capacity, knee and goodput marked."""
    steps = [s for s in outcome.get("steps") or [] if s.get("requests")]
    by_speed = any(s.get("speed") is not None for s in steps)
    key, prefix = ("speed", "×") if by_speed else ("concurrency", "c=")
    fig = _figure()
    ax = fig.subplots()
    xs = [s["ttft_p99_ms"] or 0.0 for s in steps]
    ys = [s["output_tokens_per_s"] for s in steps]
    ax.plot(xs, ys, color=BLUE, marker="o", linewidth=1.5, gid=_gid())
    for s, x, y in zip(steps, xs, ys, strict=True):
        ax.annotate(f"{prefix}{s[key]:g}", (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    suffix = "_speed" if by_speed else ""
    marks = (("capacity", outcome.get("capacity" + suffix), ACCENT, "s"),
             ("knee", outcome.get("knee" + suffix), GREEN, "D"))  # fmt: skip
    for label, load, color, shape in marks:
        for s, x, y in zip(steps, xs, ys, strict=True):
            if load is not None and s[key] == load:
                ax.scatter([x], [y], s=90, color=color, marker=shape, zorder=3, label=f"{label} ({prefix}{load:g})")
    if outcome.get("goodput_tokens_per_s") is not None:
        ax.axhline(outcome["goodput_tokens_per_s"], color=GREEN, linestyle="--", linewidth=1, label="goodput at SLO")
    ax.set_xlabel("TTFT p99 (ms)", fontsize=8)
    ax.set_ylabel("output tok/s", fontsize=8)
    ax.legend(fontsize=7, frameon=False)
    _style(ax)
    return Chart("throughput-latency", "Throughput against latency (the ceiling sweep)", fig, len(steps))


def powercap_chart(result: CapSweepResult) -> Chart:
    """Per cap: relative throughput and J/token (with 95% intervals), the sweet spot marked."""
    rows = [s for s in result.summaries if "output_tokens_per_s" in s.figures]
    fig = _figure(height=3.6)
    ax = fig.subplots()
    caps = [s.cap_w for s in rows]
    rel = [(s.mean("relative_throughput") or 0.0) * 100 for s in rows]
    ax.plot(caps, rel, color=BLUE, marker="o", linewidth=1.5, label="throughput (% of highest cap)", gid=_gid())
    ax.set_xlabel("power cap (W)", fontsize=8)
    ax.set_ylabel("throughput %", fontsize=8, color=BLUE)
    ax.invert_xaxis()
    _style(ax)
    ax2 = ax.twinx()
    j = [s.figures.get("joules_per_output_token") for s in rows]
    jm = [iv.mean if iv else None for iv in j]
    jx, jy = _xy(caps, jm)
    err = [(iv.half_width or 0.0) if iv else 0.0 for iv in j if iv]
    ax2.errorbar(jx, jy, yerr=err, color=ACCENT, marker="s", linewidth=1.5, capsize=3, label="J per output token",
                 gid=_gid())
    ax2.set_ylabel("J / output token", fontsize=8, color=ACCENT)
    ax2.tick_params(labelsize=8)
    spot = result.sweet_spot.cap_w
    if spot is not None:
        ax.axvline(spot, color=GREEN, linewidth=2, alpha=0.6)
        ax.annotate(f"sweet spot {spot:g} W", (spot, min(rel) if rel else 0), textcoords="offset points",
                    xytext=(6, 6), fontsize=8, color=GREEN)  # fmt: skip
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, frameon=False, loc="lower left")
    return Chart("power-cap", "Power-cap curve", fig, len(caps) + len(jy))


def pareto_chart(result: CapSweepResult) -> Chart:
    pool = result.grid or result.summaries
    fig = _figure()
    ax = fig.subplots()
    xs, ys = _xy([s.mean("watts") or 0.0 for s in pool], [s.mean("output_tokens_per_s") for s in pool])
    ax.scatter(xs, ys, color=GREY, s=20, label="cap x concurrency", gid=_gid())
    front = result.pareto_throughput_watts
    fx, fy = _xy([s.mean("watts") or 0.0 for s in front], [s.mean("output_tokens_per_s") for s in front])
    ax.plot(fx, fy, color=ACCENT, marker="o", linewidth=1.5, label="Pareto frontier", gid=_gid())
    ax.set_xlabel("mean GPU W", fontsize=8)
    ax.set_ylabel("output tok/s", fontsize=8)
    ax.legend(fontsize=7, frameon=False)
    _style(ax)
    return Chart("pareto", "Throughput against watts (Pareto frontier)", fig, len(xs))


def heatmap_chart(cells: Sequence[dict[str, Any]], metric: str, title: str) -> Chart:
    """One matrix heatmap (rows: input tokens, columns: output tokens)."""
    inputs = sorted({c["input_tokens"] for c in cells})
    outputs = sorted({c["output_tokens"] for c in cells})
    grid = [[float("nan")] * len(outputs) for _ in inputs]
    n = 0
    for c in cells:
        v = (c.get("figures") or {}).get(metric)
        if v is not None:
            grid[inputs.index(c["input_tokens"])][outputs.index(c["output_tokens"])] = v
            n += 1
    fig = _figure(height=3.4)
    ax = fig.subplots()
    im = ax.imshow(grid, cmap="viridis", aspect="auto", gid=_gid())
    ax.set_xticks(range(len(outputs)), [str(o) for o in outputs], fontsize=8)
    ax.set_yticks(range(len(inputs)), [str(i) for i in inputs], fontsize=8)
    ax.set_xlabel("output tokens", fontsize=8)
    ax.set_ylabel("input tokens", fontsize=8)
    from engine.reports.numbers import fmt_num

    for i, row in enumerate(grid):
        for k, v in enumerate(row):
            if v == v:
                ax.text(k, i, fmt_num(v), ha="center", va="center", fontsize=7, color="white")
    fig.colorbar(im, ax=ax, shrink=0.8)
    return Chart(f"heatmap-{metric}", title, fig, n)

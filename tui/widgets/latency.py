"""Latency: TTFT, ITL, TPOT and E2E percentiles for the sliding window, with since-start ("run") p50/p99 beside
them (and, for reasoning models, the window's time to first output token in the subtitle). Always milliseconds, as
the title says (fmt.ms writes 100 s and more as "123k").

A fixed-layout text table in one Static, redrawn only when a figure's text changed. (A DataTable updated with
update_cell cost ~10 ms per frame here: it re-renders every cell through Rich after any update; this costs
well under 1 ms, which matters at 4 Hz on a machine that is also generating the load.)
"""

from __future__ import annotations

from textual import events
from textual.content import Content

from engine.reports import format as fmt
from engine.snapshot import Percentiles, Snapshot
from tui.widgets.base import SnapshotPanel

METRICS: tuple[tuple[str, str], ...] = (("TTFT", "ttft"), ("ITL", "itl"), ("TPOT", "tpot"), ("E2E", "e2e"))
WINDOW_COLUMNS: tuple[str, ...] = ("p50", "p90", "p95", "p99")
TOTAL_COLUMNS: tuple[str, ...] = ("p50", "p99")
LABEL_W, CELL_W, TOTAL_W = 5, 6, 8
# What a narrow panel keeps, most wanted first (shown in the usual order): the window's median and tail, then
# the since-start tail, then the rest.
PRIORITY: tuple[tuple[str, str], ...] = (("w", "p50"), ("w", "p99"), ("t", "p99"), ("w", "p90"), ("t", "p50"),
                                         ("w", "p95"))  # fmt: skip


def fitting_columns(width: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The window and since-start columns that fit in ``width`` cells (all of them from 45)."""
    used, keep = LABEL_W, set()
    for part, name in PRIORITY:
        cost = CELL_W if part == "w" else TOTAL_W
        if used + cost > width:
            break
        used += cost
        keep.add((part, name))
    return (tuple(n for n in WINDOW_COLUMNS if ("w", n) in keep), tuple(n for n in TOTAL_COLUMNS if ("t", n) in keep))


class LatencyPanel(SnapshotPanel):
    """Percentiles in milliseconds; '–' until a request completes."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, title="Latency ms")
        self._subtitle = ""
        self._snapshot: Snapshot | None = None

    def on_resize(self, _event: events.Resize) -> None:
        if self._snapshot is not None:  # the columns that fit depend on the width
            self.show(self._snapshot)

    def build(self, snapshot: Snapshot) -> Content:
        self._snapshot = snapshot
        subtitle = f"{fmt.sig(snapshot.window_s)} s window · n={snapshot.window.ttft.count:,} · run = since start"
        if snapshot.reasoning:  # a reasoning model: TTFT counts its thinking, TTFO is when the answer began
            ttfo = snapshot.window.ttfo
            subtitle = f"TTFO p50 {fmt.ms(ttfo.p50)} p99 {fmt.ms(ttfo.p99)} · " + subtitle
        if subtitle != self._subtitle:
            self.border_subtitle = self._subtitle = subtitle
        width = self.content_size.width if self.is_mounted and self.content_size.width else 80
        window_columns, total_columns = fitting_columns(width)
        header = Content.assemble(
            ("".ljust(LABEL_W), ""),
            ("".join(name.rjust(CELL_W) for name in window_columns), "bold"),
            ("".join(f"run {name}".rjust(TOTAL_W) for name in total_columns), "bold italic $text-muted"),
        )
        lines = [header]
        for label, key in METRICS:
            window: Percentiles = getattr(snapshot.window, key)
            total: Percentiles = getattr(snapshot.total, key)
            lines.append(
                Content.assemble(
                    (label.ljust(LABEL_W), "bold"),
                    "".join(fmt.ms(getattr(window, name)).rjust(CELL_W) for name in window_columns),
                    ("".join(fmt.ms(getattr(total, name)).rjust(TOTAL_W) for name in total_columns), "italic"),
                )
            )
        if snapshot.waiting_first_token:
            age = snapshot.oldest_wait_s
            oldest = "" if age is None else f", oldest {age:.1f}s" if age < 10 else f", oldest {fmt.short_span(age)}"
            lines.append(Content.assemble(("no 1st tok ", "$text-muted"), (fmt.integer(snapshot.waiting_first_token),
                                          "bold"), (oldest, "$text-muted")))  # fmt: skip
        return Content("\n").join(lines)

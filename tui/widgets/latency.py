"""Latency: TTFT, ITL, TPOT and E2E percentiles for the sliding window, with since-start p50/p99 beside them.

A fixed-layout text table in one Static, redrawn only when a figure's text changed. (A DataTable updated with
update_cell cost ~10 ms per frame here: it re-renders every cell through Rich after any update; this costs
well under 1 ms, which matters at 4 Hz on a machine that is also generating the load.)
"""

from __future__ import annotations

from textual.content import Content

from engine.reports import format as fmt
from engine.snapshot import Percentiles, Snapshot
from tui.widgets.base import SnapshotPanel

METRICS: tuple[tuple[str, str], ...] = (("TTFT", "ttft"), ("ITL", "itl"), ("TPOT", "tpot"), ("E2E", "e2e"))
WINDOW_COLUMNS: tuple[str, ...] = ("p50", "p90", "p95", "p99")
TOTAL_COLUMNS: tuple[str, ...] = ("p50", "p99")
LABEL_W, CELL_W, TOTAL_W = 5, 6, 8


class LatencyPanel(SnapshotPanel):
    """Percentiles in milliseconds (seconds with an 's' from 10 s); '–' until a request completes."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, title="Latency ms")
        self._subtitle = ""

    def build(self, snapshot: Snapshot) -> Content:
        subtitle = f"window {fmt.sig(snapshot.window_s)}s · n={snapshot.window.ttft.count:,} · all = since start"
        if subtitle != self._subtitle:
            self.border_subtitle = self._subtitle = subtitle
        header = Content.assemble(
            ("".ljust(LABEL_W), ""),
            ("".join(name.rjust(CELL_W) for name in WINDOW_COLUMNS), "bold"),
            ("".join(f"all {name}".rjust(TOTAL_W) for name in TOTAL_COLUMNS), "bold italic $text-muted"),
        )
        lines = [header]
        for label, key in METRICS:
            window: Percentiles = getattr(snapshot.window, key)
            total: Percentiles = getattr(snapshot.total, key)
            lines.append(
                Content.assemble(
                    (label.ljust(LABEL_W), "bold"),
                    "".join(fmt.ms(getattr(window, name)).rjust(CELL_W) for name in WINDOW_COLUMNS),
                    ("".join(fmt.ms(getattr(total, name)).rjust(TOTAL_W) for name in TOTAL_COLUMNS), "italic"),
                )
            )
        return Content("\n").join(lines)

"""Throughput: tokens per second in and out over the window, plus the since-start ("run") output total. The
words are the dashboard's one vocabulary: "in+out" is input plus output tokens, "run" is since the start.

When some output counts came from counting stream chunks (the server sent no usage), every output figure gets
the '~' marker and a legend says so: an estimate must never read as a measurement.
"""

from __future__ import annotations

from textual.content import Content

from engine.reports import format as fmt
from engine.snapshot import Snapshot
from tui.widgets.base import SnapshotPanel, kv


class ThroughputPanel(SnapshotPanel):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, title="Throughput")

    def build(self, snapshot: Snapshot) -> Content:
        window, total = snapshot.window, snapshot.total
        est = snapshot.tokens_estimated
        mark = fmt.ESTIMATED if est else ""
        lines = [
            kv("output", f"{fmt.rate(window.output_tokens_per_s, ' tok/s', missing='0 tok/s', estimated=est)}"),
            kv(
                "input",
                ("≥" if snapshot.input_tokens_unknown else "")
                + fmt.rate(window.input_tokens_per_s, " tok/s", missing="0 tok/s"),
            ),
            kv(
                "in+out",
                fmt.rate(
                    window.input_tokens_per_s + window.output_tokens_per_s, " tok/s", missing="0 tok/s", estimated=est
                ),
            ),
            kv("run out", Content.styled(f"{mark}{fmt.sig(total.output_tokens)} tok", "$text-muted")),
        ]
        if est:
            lines.append(Content.styled(f"{fmt.ESTIMATED_LEGEND}: no usage sent", "$text-warning"))
        if snapshot.input_tokens_unknown:
            lines.append(Content.styled("≥ no prompt usage on some requests", "$text-warning"))
        return Content("\n").join(lines)

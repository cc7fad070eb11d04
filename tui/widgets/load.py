"""Load: what the operator asked for (target) next to what the engine achieves, and what fails.

In concurrency mode the pair is target vs in-flight streams; in rate mode it is target vs achieved req/s, so a
server (or client) that cannot keep up shows as a gap between the two numbers. A trace replay's knob is its speed
(×1.0 = the recorded clock), not a rate: the panel says so, and what the load keys do to it.
"""

from __future__ import annotations

from textual.content import Content

from engine.reports import format as fmt
from engine.snapshot import LoadMode, Snapshot
from tui.widgets.base import SnapshotPanel, kv

MAX_ERROR_CLASSES = 3  # the rest are summed into "other" so the panel keeps its height


class LoadPanel(SnapshotPanel):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, title="Load")
        self.key_step: float | None = None  # live only: what + and - add to the target (set by the dashboard)

    def build(self, snapshot: Snapshot) -> Content:
        window, total = snapshot.window, snapshot.total
        lines: list[Content] = []
        if snapshot.mode is LoadMode.RATE and snapshot.trace:
            lines.append(kv("speed", Content.assemble((fmt.trace_speed(snapshot.target_rate), "bold"),
                                                      (" trace clock", "$text-muted"))))
            if self.key_step is not None:
                lines.append(kv("keys", Content.styled(f"+/- {self.key_step:g}  * ×2  / ÷2", "$text-muted")))
            lines.append(kv("achieved", f"{fmt.sig(window.requests_per_s, missing='0')} req/s"))
            lines.append(kv("in flight", fmt.integer(snapshot.in_flight)))
        elif snapshot.mode is LoadMode.RATE:
            lines.append(kv("target", f"{fmt.sig(snapshot.target_rate)} req/s"))
            lines.append(kv("achieved", f"{fmt.sig(window.requests_per_s, missing='0')} req/s"))
            lines.append(kv("in flight", fmt.integer(snapshot.in_flight)))
        else:
            lines.append(kv("target", fmt.integer(snapshot.target_concurrency)))
            lines.append(kv("in flight", fmt.integer(snapshot.in_flight)))
            lines.append(kv("req/s", fmt.sig(window.requests_per_s, missing="0")))
        if snapshot.waiting_first_token:
            age = snapshot.oldest_wait_s
            oldest = "" if age is None else f"  oldest {age:.1f}s" if age < 10 else f"  oldest {fmt.short_span(age)}"
            lines.append(kv("no 1st tok", Content.assemble(
                (fmt.integer(snapshot.waiting_first_token), "bold"), (oldest, "$text-muted"))))
        lines.append(kv("completed", fmt.integer(total.requests)))
        error_style = "$error bold" if total.errors else "bold"
        lines.append(
            kv(
                "errors",
                Content.assemble(
                    (fmt.integer(total.errors), error_style),
                    (f"  {fmt.percent(window.error_rate)} now" if total.errors else "", "$text-muted"),
                ),
            )
        )
        by_class = sorted(total.errors_by_class.items(), key=lambda item: (-item[1], item[0]))
        if by_class:
            parts = [f"{name} {fmt.integer(count)}" for name, count in by_class[:MAX_ERROR_CLASSES]]
            other = sum(count for _, count in by_class[MAX_ERROR_CLASSES:])
            if other:
                parts.append(f"other {fmt.integer(other)}")
            lines.append(Content.styled(" " + " · ".join(parts), "$text-error"))
        return Content("\n").join(lines)

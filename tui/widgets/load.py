"""Load: what the operator asked for (target) next to what the engine achieves, and what fails.

In concurrency mode the pair is target vs in-flight streams; in rate mode it is target vs achieved req/s, so a
server (or client) that cannot keep up shows as a gap between the two numbers. A trace replay's knob is its speed
(×1.0 = the recorded clock), not a rate: the panel says so, and what the load keys do to it. Every error class is
shown, in a compact form that wraps ("5xx 115 · 429 40 · timeout 3"); when the panel runs out of rows the completed
count joins the req/s line first, and only then does the last line end with "+N more" (the event log has them all).
Requests still waiting for their first token are shown in the Latency panel, beside TTFT. A distributed run
(``--ray``) adds a "workers" line (how many on how many nodes, lost ones in red) and, where a row is left, the worst
worker's loop and send lag with the widest clock uncertainty; ``n`` opens every worker's line.
"""

from __future__ import annotations

from textual import events
from textual.content import Content

from engine.reports import format as fmt
from engine.snapshot import LoadMode, Snapshot
from tui.widgets import workers as workers_view
from tui.widgets.base import SnapshotPanel, kv

SHORT_CLASS = {  # ErrorClass values -> what the panel prints (the event log and reports keep the full names)
    "http_5xx": "5xx",
    "http_4xx": "4xx",
    "http_429": "429",
    "stream_broken": "broken",
    "connect": "connect",
    "timeout": "timeout",
    "malformed": "malformed",
}


def error_classes(by_class: dict[str, int], width: int) -> list[str]:
    """Every class with its count, most frequent first, wrapped into lines of at most ``width`` cells."""
    parts = [f"{SHORT_CLASS.get(name, name)} {fmt.integer(count)}"
             for name, count in sorted(by_class.items(), key=lambda item: (-item[1], item[0]))]  # fmt: skip
    lines: list[str] = []
    for part in parts:
        if lines and len(lines[-1]) + 3 + len(part) <= width:
            lines[-1] += " · " + part
        else:
            lines.append(part)
    return lines


class LoadPanel(SnapshotPanel):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, title="Load")
        self.key_step: float | None = None  # live only: what + and - add to the target (set by the dashboard)
        self._snapshot: Snapshot | None = None

    def on_resize(self, _event: events.Resize) -> None:
        if self._snapshot is not None:  # the error classes wrap to the width
            self.show(self._snapshot)

    def build(self, snapshot: Snapshot) -> Content:
        self._snapshot = snapshot
        window, total = snapshot.window, snapshot.total
        width = self.content_size.width if self.is_mounted and self.content_size.width else 26
        height = self.content_size.height if self.is_mounted and self.content_size.height else 6
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
        rate_line = len(lines) - 1
        workers = snapshot.workers
        extra: list[Content] = []  # a --ray run's workers: the summary, then (a row to spare) the lags
        if workers is not None:
            extra = [kv("workers", workers_view.summary(workers, width - 11)), workers_view.lags(workers)]
        self.border_subtitle = workers_view.clock(workers)
        completed = kv("completed", fmt.integer(total.requests))
        error_style = "$error bold" if total.errors else "bold"
        errors = kv(
            "errors",
            Content.assemble(
                (fmt.integer(total.errors), error_style),
                (f"  {fmt.percent(window.error_rate)} now" if total.errors else "", "$text-muted"),
            ),
        )
        classes = error_classes(total.errors_by_class, width - 1)
        needed = len(lines) + len(extra) + 2 + len(classes)
        if needed > height:  # every class stays visible: "completed" moves up a line
            lines[rate_line] = Content.assemble(lines[rate_line], Content.styled(
                f"  {fmt.integer(total.requests)} done", "$text-muted"))  # fmt: skip
            lines.extend(extra if needed - 1 <= height else extra[:1])  # then the lags give way
        else:
            lines.extend(extra)
            lines.append(completed)
        lines.append(errors)
        room = max(1, height - len(lines))
        if len(classes) > room:  # still too many: say how many classes are not shown
            hidden = len(error_classes(total.errors_by_class, 10**6)[0].split(" · ")) - sum(
                len(line.split(" · ")) for line in classes[: room])
            classes = [*classes[: room - 1], _with_more(classes[room - 1], hidden, width - 1)]
        lines.extend(Content.styled(" " + line, "$text-error") for line in classes)
        return Content("\n").join(lines)


def _with_more(line: str, hidden: int, width: int) -> str:
    """``line`` ending in "+N more", dropping its last classes until that fits."""
    parts = line.split(" · ")
    while True:
        more = f"+{hidden} more"
        text = " · ".join([*parts, more])
        if len(text) <= width or len(parts) <= 1:
            return text
        parts.pop()
        hidden += 1

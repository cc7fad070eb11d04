"""Event log: control changes, engine warnings and (already rate-limited) error reasons, newest at the bottom.

It follows the newest line unless the operator has scrolled up (focus it with tab or a click, then scroll with
the arrows, page keys or the wheel; ``end`` follows again), and ``l`` opens every line full-screen with a filter
(screens/log_view.py). Bounded to the last 500 lines so a long session cannot grow the UI's memory.

An error burst is one line: the engine reports a class at most once a second ("http_5xx x37: 503 …"), and each
report within BURST_GAP_S of the previous one of that class rewrites the log's last line, if it is that class's
("http_5xx x115 in 0:04: 503 …"), instead of adding one. After a resize every line is wrapped again to the new
width (RichLog wraps once, when a line is written).
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any, ClassVar, Self

from rich.text import Text
from textual import events
from textual.app import App
from textual.binding import Binding, BindingType
from textual.widgets import RichLog

from engine.reports import format as fmt
from engine.snapshot import EventView
from tui.widgets.base import theme_style
from tui.widgets.charts import ERRORS, LOAD, POWER

MAX_LINES = 500
BURST_GAP_S = 5.0  # error reports of one class closer than this are one burst, one line
_ERROR_LINE = re.compile(r"^(?P<cls>[a-z0-9_]+)(?: x(?P<n>\d+))?(?:(?: in \S+)?: (?P<detail>.*))?$")
KIND_TAG: dict[str, str] = {  # short fixed-width tags keep messages aligned in a narrow column
    "concurrency": "load",
    "rate": "load",
    "power_cap": "cap",
    "record_start": "rec",
    "record_stop": "rec",
    "annotation": "note",
    "warning": "warn",
    "error": "err",
}
KIND_COLOR: dict[str, str] = {  # theme variables, and the charts' colours for what the charts mark
    "error": ERRORS,
    "warning": "warning",
    "power_cap": POWER,
    "concurrency": LOAD,
    "rate": LOAD,
    "record_start": "error",
    "start": "success",
    "pause": "warning",
    "resume": "success",
    "replay": "accent",
}


Entry = tuple[float, str, str]
"""One log line: (t_s, kind, message)."""


def merge_burst(last: Entry, last_seen_s: float, t_s: float, kind: str, message: str) -> str | None:
    """The merged message when (t_s, kind, message) continues the burst ``last`` ends (same error class, within
    BURST_GAP_S of the burst's latest report at ``last_seen_s``), else None."""
    if kind != "error" or last[1] != "error" or t_s - last_seen_s > BURST_GAP_S:
        return None
    old, new = _ERROR_LINE.match(last[2]), _ERROR_LINE.match(message)
    if old is None or new is None or old["cls"] != new["cls"]:
        return None
    count = int(old["n"] or 1) + int(new["n"] or 1)
    detail = new["detail"] or old["detail"]
    span = fmt.short_span(max(0.0, t_s - last[0]))
    return f"{new['cls']} x{count} in {span}" + (f": {detail}" if detail else "")


def event_line(app: App[Any], t_s: float, kind: str, message: str) -> Text:
    tag = KIND_TAG.get(kind, kind)[:6].ljust(6)
    return Text.assemble(
        (fmt.clock(t_s), theme_style(app, "foreground-muted")),
        " ",
        (tag, theme_style(app, KIND_COLOR.get(kind, "foreground"), bold=True)),
        " ",
        message,
    )


class EventLogPanel(RichLog):
    can_focus = True
    DEFAULT_CLASSES = "panel"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("end", "follow", "follow", show=False),
        Binding("escape", "leave", "leave the log", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=MAX_LINES, wrap=True, markup=False, auto_scroll=True, min_width=20)
        self.border_title = "Events"
        self.count = 0
        self.entries: deque[Entry] = deque(maxlen=MAX_LINES)
        self.cleared = 0  # bumped by clear(), so a viewer of ``entries`` knows to start again
        self.changed = 0  # bumped when an entry is rewritten in place (a burst), so a viewer re-reads the last
        self._last_seen_s = 0.0  # the latest report in the last entry's burst
        self._tail_strips = 0  # how many wrapped lines the last entry took (so a burst can rewrite it)
        self._wrapped_at = 0  # the width the lines were wrapped for

    def add(self, event: EventView) -> None:
        self.add_line(event.t_s, event.kind, event.message)

    def add_line(self, t_s: float, kind: str, message: str) -> None:
        merged = merge_burst(self.entries[-1], self._last_seen_s, t_s, kind, message) if self.entries else None
        self._last_seen_s = t_s
        if merged is not None:
            start = self.entries[-1][0]
            self.entries[-1] = (start, kind, merged)
            self.changed += 1
            self._rewrite_last()
            return
        self.entries.append((t_s, kind, message))
        self._write_entry(t_s, kind, message)
        self.count += 1

    def _write_entry(self, t_s: float, kind: str, message: str) -> None:
        before = len(self.lines) + self._start_line  # RichLog trims from the front: count from the true start
        self.write(event_line(self.app, t_s, kind, message))
        self._tail_strips = len(self.lines) + self._start_line - before

    def _rewrite_last(self) -> None:
        """Replace the last entry's wrapped lines with its new text (a full rewrap while writes are deferred)."""
        n = self._tail_strips
        if self._deferred_renders or n <= 0 or n > len(self.lines):
            self._rewrap()
            return
        del self.lines[-n:]
        self._line_cache.clear()
        t_s, kind, message = self.entries[-1]
        self._write_entry(t_s, kind, message)
        self.refresh()

    def _rewrap(self) -> None:
        """Write every entry again at the current width, keeping the view at the end if it was there."""
        following = self.scroll_y >= self.max_scroll_y
        super().clear()
        for t_s, kind, message in self.entries:
            self._write_entry(t_s, kind, message)
        self._wrapped_at = self.scrollable_content_region.width
        if following:
            self.scroll_end(animate=False, immediate=True)

    def on_resize(self, event: events.Resize) -> None:
        super().on_resize(event)
        width = self.scrollable_content_region.width
        if self.entries and self._wrapped_at and width != self._wrapped_at:
            self._rewrap()
        elif not self._wrapped_at:
            self._wrapped_at = width

    def clear(self) -> Self:
        self.entries.clear()
        self.cleared += 1
        self._tail_strips = 0
        return super().clear()

    def action_follow(self) -> None:
        self.scroll_end(animate=False, immediate=True)

    def action_leave(self) -> None:
        """esc: give the keys back to the dashboard, following the newest line again."""
        self.scroll_end(animate=False, immediate=True)
        self.screen.set_focus(None)

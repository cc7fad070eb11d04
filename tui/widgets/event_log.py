"""Event log: control changes, engine warnings and (already rate-limited) error reasons, newest at the bottom.

It follows the newest line unless the operator has scrolled up (focus it with tab or a click, then scroll with
the arrows, page keys or the wheel; ``end`` follows again), and ``l`` opens every line full-screen with a filter
(screens/log_view.py). Bounded to the last 500 lines so a long session cannot grow the UI's memory.
"""

from __future__ import annotations

from collections import deque
from typing import Any, ClassVar, Self

from rich.text import Text
from textual.app import App
from textual.binding import Binding, BindingType
from textual.widgets import RichLog

from engine.reports import format as fmt
from engine.snapshot import EventView
from tui.widgets.base import theme_style

MAX_LINES = 500
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
KIND_COLOR: dict[str, str] = {  # theme variables, so the log reads in light and dark themes
    "error": "error",
    "warning": "warning",
    "power_cap": "warning",
    "concurrency": "primary",
    "rate": "primary",
    "record_start": "error",
    "start": "success",
    "pause": "warning",
    "resume": "success",
    "replay": "accent",
}


Entry = tuple[float, str, str]
"""One log line: (t_s, kind, message)."""


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

    def add(self, event: EventView) -> None:
        self.add_line(event.t_s, event.kind, event.message)

    def add_line(self, t_s: float, kind: str, message: str) -> None:
        self.entries.append((t_s, kind, message))
        self.write(event_line(self.app, t_s, kind, message))
        self.count += 1

    def clear(self) -> Self:
        self.entries.clear()
        self.cleared += 1
        return super().clear()

    def action_follow(self) -> None:
        self.scroll_end(animate=False)

    def action_leave(self) -> None:
        """esc: give the keys back to the dashboard, following the newest line again."""
        self.scroll_end(animate=False)
        self.screen.set_focus(None)

"""Event log: control changes, engine warnings and (already rate-limited) error reasons, newest at the bottom.

Bounded to the last 500 lines so a long session cannot grow the UI's memory; the operator's own hotkey
results (e.g. the power-cap read-back) are written here too, stamped with the session clock.
"""

from __future__ import annotations

from rich.text import Text
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


class EventLogPanel(RichLog):
    can_focus = False
    DEFAULT_CLASSES = "panel"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=MAX_LINES, wrap=True, markup=False, auto_scroll=True, min_width=20)
        self.border_title = "Events"
        self.count = 0

    def add(self, event: EventView) -> None:
        self.add_line(event.t_s, event.kind, event.message)

    def add_line(self, t_s: float, kind: str, message: str) -> None:
        tag = KIND_TAG.get(kind, kind)[:6].ljust(6)
        line = Text.assemble(
            (fmt.clock(t_s), theme_style(self.app, "foreground-muted")),
            " ",
            (tag, theme_style(self.app, KIND_COLOR.get(kind, "foreground"), bold=True)),
            " ",
            message,
        )
        self.write(line)
        self.count += 1

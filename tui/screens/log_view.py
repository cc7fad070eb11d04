"""The full-screen event log (``l``, as in k9s): every line the dashboard's Events panel holds, following the
newest, with a filter (``/``) over kind and message. esc or ``l`` goes back to the dashboard."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, Input, RichLog, Static

from tui.widgets.event_log import EventLogPanel, event_line

POLL_S = 0.25  # new lines are picked up at the dashboard's own refresh rate


class LogViewScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "back", tooltip="back to the dashboard (clears the filter first)"),
        Binding("l", "close", "back", show=False),
        Binding("slash", "filter", "filter", key_display="/", tooltip="filter the lines (kind or text)"),
        Binding("end", "follow", "follow", show=False, tooltip="follow the newest line"),
    ]

    def __init__(self, source: EventLogPanel) -> None:
        super().__init__(id="log-view")
        self.source = source
        self.pattern = ""
        self._seen = 0  # how many of the source's lines this view has considered
        self._cleared = source.cleared
        self._changed = source.changed
        self.shown = 0  # lines currently listed (tests read it)

    def compose(self) -> ComposeResult:
        yield Static("", id="log-title")
        yield RichLog(id="log-lines", wrap=True, markup=False, auto_scroll=True, max_lines=10_000)
        yield Input(placeholder="filter: kind or text (enter to apply, esc to clear)", id="log-filter")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#log-filter", Input).display = False
        self._rebuild()
        self.set_interval(POLL_S, self._poll)
        self.query_one("#log-lines", RichLog).focus()

    def _matches(self, kind: str, message: str) -> bool:
        needle = self.pattern.lower()
        return not needle or needle in kind.lower() or needle in message.lower()

    def _title(self) -> None:
        total = len(self.source.entries)
        what = f"filter “{self.pattern}”: {self.shown} of {total}" if self.pattern else f"{total} lines"
        self.query_one("#log-title", Static).update(f" Events — {what}   (/ filter · esc back · end follow)")

    def _rebuild(self) -> None:
        log = self.query_one("#log-lines", RichLog)
        log.clear()
        self.shown = 0
        for t_s, kind, message in self.source.entries:
            if self._matches(kind, message):
                log.write(event_line(self.app, t_s, kind, message))
                self.shown += 1
        self._seen = self.source.count
        self._cleared = self.source.cleared
        self._changed = self.source.changed
        self._title()

    def _poll(self) -> None:
        if self.source.cleared != self._cleared or self.source.changed != self._changed:
            self._rebuild()  # cleared, or a burst line rewritten in place
            return
        new = self.source.count - self._seen
        if new <= 0:
            return
        log = self.query_one("#log-lines", RichLog)
        entries = list(self.source.entries)[-min(new, len(self.source.entries)):]
        for t_s, kind, message in entries:
            if self._matches(kind, message):
                log.write(event_line(self.app, t_s, kind, message))
                self.shown += 1
        self._seen = self.source.count
        self._title()

    def action_filter(self) -> None:
        box = self.query_one("#log-filter", Input)
        box.display = True
        box.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.pattern = event.value.strip()
        self._rebuild()

    def on_input_submitted(self, _event: Input.Submitted) -> None:
        self.query_one("#log-lines", RichLog).focus()

    def action_follow(self) -> None:
        self.query_one("#log-lines", RichLog).scroll_end(animate=False)

    def action_close(self) -> None:
        box = self.query_one("#log-filter", Input)
        if box.has_focus and self.pattern:
            box.value = ""
            return
        self.dismiss(None)

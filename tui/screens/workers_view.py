"""The workers view (``n``, live runs): one line per worker of a distributed run (``--ray``), grouped by node, from
the snapshot on screen and following it; esc or ``n`` closes it. The Load panel has the compact form."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from engine.snapshot import Snapshot
from tui.widgets.workers import detail

POLL_S = 0.25  # the dashboard's own refresh rate


class WorkersScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "close", show=False),
        Binding("n", "dismiss", "close", show=False),
    ]

    def __init__(self, current: Snapshot) -> None:
        super().__init__()
        self._current = current
        self.text = ""  # what is shown (tests read it)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="workers-box") as box:
            box.border_title = "workers"
            box.border_subtitle = "esc / n close"
            yield Static("", id="workers-text")

    def on_mount(self) -> None:
        self._refresh_text()
        self.set_interval(POLL_S, self._refresh_text)

    def _refresh_text(self) -> None:
        snapshot = getattr(self.app, "snapshot", self._current)
        text = "\n".join(detail(snapshot.workers))
        if text != self.text:
            self.text = text
            self.query_one("#workers-text", Static).update(text)

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)

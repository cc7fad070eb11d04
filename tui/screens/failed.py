"""Offered once when the engine reports FAILED (e.g. a worker crashed): the reason in one box, and a way out.

The panels stay underneath with their last figures; no traceback is ever drawn over them.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class FailedScreen(ModalScreen[bool]):
    """Dismisses with True to quit, False to keep looking at the last figures."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "stay", "keep looking", show=False)]

    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message

    def compose(self) -> ComposeResult:
        with Vertical(id="failed-box") as box:
            box.border_title = "The load engine failed"
            yield Static(self.message or "The engine stopped with an error.", id="failed-message")
            with Horizontal(id="failed-buttons"):
                yield Button("Quit", id="quit", variant="error")
                yield Button("Keep looking", id="stay")

    def on_mount(self) -> None:
        self.query_one("#quit", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "quit")

    def action_stay(self) -> None:
        self.dismiss(False)

"""Quit confirmation, shown only when quitting would lose something: a running recording or changed power caps.

Restoring the caps is the default (focused) answer: leaving a GPU capped by accident is the costly mistake.
A second `q` (or ctrl+c) quits at once and restores.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

QuitChoice = Literal["restore", "keep"]


class ConfirmQuitScreen(ModalScreen[QuitChoice | None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "cancel", show=False),
        Binding("q", "force", "quit now", show=False),
    ]

    def __init__(self, *, recording: str | None, caps_changed: bool) -> None:
        super().__init__()
        self.recording = recording
        self.caps_changed = caps_changed

    def compose(self) -> ComposeResult:
        reasons = []
        if self.recording:
            reasons.append(f"A recording is running ({self.recording}); quitting stops and saves it.")
        if self.caps_changed:
            reasons.append("GPU power caps were changed in this session.")
        with Vertical(id="quit-box") as box:
            box.border_title = "Quit wattload?"
            yield Static("\n".join(reasons), id="quit-reasons")
            with Horizontal(id="quit-buttons"):
                if self.caps_changed:
                    yield Button("Quit and restore caps", id="restore", variant="primary")
                    yield Button("Quit and keep caps", id="keep", variant="warning")
                else:
                    yield Button("Quit", id="restore", variant="primary")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#restore", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "restore":
            self.dismiss("restore")
        elif event.button.id == "keep":
            self.dismiss("keep")
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_force(self) -> None:
        self.dismiss("restore")

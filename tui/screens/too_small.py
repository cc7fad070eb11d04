"""Shown instead of the dashboard while the terminal is smaller than the layout can draw legibly.

The engine keeps running and the dashboard keeps its history underneath; enlarging the window brings it back.
"""

from __future__ import annotations

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Static

MIN_WIDTH = 60
MIN_HEIGHT = 16


def too_small(width: int, height: int) -> bool:
    return width < MIN_WIDTH or height < MIN_HEIGHT


class TooSmallScreen(Screen[None]):
    def compose(self) -> ComposeResult:
        yield Static(id="too-small-text")

    def on_mount(self) -> None:
        self.show_size(self.app.size.width, self.app.size.height)

    def show_size(self, width: int, height: int) -> None:
        self.query_one("#too-small-text", Static).update(
            f"Terminal too small: {width}x{height}\n"
            f"wattload needs {MIN_WIDTH}x{MIN_HEIGHT} or more.\n"
            "The load keeps running; q quits."
        )

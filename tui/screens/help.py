"""The `?` help screen: every hotkey of the current mode, generated from the real bindings so it cannot drift."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

KEY_NAMES = {
    "plus": "+",
    "minus": "-",
    "asterisk": "*",
    "slash": "/",
    "left_square_bracket": "[",
    "right_square_bracket": "]",
    "question_mark": "?",
    "space": "space",
    "up": "↑",
    "down": "↓",
    "left": "←",
    "right": "→",
    "shift+up": "⇧↑",
    "shift+down": "⇧↓",
    "shift+left": "⇧←",
    "shift+right": "⇧→",
    "home": "home",
    "end": "end",
    "ctrl+c": "ctrl+c",
    "ctrl+p": "ctrl+p",
    "escape": "esc",
}


def key_label(key: str) -> str:
    return KEY_NAMES.get(key, key)


def help_rows(bindings: Iterable[BindingType]) -> list[tuple[str, str]]:
    """(keys, description) per action, alternates joined ("+ / ↑"), in binding order."""
    rows: dict[str, tuple[list[str], str]] = {}
    for item in bindings:
        binding = item if isinstance(item, Binding) else Binding(*item)
        keys, description = rows.setdefault(binding.action, ([], binding.tooltip or binding.description))
        keys.extend(key_label(k.strip()) for k in binding.key.split(","))
        if not description and binding.description:
            rows[binding.action] = (keys, binding.tooltip or binding.description)
    return [(" / ".join(keys), description) for keys, description in rows.values() if description]


class HelpScreen(ModalScreen[None]):
    """Hotkeys of the mode the dashboard is in; esc or ? closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "close", show=False),
        Binding("question_mark", "dismiss", "close", show=False),
    ]

    def __init__(self, title: str, rows: list[tuple[str, str]], note: str = "") -> None:
        super().__init__()
        self._title = title
        self._rows = rows
        self._note = note

    def compose(self) -> ComposeResult:
        width = max((len(keys) for keys, _ in self._rows), default=4) + 2
        lines = [Content.assemble((keys.ljust(width), "$accent bold"), description) for keys, description in self._rows]
        if self._note:
            lines += [Content(""), Content.styled(self._note, "$text-muted")]
        with VerticalScroll(id="help-box") as box:
            box.border_title = self._title
            box.border_subtitle = "esc / ? close"
            yield Static(Content("\n").join(lines), id="help-text")

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)

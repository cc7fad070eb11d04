"""The shared shape of a dashboard panel: it is handed a Snapshot and redraws only when its text changed.

Panels never fetch anything themselves (no I/O in widgets): the app hands each one the latest snapshot, so
live runs and replays draw through the same code.
"""

from __future__ import annotations

from rich.style import Style
from textual.app import App
from textual.color import Color
from textual.content import Content
from textual.widgets import Static

from engine.snapshot import Snapshot


class SnapshotPanel(Static):
    """A Static that shows one snapshot; skipping identical content keeps an idle dashboard from repainting."""

    can_focus = False
    DEFAULT_CLASSES = "panel"
    FIXED_SIZE = True  # sized by the layout, not by its text: an update never needs a layout pass

    def __init__(self, *, id: str | None = None, title: str = "") -> None:
        super().__init__("", id=id)
        self._shown: Content | None = None
        self._lines = 0
        if title:
            self.border_title = title

    def show(self, snapshot: Snapshot) -> None:
        """Redraw from ``snapshot`` (called once per tick on the UI thread)."""
        self.set_content(self.build(snapshot))

    def build(self, snapshot: Snapshot) -> Content:
        raise NotImplementedError

    def set_content(self, content: Content) -> None:
        """Update in place; a layout pass (which repaints the whole screen) only when an auto-sized panel
        gained or lost a line."""
        if self._shown is not None and self._shown.is_same(content):
            return
        lines = content.plain.count("\n") + 1
        self.update(content, layout=not self.FIXED_SIZE and lines != self._lines)
        self._shown = content
        self._lines = lines


def kv(label: str, value: str | Content, width: int = 11, value_style: str = "bold") -> Content:
    """One 'label  value' pair with the label padded so columns line up."""
    value_content = value if isinstance(value, Content) else Content.styled(value, value_style)
    return Content.assemble((label.ljust(width), "$text-muted"), value_content)


_STYLE_CACHE: dict[tuple[str, str, bool], Style] = {}


def theme_style(app: App[object], name: str, bold: bool = False) -> Style:
    """A Rich style in the colour of theme variable ``name`` (e.g. "error") or of "#rrggbb", for code that draws
    Rich segments directly; translucent colours are blended onto the background so light and dark themes both
    read well."""
    key = (app.theme, name, bold)
    style = _STYLE_CACHE.get(key)
    if style is None:
        variables = app.get_css_variables()
        background = Color.parse(variables.get("background", "#000000"))
        fixed = name.startswith("#")  # a fixed colour (the charts' colour-blind-safe palette), not a variable
        color = Color.parse(name if fixed else variables.get(name, variables.get("foreground", "#ffffff")))
        if color.a < 1:
            color = background + color
        style = Style(color=color.rich_color, bold=bold)
        _STYLE_CACHE[key] = style
    return style

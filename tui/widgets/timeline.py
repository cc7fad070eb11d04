"""Replay timeline: where playback is in the recording, how fast it plays, and where the control events were.

The app hands it the player's position, duration, speed and markers (no I/O here); markers are drawn on the
bar so the operator can seek straight to a concurrency or power-cap change.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

from engine.reports import format as fmt
from tui.widgets.base import theme_style

MARKER_COLOR = {"concurrency": "primary", "rate": "primary", "power_cap": "warning", "error": "error"}


def speed_label(speed: float) -> str:
    return "max" if speed <= 0 else f"{fmt.sig(speed)}x"


def transport_label(playing: bool, speed: float, at_end: bool) -> str:
    """The one word for where playback is, shared by the header and the timeline so the two never disagree."""
    if playing:
        return f"▶ playing {speed_label(speed)}"
    return "■ end" if at_end else "⏸ paused"


class TimelineBar(Widget):
    can_focus = False

    DEFAULT_CSS = """
    TimelineBar { height: 2; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.position_s = 0.0
        self.duration_s = 0.0
        self.playing = False
        self.speed = 1.0
        self.markers: tuple[tuple[float, str], ...] = ()
        self.at_end = False

    def show(
        self, position_s: float, duration_s: float, playing: bool, speed: float, markers: Sequence[tuple[float, str]],
        *, at_end: bool = False,
    ) -> None:
        state = (position_s, duration_s, playing, speed, tuple(markers), at_end)
        if state != (self.position_s, self.duration_s, self.playing, self.speed, self.markers, self.at_end):
            self.position_s, self.duration_s, self.playing, self.speed, self.markers, self.at_end = state
            self.refresh()

    def render_line(self, y: int) -> Strip:
        width = self.content_size.width
        if y == 0:
            return self._status(width)
        if y == 1:
            return self._bar(width)
        return Strip.blank(width)

    def _status(self, width: int) -> Strip:
        play = transport_label(self.playing, self.speed, self.at_end)
        speed = "" if self.playing else f" {speed_label(self.speed)}"
        left = f" {play}{speed}  {fmt.clock(self.position_s)} / {fmt.clock(self.duration_s)}"
        right = "space play/pause · ←/→ 10s · ⇧←/→ 60s · home/end · 1 2 4 8 0 speed "
        gap = width - len(left) - len(right)
        segments = [Segment(left, theme_style(self.app, "accent", bold=True))]
        if gap > 0:
            segments += [Segment(" " * gap), Segment(right, theme_style(self.app, "foreground-muted"))]
        return Strip(segments).crop(0, width)

    def _bar(self, width: int) -> Strip:
        inner = max(1, width - 2)
        frac = 0.0 if self.duration_s <= 0 else min(1.0, max(0.0, self.position_s / self.duration_s))
        head = min(inner - 1, int(frac * inner))
        chars = ["━" if i < head else "─" for i in range(inner)]
        chars[head] = "●"
        colors: list[str | None] = ["accent" if i <= head else None for i in range(inner)]
        for t_s, kind in self.markers:
            if self.duration_s > 0 and kind in MARKER_COLOR:
                x = min(inner - 1, int(t_s / self.duration_s * inner))
                if x != head:
                    chars[x] = "┃"
                    colors[x] = MARKER_COLOR[kind]
        muted = theme_style(self.app, "foreground-muted")
        segments = [Segment(" ")]
        start = 0
        for i in range(1, inner + 1):
            if i == inner or colors[i] != colors[start]:
                name = colors[start]
                style: Style = muted if name is None else theme_style(self.app, name, bold=True)
                segments.append(Segment("".join(chars[start:i]), style))
                start = i
        segments.append(Segment(" "))
        return Strip(segments)

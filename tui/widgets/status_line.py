"""The status line: one fixed row above the footer for what needs the operator's eye now.

In order: the session's own message (a failure, a file's problem), the "client saturated" warning, and (when the
Events panel is hidden by a narrow terminal) the newest event, so a key press never goes without an answer. The
row is always there, so a warning coming and going never shifts the layout.

The saturation warning has hysteresis on the session clock: it comes on once the client has been saturated for
``ON_S`` and goes off after ``OFF_S`` without, so a busy box's one-second blips do not flap it; it is cleared at
once while the load is paused (nothing is being sent, so nothing is late).
"""

from __future__ import annotations

from textual.content import Content
from textual.widget import Widget

from engine.reports import format as fmt
from engine.snapshot import RunState, Snapshot
from tui.widgets.base import SnapshotPanel
from tui.widgets.event_log import KIND_TAG

ON_S = 2.0
OFF_S = 5.0


class SaturationLatch:
    """Saturated / not, with hysteresis on snapshot time."""

    def __init__(self, on_s: float = ON_S, off_s: float = OFF_S) -> None:
        self.on_s, self.off_s = on_s, off_s
        self.active = False
        self.reason = ""
        self._since: float | None = None  # when the current run of the other state began

    def update(self, snapshot: Snapshot) -> bool:
        if snapshot.state is RunState.PAUSED:
            self.active, self._since = False, None
            return False
        saturated = snapshot.client.saturated
        if saturated:
            self.reason = snapshot.client.reason or self.reason
        if saturated == self.active:
            self._since = None
        else:
            if self._since is None or snapshot.t_s < self._since:
                self._since = snapshot.t_s
            if snapshot.t_s - self._since >= (self.on_s if saturated else self.off_s):
                self.active, self._since = saturated, None
        return self.active


class StatusLine(SnapshotPanel):
    DEFAULT_CLASSES = ""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.saturated = False
        self.reason = ""
        self.last_event: tuple[float, str, str] | None = None

    def note(self, t_s: float, kind: str, message: str) -> None:
        """The newest event (shown when the Events panel is hidden)."""
        if self.last_event is None or t_s >= self.last_event[0]:
            self.last_event = (t_s, kind, message)

    def show(self, snapshot: Snapshot, *, saturated: bool = False, reason: str = "") -> None:
        """``saturated``: the dashboard's latched verdict (it sees every snapshot; frames skip some)."""
        self.saturated, self.reason = saturated, reason
        super().show(snapshot)

    def build(self, snapshot: Snapshot) -> Content:
        saturated = self.saturated and snapshot.state is not RunState.PAUSED
        if snapshot.message:
            style = "$error bold" if snapshot.state is RunState.FAILED else "$text-warning"
            return Content.styled(f" {snapshot.message}", style)
        if saturated:
            reason = self.reason or "the load generator is the bottleneck"
            return Content.styled(f" ⚠ client saturated: {reason} (figures are suspect)", "$warning bold")
        if self.last_event is not None and not _events_visible(self):
            t_s, kind, message = self.last_event
            return Content.assemble((f" {fmt.clock(t_s)} {KIND_TAG.get(kind, kind)} ", "$text-muted"), message)
        return Content("")


def _events_visible(widget: Widget) -> bool:
    try:
        return bool(widget.screen.query_one("#events").display)
    except Exception:  # not mounted yet, or a screen without an Events panel
        return False

"""Header: what is being measured (endpoint, model, workload), for how long, and whether to trust it now.

The second line appears only when something needs the operator's attention: the load generator itself is
saturated (figures are suspect), or the engine failed/stopped with a message.
"""

from __future__ import annotations

from textual.content import Content

from engine.reports import format as fmt
from engine.snapshot import RunState, Snapshot
from tui.widgets.base import SnapshotPanel

STATE_STYLE: dict[RunState, str] = {
    RunState.STARTING: "$primary bold",
    RunState.RUNNING: "$success bold",
    RunState.PAUSED: "$warning bold",
    RunState.STOPPING: "$text-muted bold",
    RunState.STOPPED: "$text-muted bold",
    RunState.FAILED: "$error bold",
}


class HeaderPanel(SnapshotPanel):
    DEFAULT_CLASSES = ""
    FIXED_SIZE = False  # one line, two while a warning shows

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.playback: str = ""  # replay only: "▶ 2x" / "⏸" (set by the app, shown before the state)
        self.ramp: str = ""  # live only: the auto-ramp's status while it runs (set by the app, shown after the target)

    def build(self, snapshot: Snapshot) -> Content:
        sep = Content.styled(" │ ", "$text-muted")
        who = " · ".join(part for part in (snapshot.endpoint, snapshot.model, snapshot.workload) if part)
        target = fmt.load_target(snapshot.mode, snapshot.target_concurrency, snapshot.target_rate)
        parts: list[Content] = [Content.styled(" wattload ", "$text-accent bold")]
        if snapshot.source == "replay":
            parts.append(Content.styled(f"REPLAY {self.playback}".rstrip() + " ", "$accent bold"))
        parts.append(Content.styled(f"● {snapshot.state.value.upper()}", STATE_STYLE[snapshot.state]))
        if snapshot.recording:
            parts.append(Content.styled("  ● REC", "$error bold"))
        parts += [
            sep,
            Content.styled(fmt.clock(snapshot.t_s), "bold"),
            sep,
            Content.styled(f"{snapshot.mode.value} → {target}", "$text"),
        ]
        if self.ramp:
            parts.append(Content.styled(f"  ↗ {self.ramp}", "$accent bold"))
        parts += [
            sep,
            Content.styled(who or "(no endpoint)", "$text"),
        ]
        line = Content.assemble(*parts)
        notes: list[Content] = []
        if snapshot.client.saturated:
            reason = snapshot.client.reason or "the load generator is the bottleneck"
            notes.append(Content.styled(f" ⚠ client saturated: {reason} (figures are suspect)", "$warning bold"))
        if snapshot.message:
            style = "$error bold" if snapshot.state is RunState.FAILED else "$text-warning"
            notes.append(Content.styled(f" {snapshot.message}", style))
        return Content("\n").join([line, *notes]) if notes else line

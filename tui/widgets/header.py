"""Header: what is being measured (endpoint, model, workload), for how long, and whether to trust it now.

Always one line: warnings and the engine's messages go to the status line (widgets/status_line.py), so they
never shift the layout.
"""

from __future__ import annotations

from textual.content import Content

from engine.reports import format as fmt
from engine.snapshot import LoadMode, RunState, Snapshot
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

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.playback: str = ""  # replay only: "▶ playing 2x" / "⏸ paused" / "■ end" (set by the replay dashboard)
        self.ramp: str = ""  # live only: the auto-ramp's status while it runs (set by the app, shown after the target)

    def build(self, snapshot: Snapshot) -> Content:
        sep = Content.styled(" │ ", "$text-muted")
        # the model first: a narrow header cuts from the right and keeps it
        who = " · ".join(part for part in (snapshot.model, snapshot.workload, snapshot.endpoint) if part)
        target = fmt.load_target(snapshot.mode, snapshot.target_concurrency, snapshot.target_rate, snapshot.trace)
        knob = "trace speed" if snapshot.trace and snapshot.mode is LoadMode.RATE else snapshot.mode.value
        parts: list[Content] = [Content.styled(" wattload ", "$text-accent bold")]
        if snapshot.source == "replay":  # the transport first; the recorded state is what the session was doing
            parts.append(Content.styled(f"REPLAY {self.playback}".rstrip() + " ", "$accent bold"))
            parts.append(Content.styled(f"(was {snapshot.state.value})", "$text-muted"))
        else:
            parts.append(Content.styled(f"● {snapshot.state.value.upper()}", STATE_STYLE[snapshot.state]))
        if snapshot.recording:
            parts.append(Content.styled("  ● REC", "$error bold"))
        parts += [
            sep,
            Content.styled(fmt.clock(snapshot.t_s), "bold"),
            sep,
            Content.styled(f"{knob} → {target}", "$text"),
        ]
        if self.ramp:
            parts.append(Content.styled(f"  ↗ {self.ramp}", "$accent bold"))
        parts += [
            sep,
            Content.styled(who or "(no endpoint)", "$text"),
        ]
        return Content.assemble(*parts)

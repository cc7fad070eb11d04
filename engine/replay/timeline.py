"""The control state over a recording's events: what the live controller's targets and run state were at any
moment (the player hands it to the aggregator; the reports label phases with it)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from engine.control import ControlState
from engine.records import ControlEvent, EventKind
from engine.snapshot import LoadMode, RunState
from engine.storage.reader import Recording


def initial_control(rec: Recording) -> ControlState:
    """The control state at the start of the recording, from its settings (events then move it)."""
    cfg = {**rec.meta.config, **(rec.meta.start_control or {})}  # a late start: the settings then in force
    try:
        mode = LoadMode(cfg.get("mode", LoadMode.CONCURRENCY.value))
    except ValueError:
        mode = LoadMode.CONCURRENCY
    return ControlState(
        state=RunState.RUNNING,
        mode=mode,
        target_concurrency=round(_number(cfg.get("concurrency"))),
        target_rate=_number(cfg.get("rate")),
    )


def _number(value: Any) -> float:
    """A setting from a file: anything that is not a finite number counts as 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return 0.0
    return v if v == v and abs(v) != float("inf") else 0.0


def apply_event(control: ControlState, event: ControlEvent) -> ControlState:
    """The control state after one event (what the live controller's state was when it emitted it)."""
    kind, value = event.kind, event.value
    changes: dict[str, Any] = {}
    if kind is EventKind.CONCURRENCY and value is not None:
        changes = {"mode": LoadMode.CONCURRENCY, "target_concurrency": round(value)}
    elif kind is EventKind.RATE and value is not None:
        changes = {"mode": LoadMode.RATE, "target_rate": value}
    elif kind is EventKind.PAUSE:
        changes = {"state": RunState.PAUSED}
    elif kind in (EventKind.RESUME, EventKind.START):
        changes = {"state": RunState.RUNNING}
    elif kind is EventKind.STOP:
        changes = {"state": RunState.STOPPED}
    return replace(control, **changes) if changes else control

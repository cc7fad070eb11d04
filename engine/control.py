"""What a front end (TUI, headless CLI, sweep, re-drive) may ask of a session, and what sinks receive.

The TUI depends only on these protocols, so the same panels run over a live controller or a replay player.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from engine.records import ControlEvent, RequestRecord, StreamProgress, TelemetrySample
from engine.snapshot import EventView, LoadMode, RunState, Snapshot

SnapshotCallback = Callable[[Snapshot], None]


@dataclass(frozen=True, slots=True)
class SessionMeta:
    """Labels for the header; fixed for a session."""

    endpoint: str = ""
    model: str = ""
    workload: str = ""
    source: str = "live"  # "live" or "replay"
    trace: bool = False  # a trace replay: rate mode's target is the trace speed (1 = as recorded), not req/s


@dataclass(frozen=True, slots=True)
class ControlState:
    """The controller's (or the player's) control state at one tick, handed to the aggregator."""

    state: RunState = RunState.STARTING
    mode: LoadMode = LoadMode.CONCURRENCY
    target_concurrency: int = 0
    target_rate: float = 0.0
    recording: str | None = None
    message: str = ""


@runtime_checkable
class SessionSink(Protocol):
    """Receives every fact of a session in time order (the recorder is one). Called from the controller thread;
    a sink must never block for long and must never raise into the engine."""

    def on_records(self, records: Sequence[RequestRecord]) -> None: ...
    def on_progress(self, progress: Sequence[StreamProgress]) -> None: ...
    def on_telemetry(self, samples: Sequence[TelemetrySample]) -> None: ...
    def on_event(self, event: ControlEvent) -> None: ...
    def on_snapshot(self, snapshot: Snapshot) -> None: ...
    def close(self) -> None: ...


class SnapshotSource(Protocol):
    """Anything that publishes snapshots: the live controller or the replay player.

    ``subscribe`` callbacks run on the source's own thread; a UI must hop to its own loop
    (Textual: ``app.call_from_thread`` or ``post_message``) and never block there."""

    @property
    def latest(self) -> Snapshot: ...
    def subscribe(self, callback: SnapshotCallback) -> None: ...


class LoadControl(SnapshotSource, Protocol):
    """The live controller's steering surface. Every method is thread-safe and returns at once; methods that
    the operator triggers return a one-line message for the UI's event log or notification."""

    def set_concurrency(self, n: int) -> None: ...
    def set_rate(self, r: float) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def stop(self) -> None: ...
    def step_power_cap(self, delta_w: float) -> str: ...  # "no GPU power control: ..." when unavailable
    def start_recording(self, path: str | None = None) -> str: ...  # returns the file path (or why not)
    def stop_recording(self) -> str: ...
    @property
    def power_cap_changed(self) -> bool: ...
    def close(self, keep_power_caps: bool = False) -> None: ...  # stops workers, restores caps unless kept


@dataclass(frozen=True, slots=True)
class Backfill:
    """A recording's history up to a position, recomputed from its facts: what a dashboard needs after a seek.

    ``snapshots``: one every ``step_s`` over the chart span before the position (their ``new_events`` are
    empty: the events are in ``events``); ``events``: every event from the start up to the position, once."""

    until_s: float
    snapshots: tuple[Snapshot, ...]
    events: tuple[EventView, ...]


class ReplayControl(SnapshotSource, Protocol):
    """The replay player's surface: the same snapshots, different controls."""

    @property
    def duration_s(self) -> float: ...
    @property
    def position_s(self) -> float: ...
    @property
    def playing(self) -> bool: ...
    @property
    def speed(self) -> float: ...  # 0 = as fast as possible
    def markers(self) -> Sequence[tuple[float, str]]: ...  # (t_s, event kind) for the timeline bar
    def toggle(self) -> None: ...
    def seek(self, delta_s: float) -> None: ...
    def seek_to(self, t_s: float) -> None: ...
    def set_speed(self, speed: float) -> None: ...
    def backfill(self, until_s: float, span_s: float, step_s: float) -> Backfill: ...  # any thread; may take 100s of ms
    def close(self) -> None: ...

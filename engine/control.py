"""What a front end (TUI, headless CLI, sweep, re-drive) may ask of a running session, and what sinks receive.

The TUI depends only on these protocols, so the same panels run over a live controller or a replay player.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from engine.records import ControlEvent, RequestRecord, StreamProgress, TelemetrySample
from engine.snapshot import Snapshot

SnapshotCallback = Callable[[Snapshot], None]


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
    """Anything that publishes snapshots: the live controller or the replay player."""

    @property
    def latest(self) -> Snapshot: ...
    def subscribe(self, callback: SnapshotCallback) -> None: ...


class LoadControl(SnapshotSource, Protocol):
    """The live controller's steering surface. All methods are thread-safe and return at once."""

    def set_concurrency(self, n: int) -> None: ...
    def set_rate(self, r: float) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def stop(self) -> None: ...

"""Per-worker health of a distributed run (``--ray``): where each worker runs, its clock offset, how its loop and
its batches are doing, and whether it was lost. Built by the Ray pool from the batches it relays: ``snapshot`` gives
the whole run (the JSON report), ``view`` the last few seconds (the dashboard, through the aggregator)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.load.clock_sync import ClockOffset
from engine.records import StreamProgress
from engine.snapshot import WorkerView

RECENT_NS = 3_000_000_000  # the dashboard's figures cover the batches of the last 3 s (~30 per worker)

WorkerState = Literal["starting", "running", "done", "lost"]


class WorkerHealth(BaseModel):
    """One worker, as the JSON report and the summary show it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    worker: int
    host: str = ""
    node: str = Field(default="", description="the Ray node id (first 12 hex digits)")
    state: WorkerState = "starting"
    clock_offset_ms: float | None = Field(default=None, description="worker clock - controller clock")
    clock_uncertainty_ms: float | None = Field(default=None, description="± half the best ping round trip")
    same_clock: bool | None = Field(default=None, description="same kernel as the controller: offset exactly 0")
    ping_rtt_ms: float | None = None
    loop_lag_ms: float = Field(default=0.0, description="worst event-loop lag the worker reported")
    send_lag_ms: float | None = Field(default=None, description="worst delay from a batch's stamp to the controller")
    records: int = 0
    records_per_s: float = 0.0
    in_flight: int = 0
    lost_requests: int = Field(default=0, description="in-flight at its last report when it was lost")
    lost_reason: str = ""

    def line(self) -> str:
        """One compact line: ``w1 host done: clock +0.120 ± 0.300 ms, loop lag 2 ms, send lag 9 ms, 120.0 rec/s``."""
        if self.same_clock:
            offset = f"shared (ping {self.ping_rtt_ms or 0:.1f} ms)"
        elif self.clock_offset_ms is None:
            offset = "not measured"
        else:
            offset = f"{self.clock_offset_ms:+.3f} ± {self.clock_uncertainty_ms or 0:.3f} ms"
        send = "-" if self.send_lag_ms is None else f"{self.send_lag_ms:.0f}"
        lost = f", {self.lost_requests} lost ({self.lost_reason})" if self.state == "lost" else ""
        return (f"w{self.worker} {self.host or '?'} {self.state}: clock {offset}, loop lag {self.loop_lag_ms:.0f} "
                f"ms, send lag {send} ms, {self.records_per_s:.1f} rec/s{lost}")


@dataclass(slots=True)
class HealthTracker:
    """Mutable per-worker figures, updated on the pool's receiving thread."""

    worker: int
    host: str = ""
    node: str = ""
    state: WorkerState = "starting"
    clock: ClockOffset | None = None
    loop_lag_ms: float = 0.0
    send_lag_ms: float | None = None
    records: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    in_flight: int = 0
    unrecorded: int = 0  # open at its latest report and not among the records received: a loss's worker_lost
    lost_requests: int = 0
    lost_reason: str = ""
    # (received, records, loop lag, send lag or -1) per batch of the last RECENT_NS
    recent: deque[tuple[int, int, float, float]] = field(default_factory=lambda: deque(maxlen=1024))

    def on_batch(self, records: int, progress: StreamProgress | None, received_ns: int,
                 unrecorded: int | None = None) -> None:
        """``progress`` already on the controller's clock; ``unrecorded`` as ``Batch.unrecorded``."""
        self.records += records
        if self.first_ns is None:
            self.first_ns = received_ns
        self.last_ns = received_ns
        loop_lag, send_lag = 0.0, -1.0
        if progress is not None:
            self.in_flight = progress.in_flight
            self.unrecorded = progress.in_flight if unrecorded is None else unrecorded
            loop_lag = progress.loop_lag_ms
            self.loop_lag_ms = max(self.loop_lag_ms, loop_lag)
            send_lag = max(0.0, (received_ns - progress.t_ns) / 1e6)
            self.send_lag_ms = send_lag if self.send_lag_ms is None else max(self.send_lag_ms, send_lag)
        self.recent.append((received_ns, records, loop_lag, send_lag))

    def _where(self) -> dict[str, Any]:
        """The fields the run's summary and the live view share: who, where, in what state, on what clock."""
        clock = self.clock
        return {"worker": self.worker, "host": self.host, "node": self.node[:12], "state": self.state,
                "clock_offset_ms": None if clock is None else clock.offset_ns / 1e6,
                "clock_uncertainty_ms": None if clock is None else clock.uncertainty_ns / 1e6}

    def view(self, now_ns: int) -> WorkerView:
        """The last ``RECENT_NS``: worst lags and the record rate, so a lag spike at the start does not stay on
        the dashboard for the whole run."""
        recent = self.recent
        while recent and recent[0][0] <= now_ns - RECENT_NS:
            recent.popleft()
        send = [lag for _, _, _, lag in recent if lag >= 0]
        span_s = min(RECENT_NS, now_ns - self.first_ns) / 1e9 if self.first_ns is not None else 0.0
        return WorkerView(
            **self._where(),
            loop_lag_ms=max((lag for _, _, lag, _ in recent), default=0.0),
            send_lag_ms=max(send, default=None),
            records_per_s=sum(n for _, n, _, _ in recent) / span_s if span_s > 0 else 0.0,
            in_flight=0 if self.state == "lost" else self.in_flight,
            lost_requests=self.lost_requests,
        )

    def snapshot(self) -> WorkerHealth:
        span = (self.last_ns - self.first_ns) / 1e9 if self.first_ns is not None and self.last_ns else 0.0
        clock = self.clock
        return WorkerHealth(
            **self._where(),
            same_clock=None if clock is None else clock.same_clock,
            ping_rtt_ms=None if clock is None else clock.best_rtt_ns / 1e6,
            loop_lag_ms=round(self.loop_lag_ms, 3),
            send_lag_ms=None if self.send_lag_ms is None else round(self.send_lag_ms, 3),
            records=self.records,
            records_per_s=round(self.records / span, 3) if span > 0 else 0.0,
            in_flight=self.in_flight,
            lost_requests=self.lost_requests,
            lost_reason=self.lost_reason,
        )

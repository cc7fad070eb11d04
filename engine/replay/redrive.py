"""Re-drive: play a recording's control timeline (load steps, pauses, optionally power-cap steps) against a live
endpoint with a live Controller, recording a new session, so two servers (or two builds, or two settings of one
server) are measured under exactly the same operator actions and can be compared with ``wattload report A B``.

Times are relative to each session's start (the START event), so the new session's phases line up with the old
one's. Power caps are absolute in the recording; they are re-applied as steps from the cap read back live.

A recording made from a trace (``run --trace``) re-drives the same trace on the same schedule: its fingerprint
names the file, window and speed, the file must still hash to the recorded sha256 (else the two sessions did not
send the same requests), and the recorded speed changes (RATE events) are repeated like any load step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydantic import SecretStr, ValidationError

from engine.config import RunConfig
from engine.control import LoadControl
from engine.records import ControlEvent, EventKind
from engine.storage.reader import Recording
from engine.storage.store import RecordingError
from engine.workload.fingerprint import file_sha256

STEP_KINDS = frozenset({EventKind.CONCURRENCY, EventKind.RATE, EventKind.PAUSE, EventKind.RESUME})
START_WAIT_S = 60.0


class DrivenSession(LoadControl, Protocol):
    """What re-drive needs of a live session: the steering surface plus start, wait and the session clock."""

    @property
    def t0_ns(self) -> int | None: ...
    def start(self) -> None: ...
    def wait(self, timeout: float | None = None) -> bool: ...


@dataclass(frozen=True)
class Step:
    t_s: float
    event: ControlEvent

    def describe(self) -> str:
        e = self.event
        match e.kind:
            case EventKind.CONCURRENCY:
                return f"concurrency -> {e.value:g}"
            case EventKind.RATE:
                return e.message or f"rate -> {e.value:g} req/s"  # a trace's speed says so in its message
            case EventKind.POWER_CAP:
                return f"power cap -> {e.value:g} W"
            case _:
                return e.kind.value


def control_timeline(rec: Recording, *, with_power: bool = False) -> tuple[list[Step], float]:
    """The operator actions to repeat, and when the recorded session stopped (s since its start)."""
    kinds = STEP_KINDS | ({EventKind.POWER_CAP} if with_power else set())
    end = rec.duration_s
    steps: list[Step] = []
    for _, e in sorted(rec.events(), key=lambda te: te[1].t_ns):
        t = e.t_ns / 1e9
        if e.kind is EventKind.STOP and t >= 0:
            end = min(end, t)
            break
        if e.kind in kinds and (e.value is not None or e.kind in (EventKind.PAUSE, EventKind.RESUME)):
            steps.append(Step(max(0.0, t), e))
    return steps, end


def redrive_config(rec: Recording, base_url: str, model: str, api_key: str | None, duration_s: float) -> RunConfig:
    """The recorded settings against a new endpoint; stop conditions replaced by the recorded length."""
    recorded = {k: v for k, v in rec.meta.config.items() if k in RunConfig.model_fields}
    recorded.update(base_url=base_url, model=model, duration_s=max(0.1, duration_s), max_requests=None)
    try:
        return RunConfig(**recorded, api_key=None if api_key is None else SecretStr(api_key))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RecordingError(f"{rec.path}: its settings cannot drive this version ({where}: {first['msg']})") from None


@dataclass(frozen=True)
class RecordedTrace:
    """The trace a recording replayed: the file (checked), its window and the speed the session started at."""

    path: str
    speed: float
    window_s: tuple[float, float] | None


def recorded_trace(rec: Recording, path: str | None = None) -> RecordedTrace | None:
    """The trace a recording replayed, to replay again on the same schedule (None: the recording is not of a
    trace). ``path`` replaces the recorded location (a moved file); the file must hash to the recorded sha256."""
    workload = rec.meta.workload
    trace = workload.get("trace") if isinstance(workload, dict) else None
    if not isinstance(trace, dict):
        if path:
            raise RecordingError(f"{rec.path}: not a trace recording, so --trace does not apply")
        return None
    where = path or str(trace.get("path", ""))
    try:
        digest = file_sha256(where)
    except OSError as exc:
        raise RecordingError(f"{rec.path} replayed the trace {where}, which cannot be read "
                             f"({exc.strerror or exc}); give its location with --trace FILE") from None  # fmt: skip
    if digest != trace.get("sha256"):
        raise RecordingError(f"{where} is not the trace {rec.path} replayed (sha256 {digest[:12]}, recorded "
                             f"{str(trace.get('sha256', ''))[:12]}); give the recorded file with --trace FILE")
    window = trace.get("window_s")
    window_s = None
    if isinstance(window, list | tuple) and len(window) == 2:
        window_s = (float(window[0]), math.inf if window[1] is None else float(window[1]))
    speed = workload.get("speed", 1.0) if isinstance(workload, dict) else 1.0
    return RecordedTrace(where, float(speed) if isinstance(speed, int | float) else 1.0, window_s)


def apply_step(controller: DrivenSession, step: Step) -> str:
    """Do one recorded action on the live controller; returns a line for the log."""
    e = step.event
    if e.kind is EventKind.CONCURRENCY and e.value is not None:
        controller.set_concurrency(round(e.value))
    elif e.kind is EventKind.RATE and e.value is not None:
        controller.set_rate(e.value)
    elif e.kind is EventKind.PAUSE:
        controller.pause()
    elif e.kind is EventKind.RESUME:
        controller.resume()
    elif e.kind is EventKind.POWER_CAP and e.value is not None:
        current = _current_cap(controller, e.gpu_index)
        if current is None:
            return f"power cap -> {e.value:g} W skipped: no power limit reading on this machine"
        return controller.step_power_cap(e.value - current)
    return step.describe()


def _current_cap(controller: DrivenSession, gpu_index: int | None) -> float | None:
    gpus = controller.latest.gpu.gpus
    limits = [g.power_limit_w for g in gpus if gpu_index is None or g.index == gpu_index]
    known = [w for w in limits if w is not None]
    return known[0] if known else None


def redrive(
    rec: Recording,
    controller: DrivenSession,
    *,
    record_path: str | Path | None,
    with_power: bool,
    log: Callable[[str], None],
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Start ``controller`` (whose ``recorder_factory`` is set), record, and repeat the timeline on the
    session's own clock; stops at the recorded stop time. Returns the new recording's path."""
    steps, end_s = control_timeline(rec, with_power=with_power)
    path = controller.start_recording(None if record_path is None else str(record_path))
    controller.start()
    deadline = time.perf_counter() + START_WAIT_S
    while controller.t0_ns is None:
        if time.perf_counter() > deadline or controller.wait(0):
            raise RecordingError(controller.latest.message or "the live session did not start")
        sleep(0.02)
    t0 = controller.t0_ns
    log(f"re-driving {len(steps)} step{'s' if len(steps) != 1 else ''} over {end_s:.1f} s; recording to {path}")
    for step in steps:
        wait = step.t_s - (time.perf_counter_ns() - t0) / 1e9
        if wait > 0 and controller.wait(wait):
            break  # the session ended early (failed or stopped)
        log(f"{step.t_s:8.1f} s  {apply_step(controller, step)}")
    remaining = end_s - (time.perf_counter_ns() - t0) / 1e9
    if remaining > 0:
        controller.wait(remaining)
    controller.stop()
    controller.wait(30)
    return path

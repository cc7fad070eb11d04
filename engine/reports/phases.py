"""Splitting a session into phases at its control events, and the steady-state part of each phase.

A phase is a stretch of constant operating point: it starts at a concurrency or rate step, a power-cap change, a
pause or a resume, and ends at the next one (or at the STOP event, or the end of the recording). Events closer
together than ``MERGE_S`` are one change (a cap set on eight GPUs at once is one step).

Steady state (the rule the reports print): after a change, queues, batches and GPU clocks take time to settle,
so each phase's figures skip its first ``min(window_s, 20% of the phase)`` seconds. The window bound keeps a long
phase's warm-up at what the live panels need to be steady; the 20% bound keeps something of a short phase.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from engine.control import ControlState
from engine.records import ControlEvent, EventKind
from engine.replay.timeline import apply_event
from engine.snapshot import LoadMode, RunState

MERGE_S = 0.05
WARMUP_FRACTION = 0.2
WARMUP_RULE = "each phase skips its first min(window, 20% of the phase) seconds (warm-up after the change)"
SPLITTING = frozenset({EventKind.CONCURRENCY, EventKind.RATE, EventKind.POWER_CAP, EventKind.PAUSE,
                       EventKind.RESUME})


@dataclass(frozen=True)
class Phase:
    index: int
    start_s: float
    end_s: float
    control: ControlState
    caps_w: Mapping[int | None, float] = field(default_factory=dict)  # GPU index (None = all) -> cap in watts
    steady_from_s: float = 0.0

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def steady_s(self) -> float:
        return self.end_s - self.steady_from_s

    @property
    def paused(self) -> bool:
        return self.control.state is RunState.PAUSED

    @property
    def power_cap_w(self) -> float | None:
        """The cap when every GPU shares one, else None (the label lists them)."""
        values = set(self.caps_w.values())
        return values.pop() if len(values) == 1 else None

    @property
    def label(self) -> str:
        c = self.control
        load = f"c={c.target_concurrency}" if c.mode is LoadMode.CONCURRENCY else f"rate {c.target_rate:g}/s"
        parts = ["paused" if self.paused else load]
        if self.caps_w:
            cap = self.power_cap_w
            if cap is not None:
                parts.append(f"cap {cap:g} W")
            else:
                parts.append("caps " + ", ".join(
                    f"{'all' if g is None else f'GPU{g}'} {w:g} W" for g, w in sorted(self.caps_w.items(),
                                                                                       key=lambda kv: (kv[0] or -1))))
        return " · ".join(parts)


def warmup_s(duration_s: float, window_s: float) -> float:
    return max(0.0, min(window_s, WARMUP_FRACTION * duration_s))


def split_phases(
    events: Iterable[ControlEvent],
    *,
    duration_s: float,
    initial: ControlState,
    window_s: float,
    initial_caps_w: Mapping[int, float] | None = None,
    start_s: float = 0.0,
) -> list[Phase]:
    """Phases of a session from its events (stamps in ns since t0). Events after STOP (cap restores at exit)
    do not split; events at or before t0 (a recording armed before the start) set the first phase's state.
    ``start_s``: where the recording begins (``r`` partway through); the first phase starts there."""
    ordered = sorted(events, key=lambda e: e.t_ns)
    end = next((e.t_ns / 1e9 for e in ordered if e.kind is EventKind.STOP and 0 <= e.t_ns / 1e9 < duration_s),
               duration_s)
    control = initial
    caps: dict[int | None, float] = {k: v for k, v in (initial_caps_w or {}).items()}
    points: list[tuple[float, ControlState, dict[int | None, float]]] = [(start_s, control, dict(caps))]
    for e in ordered:
        t = e.t_ns / 1e9
        if t >= end:
            break
        control = apply_event(control, e)
        if e.kind is EventKind.POWER_CAP and e.value is not None:
            caps = _with_cap(caps, e)
        if e.kind not in SPLITTING and t > MERGE_S:
            continue
        if t - points[-1][0] < MERGE_S:  # the same change (or one at t0): it sets the current phase's state
            points[-1] = (points[-1][0], control, dict(caps))
        elif _same_point(points[-1][1], points[-1][2], control, caps):
            continue  # a change to what it already was (a cap that "stays at", c=8 -> 8): the same phase goes on
        else:
            points.append((t, control, dict(caps)))
    phases: list[Phase] = []
    for i, (t, state, cap) in enumerate(points):
        stop = points[i + 1][0] if i + 1 < len(points) else end
        if stop <= t:
            continue
        phases.append(Phase(index=len(phases) + 1, start_s=t, end_s=stop, control=state, caps_w=cap,
                            steady_from_s=t + warmup_s(stop - t, window_s)))
    return phases


def _same_point(a: ControlState, caps_a: Mapping[int | None, float], b: ControlState,
                caps_b: Mapping[int | None, float]) -> bool:
    """Two operating points a report cannot tell apart (so they would print the same label)."""
    load_a = a.target_concurrency if a.mode is LoadMode.CONCURRENCY else a.target_rate
    load_b = b.target_concurrency if b.mode is LoadMode.CONCURRENCY else b.target_rate
    return (a.mode, load_a, a.state is RunState.PAUSED, dict(caps_a)) == (
        b.mode, load_b, b.state is RunState.PAUSED, dict(caps_b))


def _with_cap(caps: dict[int | None, float], e: ControlEvent) -> dict[int | None, float]:
    value = e.readback if e.readback is not None else e.value
    assert value is not None
    if e.gpu_index is None:
        keys: list[int | None] = [k for k in caps if k is not None] or [None]
        return dict.fromkeys(keys, value)
    out: dict[int | None, float] = {k: v for k, v in caps.items() if k is not None}
    if None in caps:  # a cap set on all GPUs before we knew their indices
        out.setdefault(e.gpu_index, caps[None])
    out[e.gpu_index] = value
    return out

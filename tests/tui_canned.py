"""Canned snapshot sources for the TUI tests: fixed, deterministic Snapshots (no clock, no randomness).

These stand in for the engine only where the tests need pixel-stable screens (snapshot tests) or must check
which control method a key calls; the behaviour against the real engine is tested in test_tui_live.py.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from engine.control import Backfill
from engine.snapshot import (
    ClientHealth,
    CostStats,
    EnergyStats,
    EventView,
    GpuReading,
    GpuStats,
    LoadMode,
    Percentiles,
    RunState,
    Snapshot,
    WindowStats,
)

TICK_S = 0.25


def _pct(base: float, spread: float, count: int) -> Percentiles:
    return Percentiles(
        count=count, p50=base, p90=base * (1 + spread), p95=base * (1 + 1.5 * spread), p99=base * (1 + 3 * spread),
        mean=base * 1.1, max=base * (1 + 4 * spread),
    )  # fmt: skip


def session_snapshot(seq: int, *, gpu: bool = True, errors: bool = False, estimated: bool = False) -> Snapshot:
    """Tick ``seq`` of a scripted 4-minute session: 8 streams, 16 from 60 s, cap 400 W from 120 s, 24 from 180 s."""
    t = seq * TICK_S
    target = 8 if t < 60 else 16 if t < 180 else 24
    cap = 700.0 if t < 120 else 400.0
    wobble = 1 + 0.06 * math.sin(t / 3.0) + 0.03 * math.sin(t * 1.7)
    capped = 0.82 if cap < 700 else 1.0
    out_tps = min(t / 5.0, 1.0) * (180 * target**0.8) * wobble * capped
    ttft = 40 + 6 * target * (1.3 if cap < 700 else 1.0) * wobble
    watts = min(cap, 180 + 28 * target**0.9 * wobble)
    completed = int(out_tps * t / 128) if t > 0 else 0
    n_err = int(t // 7) if errors else 0
    window = WindowStats(
        span_s=min(t, 10.0), requests=int(out_tps * 10 / 128), errors=min(n_err, 3),
        errors_by_class={"http_5xx": min(n_err, 3)} if n_err else {}, error_rate=0.02 if n_err else 0.0,
        requests_per_s=out_tps / 128, input_tokens=0, output_tokens=int(out_tps * 10),
        input_tokens_per_s=out_tps * 1.6, output_tokens_per_s=out_tps,
        ttft=_pct(ttft, 0.4, 500), itl=_pct(11.5 * capped ** -1, 0.3, 20000), tpot=_pct(12.0, 0.25, 500),
        e2e=_pct(ttft + 12 * 127, 0.2, 500),
    )  # fmt: skip
    total = WindowStats(
        span_s=t, requests=completed, errors=n_err,
        errors_by_class={"http_5xx": n_err - n_err // 3, "timeout": n_err // 3} if n_err else {},
        error_rate=0.01 if n_err else 0.0, requests_per_s=completed / t if t else 0.0,
        input_tokens=completed * 205, output_tokens=completed * 128,
        ttft=_pct(ttft * 0.9, 0.5, completed), itl=_pct(11.0, 0.3, completed * 127),
        tpot=_pct(11.8, 0.25, completed), e2e=_pct(ttft + 1500, 0.2, completed),
    )  # fmt: skip
    if gpu:
        gpu_stats = GpuStats(
            available=True, source="sim", energy_source="counter", watts=watts, power_limit_w=cap,
            gpus=(
                GpuReading(
                    index=0, name="Simulated H100", watts=watts, power_limit_w=cap, enforced_limit_w=cap,
                    min_limit_w=200, max_limit_w=700, default_limit_w=700, sm_clock_mhz=1980 if cap == 700 else 1620,
                    power_cap_binding=cap < 700 and watts >= cap - 1, temperature_c=round(30 + watts * 0.06),
                    util_gpu_pct=min(100, 40 + 3 * target), mem_used_mib=46_182 + 512 * target, mem_total_mib=81_559,
                ),
            ),
            window=EnergyStats(energy_j=watts * 10, mean_watts=watts, joules_per_output_token=watts / out_tps if out_tps
                               else None, kwh_per_million_output_tokens=watts / out_tps / 3.6 if out_tps else None,
                               steady=(t % 60) > 12),
            total=EnergyStats(energy_j=watts * t, mean_watts=watts, steady=True),
        )  # fmt: skip
        cost = CostStats(
            profile="h100-sxm-rental", dollars_per_hour=2.49,
            window_per_million_output=2.49 / 3600 / out_tps * 1e6 if out_tps else None,
            window_per_million_total=2.49 / 3600 / (out_tps * 2.6) * 1e6 if out_tps else None,
            total_per_million_output=None, total_per_million_total=None, total_dollars=2.49 * t / 3600,
        )  # fmt: skip
    else:
        gpu_stats = GpuStats(available=False, message="no GPU telemetry: NVML library not found")
        cost = CostStats()
    events: list[EventView] = []
    for at, kind, message in SCRIPT:
        if t - TICK_S < at <= t:
            events.append(EventView(t_s=at, kind=kind, message=message))
    if errors and n_err and seq % 28 == 0:
        events.append(EventView(t_s=t, kind="error", message="http_5xx: 503 Service Unavailable (x4)"))
    return Snapshot(
        seq=seq, t_s=t, endpoint="http://127.0.0.1:8000/v1", model="sim-llama-8b", workload="chat",
        state=RunState.RUNNING, mode=LoadMode.CONCURRENCY, target_concurrency=target, in_flight=target,
        window=window, total=total, tokens_estimated=estimated, gpu=gpu_stats, cost=cost, new_events=tuple(events),
        client=ClientHealth(loop_lag_ms=2.0),
    )  # fmt: skip


SCRIPT: tuple[tuple[float, str, str], ...] = (
    (0.25, "start", "session started: concurrency 8"),
    (60.0, "concurrency", "concurrency 8 → 16"),
    (120.0, "power_cap", "power cap 700 W → 400 W (read back 400 W)"),
    (180.0, "concurrency", "concurrency 16 → 24"),
)


def session(ticks: int, **kwargs: bool) -> list[Snapshot]:
    return [session_snapshot(i, **kwargs) for i in range(1, ticks + 1)]


class CannedControl:
    """A LoadControl over canned snapshots that records every call it receives."""

    def __init__(self, history: Sequence[Snapshot] = (), *, caps_message: str = "power cap 675 W (read back 675 W)"):
        self.history = list(history)
        self._latest = self.history[-1] if self.history else Snapshot()
        self.callbacks: list[Callable[[Snapshot], None]] = []
        self.calls: list[tuple] = []
        self.caps_message = caps_message
        self._caps_changed = False
        self.recording: str | None = None

    @property
    def latest(self) -> Snapshot:
        return self._latest

    def subscribe(self, callback: Callable[[Snapshot], None]) -> None:
        """Hands over the whole canned history at once (as a source would have, tick by tick)."""
        self.callbacks.append(callback)
        for snapshot in self.history:
            callback(snapshot)

    def push(self, snapshot: Snapshot) -> None:
        self._latest = snapshot
        for callback in self.callbacks:
            callback(snapshot)

    def set_concurrency(self, n: int) -> None:
        self.calls.append(("set_concurrency", n))

    def set_rate(self, r: float) -> None:
        self.calls.append(("set_rate", r))

    def pause(self) -> None:
        self.calls.append(("pause",))

    def resume(self) -> None:
        self.calls.append(("resume",))

    def stop(self) -> None:
        self.calls.append(("stop",))

    def step_power_cap(self, delta_w: float) -> str:
        self.calls.append(("step_power_cap", delta_w))
        self._caps_changed = True
        return self.caps_message

    def start_recording(self, path: str | None = None) -> str:
        self.calls.append(("start_recording",))
        self.recording = "/tmp/wattload-test.wlrec"
        return f"recording to {self.recording}"

    def stop_recording(self) -> str:
        self.calls.append(("stop_recording",))
        self.recording = None
        return "recording saved"

    @property
    def power_cap_changed(self) -> bool:
        return self._caps_changed

    def close(self, keep_power_caps: bool = False) -> None:
        self.calls.append(("close", keep_power_caps))


class CannedReplay:
    """A ReplayControl over canned snapshots that records every call it receives."""

    def __init__(self, history: Sequence[Snapshot]):
        self.history = [s.model_copy(update={"source": "replay"}) for s in history]
        self._latest = self.history[-1]
        self.calls: list[tuple] = []
        self._playing = False
        self._speed = 1.0
        self._position = self._latest.t_s
        self.callbacks: list[Callable[[Snapshot], None]] = []

    @property
    def latest(self) -> Snapshot:
        return self._latest

    def subscribe(self, callback: Callable[[Snapshot], None]) -> None:
        self.callbacks.append(callback)
        for snapshot in self.history:
            callback(snapshot)

    @property
    def duration_s(self) -> float:
        return 600.0

    @property
    def position_s(self) -> float:
        return self._position

    @property
    def playing(self) -> bool:
        return self._playing

    @property
    def speed(self) -> float:
        return self._speed

    def markers(self) -> Sequence[tuple[float, str]]:
        return [(at, kind) for at, kind, _ in SCRIPT if kind != "start"]

    def toggle(self) -> None:
        self.calls.append(("toggle",))
        self._playing = not self._playing

    def seek(self, delta_s: float) -> None:
        self.calls.append(("seek", delta_s))
        self._position = max(0.0, min(self.duration_s, self._position + delta_s))

    def seek_to(self, t_s: float) -> None:
        self.calls.append(("seek_to", t_s))
        self._position = t_s

    def set_speed(self, speed: float) -> None:
        self.calls.append(("set_speed", speed))
        self._speed = speed

    def backfill(self, until_s: float, span_s: float, step_s: float) -> Backfill:
        """What the real player recomputes: snapshots over the span before ``until_s``, every event up to it."""
        self.calls.append(("backfill", until_s))
        before = [s for s in self.history if s.t_s < until_s - 1e-9]
        snaps = tuple(s.model_copy(update={"new_events": ()}) for s in before if s.t_s > until_s - span_s)
        events = tuple(e for s in self.history for e in s.new_events if e.t_s <= until_s)
        return Backfill(until_s=until_s, snapshots=snaps, events=events)

    def close(self) -> None:
        self.calls.append(("close",))


def screen_text(app: Any) -> str:
    """What the terminal shows, as plain text."""
    return "\n".join("".join(seg.text for seg in strip) for strip in app.screen._compositor.render_strips())


async def until(pilot: Any, predicate: Callable[[], bool], timeout: float = 5.0, what: str = "the condition",
                step: float = 0.02) -> None:
    """Let the app run until ``predicate`` holds; fail (never hang) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        await pilot.pause(step)

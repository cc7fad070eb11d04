"""The simulated GPU: a power level that changes only at step boundaries, integrated exactly into energy.

Power is piecewise constant over ``time.perf_counter_ns()`` time, so the energy counter is an exact integral of the
reported power (the ground truth for energy tests), and the 1 s average is the counter's difference over the last
second. A level change is never placed before the latest read, so a counter once read can never go back.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from dataclasses import dataclass

from engine.sim.model import SimConfig, StepCost

_NS = 1_000_000_000
_AVG_WINDOW_NS = _NS  # NVML's power reading on Hopper is a 1 s average
_KEEP_NS = 2 * _NS
_PRUNE_AT = 4096


@dataclass(frozen=True, slots=True)
class Level:
    """What the GPU is doing from one change to the next."""

    watts: float
    busy: float  # 1.0 while a step runs (util_gpu), 0.0 idle
    mem_busy: float  # memory-system busy fraction (util_mem)
    sm_clock_mhz: int
    binding: bool  # the power cap is limiting the clock


class PowerTimeline:
    """Piecewise-constant power with exact running integrals of energy, busy time and memory-busy time."""

    def __init__(self, t0_ns: int, level: Level) -> None:
        self.t0_ns = t0_ns
        # checkpoint i: level i starts at _t[i], with cumulative integrals at that instant
        self._t: list[int] = [t0_ns]
        self._energy: list[float] = [0.0]
        self._busy: list[float] = [0.0]
        self._mem: list[float] = [0.0]
        self._levels: list[Level] = [level]
        self._last_read_ns = t0_ns
        self._prune_at = _PRUNE_AT

    @property
    def level(self) -> Level:
        return self._levels[-1]

    def set(self, t_ns: int, level: Level) -> int:
        """Switch to ``level`` at ``t_ns`` (moved forward to the latest read or change); returns the time used."""
        t = max(t_ns, self._last_read_ns, self._t[-1])
        prev = self._levels[-1]
        if level == prev:
            return t
        dt = (t - self._t[-1]) / _NS
        self._t.append(t)
        self._energy.append(self._energy[-1] + prev.watts * dt)
        self._busy.append(self._busy[-1] + prev.busy * dt)
        self._mem.append(self._mem[-1] + prev.mem_busy * dt)
        self._levels.append(level)
        if len(self._t) > self._prune_at:
            self._prune(t - _KEEP_NS)
            self._prune_at = max(_PRUNE_AT, 2 * len(self._t))  # amortised: prefix deletes stay O(1) per change
        return t

    def _prune(self, before_ns: int) -> None:
        keep_from = max(0, bisect_right(self._t, before_ns) - 1)
        if keep_from:
            for series in (self._t, self._energy, self._busy, self._mem, self._levels):
                del series[:keep_from]

    def _at(self, t_ns: int) -> tuple[float, float, float]:
        """Cumulative (energy J, busy s, mem-busy s) at ``t_ns``, which may lie anywhere in the kept history."""
        i = max(0, bisect_right(self._t, t_ns) - 1)
        lv = self._levels[i]
        dt = max(0, t_ns - self._t[i]) / _NS
        return self._energy[i] + lv.watts * dt, self._busy[i] + lv.busy * dt, self._mem[i] + lv.mem_busy * dt

    def energy_j(self, now_ns: int) -> float:
        """Energy since start at ``now_ns``; marks ``now_ns`` as read so later changes cannot rewrite it."""
        self._last_read_ns = max(self._last_read_ns, now_ns)
        return self._at(now_ns)[0]

    def window(self, now_ns: int, span_ns: int = _AVG_WINDOW_NS) -> tuple[float, float, float]:
        """Mean (watts, busy fraction, mem-busy fraction) over the last ``span_ns`` (shorter just after start)."""
        self._last_read_ns = max(self._last_read_ns, now_ns)
        start = max(self.t0_ns, now_ns - span_ns, self._t[0])
        span = (now_ns - start) / _NS
        if span <= 0:
            lv = self.level
            return lv.watts, lv.busy, lv.mem_busy
        e1, b1, m1 = self._at(now_ns)
        e0, b0, m0 = self._at(start)
        return (e1 - e0) / span, (b1 - b0) / span, (m1 - m0) / span


class SimGpu:
    """One simulated H100: power limit, step-driven power level, and an NVML-like reading."""

    UUID = "GPU-00000000-sim0-0000-0000-000000000000"

    def __init__(self, cfg: SimConfig, now_ns: int | None = None) -> None:
        self.cfg = cfg
        self.limit_w = cfg.power_limit_w if cfg.power_limit_w is not None else cfg.default_limit_w
        self._idle = Level(cfg.idle_w, 0.0, 0.0, cfg.idle_clock_mhz, False)
        self.timeline = PowerTimeline(time.perf_counter_ns() if now_ns is None else now_ns, self._idle)
        kv_mib = cfg.kv_capacity_tokens * cfg.kv_bytes_per_token // (1024 * 1024)
        # vLLM preallocates weights + the KV pool (+ activations, CUDA graphs), so used memory is flat under load
        self.mem_used_mib = min(cfg.mem_total_mib, cfg.weights_mib + kv_mib + 1_500)

    def set_limit(self, watts: float) -> float:
        """Clamp to [min, max] and apply from the next step on; returns the enforced limit."""
        self.limit_w = min(self.cfg.max_limit_w, max(self.cfg.min_limit_w, float(watts)))
        return self.limit_w

    def begin_step(self, t_ns: int, cost: StepCost) -> None:
        self.timeline.set(t_ns, Level(cost.watts, 1.0, cost.mem_busy, cost.sm_clock_mhz, cost.binding))

    def go_idle(self, t_ns: int) -> None:
        self.timeline.set(t_ns, self._idle)

    def reading(self, now_ns: int | None = None) -> dict[str, object]:
        """The GET /sim/gpu body (NVML-shaped fields; keep this shape: the sim GPU backend parses it)."""
        now = time.perf_counter_ns() if now_ns is None else now_ns
        cfg = self.cfg
        tl = self.timeline
        energy = tl.energy_j(now)
        avg_w, busy, mem = tl.window(now)
        lv = tl.level
        return {
            "name": cfg.gpu_name,
            "uuid": self.UUID,
            "power_w": round(avg_w, 3),
            "power_instant_w": round(lv.watts, 3),
            "energy_mj": int(energy * 1000.0),
            "sm_clock_mhz": lv.sm_clock_mhz,
            "mem_clock_mhz": cfg.mem_clock_mhz,
            "temperature_c": round(30.0 + 0.06 * avg_w),
            "util_gpu_pct": round(100.0 * busy),
            "util_mem_pct": round(100.0 * mem),
            "mem_used_mib": self.mem_used_mib,
            "mem_total_mib": cfg.mem_total_mib,
            "power_limit_w": self.limit_w,
            "enforced_limit_w": self.limit_w,
            "default_limit_w": cfg.default_limit_w,
            "min_limit_w": cfg.min_limit_w,
            "max_limit_w": cfg.max_limit_w,
            "power_cap_binding": lv.binding,
        }

"""Energy that is true: joules from the GPUs' energy counters, per GPU and in total, and per token.

Every GPU since Volta keeps a monotonic energy counter (mJ). Energy over any span is the counter's difference,
never a sum of power readings: on Hopper ``nvmlDeviceGetPowerUsage`` is a 1 s average that lags a load step, so
integrating it misses ramps. Only where the counter is absent is power integrated (trapezoids over the instant
reading, else the averaged one), and then ``GpuStats.energy_source`` says "integrated". A counter that goes
backwards was reset (driver reload): that interval is integrated from power instead, never negative.

Measured on an H100 (tests/bench/nvml_vs_smi.py, 10 Hz): over a 20 s bf16 matmul load the counter gave
13,988 J, integrated instant power 13,945 J (-0.3 %), integrated 1 s-average power 13,693 J (-2.1 %); over the
first 3 s of the load -1.6 % and -14.5 %. Hence the counter first, and instant power as the fallback.

Each GPU's history is a series of (stamp, cumulative joules); a span's energy is the difference of the series
interpolated at its ends. Watts shown = Δenergy/Δt over the last second.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from engine.records import TelemetrySample
from engine.snapshot import EnergyStats, GpuReading, GpuStats

NS = 1_000_000_000
WATTS_SPAN_NS = NS  # "watts" = energy over the last second / that second
MIN_RETENTION_S = 60.0
J_PER_KWH = 3.6e6


@dataclass
class _Track:
    """One GPU's cumulative-energy series and latest reading."""

    t: list[int] = field(default_factory=list)
    cum_j: list[float] = field(default_factory=list)
    latest: TelemetrySample | None = None
    counter_mj: int | None = None  # last counter value seen
    power_w: float | None = None  # power at the last point (for integration)
    total_j: float = 0.0
    first_t: int | None = None  # stamp of the first point (kept when old points are pruned)
    resets: int = 0

    def add(self, s: TelemetrySample) -> None:
        if self.t and s.t_ns <= self.t[-1]:
            return  # out of order or duplicate: the series must stay strictly increasing in time
        self.latest = s
        power = s.power_instant_w if s.power_instant_w is not None else s.power_w
        if s.energy_mj is not None:
            if not self.t:
                delta = 0.0
            elif self.counter_mj is None:  # the counter just appeared: the gap before it is integrated
                delta = self._integrate(s.t_ns, power)
            elif s.energy_mj >= self.counter_mj:
                delta = (s.energy_mj - self.counter_mj) / 1000.0
            else:  # the counter went backwards: a reset; integrate power over the gap, never go negative
                self.resets += 1
                integrated = self._integrate(s.t_ns, power)
                delta = integrated if integrated > 0 else s.energy_mj / 1000.0
            self.counter_mj = s.energy_mj
        elif power is not None:
            delta = self._integrate(s.t_ns, power) if self.t else 0.0
        else:
            return  # neither counter nor power: nothing to add to the series
        self.power_w = power
        if self.first_t is None:
            self.first_t = s.t_ns
        self.total_j += delta
        self.t.append(s.t_ns)
        self.cum_j.append(self.total_j)

    def _integrate(self, t_ns: int, power: float | None) -> float:
        """Trapezoid from the last point to ``t_ns`` (one known end stands for both; none -> 0)."""
        ends = [p for p in (self.power_w, power) if p is not None]
        if not ends or not self.t:
            return 0.0
        return sum(ends) / len(ends) * (t_ns - self.t[-1]) / NS

    def cum_at(self, t_ns: int) -> float:
        """Cumulative joules at ``t_ns``, linearly interpolated, clamped to the series' ends."""
        i = bisect_left(self.t, t_ns)
        if i <= 0:
            return self.cum_j[0]
        if i >= len(self.t):
            return self.cum_j[-1]
        t0, t1 = self.t[i - 1], self.t[i]
        c0, c1 = self.cum_j[i - 1], self.cum_j[i]
        return c0 + (c1 - c0) * (t_ns - t0) / (t1 - t0)

    def mean_watts(self, start_ns: int, end_ns: int) -> float | None:
        """Average power over [start, end] ∩ the series; None when that is no time at all."""
        if not self.t:
            return None
        lo, hi = max(start_ns, self.t[0]), min(end_ns, self.t[-1])
        if hi <= lo:
            return None
        return (self.cum_at(hi) - self.cum_at(lo)) / ((hi - lo) / NS)

    def watts(self) -> float | None:
        """Δenergy/Δt over the last second; the latest power reading until a span of history exists."""
        if len(self.t) >= 2:
            last = self.t[-1]
            watts = self.mean_watts(last - WATTS_SPAN_NS, last)
            if watts is not None:
                return watts
        s = self.latest
        return None if s is None else s.power_w if s.power_w is not None else s.power_instant_w

    def prune(self, before_ns: int) -> None:
        """Drop points older than ``before_ns`` (keeping one before it, so interpolation still reaches it)."""
        k = bisect_left(self.t, before_ns) - 1
        if k > 256:  # amortised: cut in chunks, not every tick
            del self.t[:k]
            del self.cum_j[:k]

    @property
    def integrated(self) -> bool:
        return self.latest is not None and self.latest.energy_mj is None


def _per_token(energy_j: float | None, tokens: int) -> tuple[float | None, float | None]:
    """(joules per token, kWh per million tokens); None without energy or tokens."""
    if energy_j is None or tokens <= 0:
        return None, None
    return energy_j / tokens, energy_j / J_PER_KWH / tokens * 1e6


def _energy_stats(energy: float | None, mean: float | None, out_tokens: int, all_tokens: int,
                  steady: bool) -> EnergyStats:
    """Energy over a span and what it means per token (output tokens, and input plus output)."""
    j_out, kwh_out = _per_token(energy, out_tokens)
    _, kwh_all = _per_token(energy, all_tokens)
    return EnergyStats(energy_j=energy, mean_watts=mean, joules_per_output_token=j_out,
                       kwh_per_million_output_tokens=kwh_out, kwh_per_million_total_tokens=kwh_all, steady=steady)


def _sum(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


class EnergyAccount:
    """Collects telemetry samples of the selected GPUs and answers energy and watts for any tick."""

    def __init__(self, *, names: Mapping[int, str] | None = None, source: str = "nvml",
                 health: Callable[[], tuple[int, str] | None] | None = None) -> None:
        """``health``: the backend's ``problem()`` where it has one (remote telemetry): (stamp of the last good
        answer, why) while its source does not answer, so the figures can say they are stale."""
        self._health = health
        self._names = dict(names or {})
        self._source = source
        self._tracks: dict[int, _Track] = {}
        self._lock = threading.Lock()  # add() may come from the sampler thread, stats() from the controller's
        self._retention_ns = int(MIN_RETENTION_S * NS)

    def add(self, sample: TelemetrySample) -> None:
        with self._lock:
            self._tracks.setdefault(sample.gpu_index, _Track()).add(sample)

    @property
    def counter_resets(self) -> int:
        return sum(t.resets for t in self._tracks.values())

    def stats(
        self,
        now_ns: int,
        *,
        window_end_ns: int | None = None,
        window_s: float,
        window_output_tokens: int,
        window_total_tokens: int,
        total_output_tokens: int,
        total_total_tokens: int,
        steady: bool,
    ) -> GpuStats:
        """Figures at ``now_ns``. The window is [end - window_s, end] (``window_end_ns``, default now), the span the
        window's tokens cover; its energy is the mean power measured over that span times ``window_s``, so samples
        that trail its end by a fraction of a tick do not shorten it. The total is everything since the first
        sample."""
        with self._lock:
            tracks = {i: t for i, t in sorted(self._tracks.items()) if t.latest is not None}
            stale_s, stale_reason = self._staleness(now_ns)
            if not tracks:
                return GpuStats(available=False, source=self._source, message="waiting for GPU telemetry",
                                stale_s=stale_s, stale_reason=stale_reason)  # fmt: skip
            self._retention_ns = max(self._retention_ns, int(2 * window_s * NS))
            for track in tracks.values():
                track.prune(now_ns - self._retention_ns)
            readings = tuple(self._reading(i, t) for i, t in tracks.items())
            end = now_ns if window_end_ns is None else window_end_ns
            window = self._window(tracks, end, window_s, window_output_tokens, window_total_tokens, steady)
            total = self._total(tracks, total_output_tokens, total_total_tokens, steady)
            integrated = any(t.integrated for t in tracks.values())
        return GpuStats(
            available=True,
            source=self._source,
            energy_source="integrated" if integrated else "counter",
            watts=_sum([r.watts for r in readings]),
            power_limit_w=_sum([r.power_limit_w for r in readings]),
            gpus=readings,
            window=window,
            total=total,
            stale_s=stale_s,
            stale_reason=stale_reason,
        )

    def _staleness(self, now_ns: int) -> tuple[float | None, str]:
        if self._health is None:
            return None, ""
        try:
            problem = self._health()
        except Exception:  # the backend's bookkeeping must never cost the snapshot
            return None, ""
        if problem is None:
            return None, ""
        since_ns, why = problem
        return max(0.0, (now_ns - since_ns) / NS), why

    def _reading(self, index: int, track: _Track) -> GpuReading:
        s = track.latest
        assert s is not None
        return GpuReading(
            index=index,
            name=self._names.get(index, ""),
            watts=track.watts(),
            watts_instant=s.power_instant_w,
            power_limit_w=s.power_limit_w,
            enforced_limit_w=s.enforced_limit_w,
            min_limit_w=s.min_limit_w,
            max_limit_w=s.max_limit_w,
            default_limit_w=s.default_limit_w,
            sm_clock_mhz=s.sm_clock_mhz,
            mem_clock_mhz=s.mem_clock_mhz,
            temperature_c=s.temperature_c,
            util_gpu_pct=s.util_gpu_pct,
            mem_used_mib=s.mem_used_mib,
            mem_total_mib=s.mem_total_mib,
            power_cap_binding=s.power_cap_binding,
        )

    @staticmethod
    def _window(
        tracks: dict[int, _Track], now_ns: int, window_s: float, out_tokens: int, all_tokens: int, steady: bool
    ) -> EnergyStats:
        if window_s <= 0:
            return EnergyStats(steady=steady)
        start = now_ns - int(window_s * NS)
        mean = _sum([t.mean_watts(start, now_ns) for t in tracks.values()])
        energy = None if mean is None else mean * window_s
        return _energy_stats(energy, mean, out_tokens, all_tokens, steady)

    @staticmethod
    def _total(tracks: dict[int, _Track], out_tokens: int, all_tokens: int, steady: bool) -> EnergyStats:
        timed = [t for t in tracks.values() if t.t and t.first_t is not None and t.t[-1] > t.first_t]
        if not timed:
            return EnergyStats(steady=steady)
        energy = sum(t.total_j for t in timed)
        mean = sum(t.total_j / ((t.t[-1] - t.first_t) / NS) for t in timed if t.first_t is not None)
        return _energy_stats(energy, mean, out_tokens, all_tokens, steady)

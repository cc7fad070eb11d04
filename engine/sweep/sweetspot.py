"""The power-cap sweet spot, repeat intervals and Pareto frontiers: pure functions over measured cap steps.

Nothing here talks to a server or a GPU, so every rule can be checked against hand-computed figures.

- **Sweet spot** (``pick``): among the caps whose steady figures meet every given SLO, by default (``slowdown``
  at 5%) the lowest J per output token whose output tok/s is within ``max_slowdown`` of the highest cap's
  (Zeus's max-slowdown constraint, applied to serving); ``energy`` drops the slowdown limit (lowest J/token),
  ``cost`` picks the lowest $/M output tokens within the slowdown limit.
- **Intervals**: mean ± the 95% confidence half-width from Student's t (a small number of repeats needs t,
  not the normal 1.96: with 3 runs the half-width is 2.48 standard deviations, not 1.13).
- **Pareto frontier**: the points no other point beats on both axes (e.g. more tok/s for fewer watts).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from engine.cost import J_PER_KWH

HOURS_PER_MONTH = 730.0  # 8760 / 12

# Two-sided 95% Student t quantiles t(0.975, df) for df = 1..30; beyond that the normal 1.96 is close enough.
_T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip

PickKind = Literal["slowdown", "energy", "cost"]
T = TypeVar("T")


class Interval(BaseModel):
    """A mean over repeats with its 95% confidence half-width (None with a single value)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mean: float
    half_width: float | None = None
    n: int = 1

    @property
    def low(self) -> float:
        return self.mean - (self.half_width or 0.0)

    @property
    def high(self) -> float:
        return self.mean + (self.half_width or 0.0)

    def contains(self, value: float, rel_tol: float = 1e-9) -> bool:
        slack = abs(value) * rel_tol
        return self.low - slack <= value <= self.high + slack


def t95(df: int) -> float:
    """The two-sided 95% Student t quantile for ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError("a confidence interval needs at least two values")
    return _T95[df - 1] if df <= len(_T95) else 1.96


def mean_ci(values: Sequence[float]) -> Interval:
    """Mean and 95% confidence half-width of the mean (sample standard deviation, Student t)."""
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = math.fsum(values) / n
    if n == 1:
        return Interval(mean=mean, n=1)
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    return Interval(mean=mean, half_width=t95(n - 1) * math.sqrt(var / n), n=n)


class PickRule(BaseModel):
    """How the sweet spot is chosen; ``describe()`` is the sentence the report prints."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: PickKind = "slowdown"
    max_slowdown: float = Field(default=0.05, ge=0.0, lt=1.0)
    """Throughput may fall at most this fraction below the highest cap's (ignored by ``energy``)."""
    slo_ttft_p99_ms: float | None = Field(default=None, gt=0)
    slo_tpot_p99_ms: float | None = Field(default=None, gt=0)

    def describe(self) -> str:
        slo = []
        if self.slo_ttft_p99_ms is not None:
            slo.append(f"TTFT p99 <= {self.slo_ttft_p99_ms:g} ms")
        if self.slo_tpot_p99_ms is not None:
            slo.append(f"TPOT p99 <= {self.slo_tpot_p99_ms:g} ms")
        slo_text = f", {' and '.join(slo)}" if slo else ""
        if self.kind == "energy":
            return f"lowest J per output token{slo_text}"
        what = "lowest $ per M output tokens" if self.kind == "cost" else "lowest J per output token"
        return f"{what} with throughput within {self.max_slowdown:.0%} of the highest cap{slo_text}"


def parse_pick(text: str, max_slowdown: float) -> PickRule:
    """``energy``, ``cost``, ``slowdown`` or ``slowdown:X%`` (X% overrides ``max_slowdown``)."""
    t = text.strip().lower()
    if t in ("energy", "cost", "slowdown"):
        return PickRule.model_validate({"kind": t, "max_slowdown": max_slowdown})
    m = re.fullmatch(r"slowdown:(\d+(?:\.\d+)?)%?", t)
    if m is None:
        raise ValueError(f"--pick wants energy, cost, slowdown or slowdown:X%, got {text!r}")
    return PickRule(kind="slowdown", max_slowdown=float(m.group(1)) / 100.0)


def parse_fraction(text: str) -> float:
    """``5%`` or ``0.05`` -> 0.05."""
    t = text.strip()
    value = float(t[:-1]) / 100.0 if t.endswith("%") else float(t)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"a fraction from 0 to 1 (or 0% to 100%), got {text!r}")
    return value


def parse_caps(text: str) -> list[float]:
    """``700:300:50`` (from high to low, step 50, both ends included) or a list ``700,500,350``; high to low."""
    t = text.strip()
    if ":" in t:
        parts = t.split(":")
        if len(parts) != 3:
            raise ValueError(f"a cap range is HIGH:LOW:STEP, got {text!r}")
        hi, lo, step = (float(p) for p in parts)
        if step <= 0 or hi <= 0 or lo <= 0:
            raise ValueError(f"cap range {text!r}: watts and the step must be positive")
        hi, lo = max(hi, lo), min(hi, lo)
        n = math.floor((hi - lo) / step + 1e-9)
        caps = [hi - k * step for k in range(n + 1)]
        if caps[-1] - lo > 1e-9:
            caps.append(lo)
    else:
        caps = [float(p) for p in t.split(",") if p.strip()]
    if not caps or any(c <= 0 for c in caps):
        raise ValueError(f"power caps must be positive watts, got {text!r}")
    return sorted(set(caps), reverse=True)


class CapFigures(BaseModel):
    """The figures the sweet-spot rules look at, for one cap (one run, or the means over repeats)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cap_w: float
    output_tokens_per_s: float
    watts: float | None = None
    joules_per_output_token: float | None = None
    dollars_per_million_output: float | None = None
    ttft_p99_ms: float | None = None
    tpot_p99_ms: float | None = None

    def slo_failures(self, rule: PickRule) -> list[str]:
        out = []
        if rule.slo_ttft_p99_ms is not None and (self.ttft_p99_ms is None or self.ttft_p99_ms > rule.slo_ttft_p99_ms):
            out.append("TTFT p99 over the SLO")
        if rule.slo_tpot_p99_ms is not None and (self.tpot_p99_ms is None or self.tpot_p99_ms > rule.slo_tpot_p99_ms):
            out.append("TPOT p99 over the SLO")
        return out


class Savings(BaseModel):
    """What the sweet spot saves against the highest cap, at the measured load, per GPU set measured."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    watts: float | None = None
    joules_per_output_token: float | None = None
    joules_fraction: float | None = None
    kwh_per_month: float | None = None
    dollars_per_month: float | None = None
    throughput_fraction: float | None = None
    """Sweet spot's output tok/s over the highest cap's (1.0 = no slowdown)."""


class SweetSpot(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    cap_w: float | None
    rule: str
    reason: str = ""
    baseline_cap_w: float | None = None
    savings: Savings = Savings()


def relative_throughput(points: Sequence[CapFigures]) -> dict[float, float]:
    """Each cap's output tok/s over the highest cap's (the reference; empty when it served nothing)."""
    if not points:
        return {}
    top = max(points, key=lambda p: p.cap_w)
    if top.output_tokens_per_s <= 0:
        return {}
    return {p.cap_w: p.output_tokens_per_s / top.output_tokens_per_s for p in points}


def pick_sweet_spot(
    points: Sequence[CapFigures], rule: PickRule, dollars_per_kwh: float | None = None, pue: float = 1.0
) -> SweetSpot:
    """Apply ``rule`` to the measured caps; ``dollars_per_kwh`` (with ``pue``) prices the monthly saving."""
    described = rule.describe()
    if not points:
        return SweetSpot(cap_w=None, rule=described, reason="no cap was measured")
    base = max(points, key=lambda p: p.cap_w)
    rel = relative_throughput(points)
    if not rel:
        return SweetSpot(
            cap_w=None, rule=described, reason="the highest cap served no tokens", baseline_cap_w=base.cap_w
        )
    candidates = [p for p in points if not p.slo_failures(rule)]
    if rule.kind != "energy":
        candidates = [p for p in candidates if rel[p.cap_w] >= 1.0 - rule.max_slowdown - 1e-12]
    key: Callable[[CapFigures], float | None]
    if rule.kind == "cost":
        key = lambda p: p.dollars_per_million_output  # noqa: E731
    else:
        key = lambda p: p.joules_per_output_token  # noqa: E731
    scored = [(v, p) for p in candidates if (v := key(p)) is not None]
    if not scored:
        why = "no cap met the SLO and the slowdown limit" if candidates == [] else "no energy or cost figures"
        return SweetSpot(cap_w=None, rule=described, reason=why, baseline_cap_w=base.cap_w)
    # ties (within 0.1%) go to the higher cap: the same energy for more headroom
    best_v = min(v for v, _ in scored)
    spot = max((p for v, p in scored if v <= best_v * 1.001), key=lambda p: p.cap_w)
    return SweetSpot(
        cap_w=spot.cap_w,
        rule=described,
        reason=f"{rel[spot.cap_w]:.1%} of the throughput at {base.cap_w:g} W",
        baseline_cap_w=base.cap_w,
        savings=savings(base, spot, rel[spot.cap_w], dollars_per_kwh, pue),
    )


def savings(
    base: CapFigures, spot: CapFigures, throughput_fraction: float, dollars_per_kwh: float | None, pue: float
) -> Savings:
    """Watts and J/token saved; per month (730 h) at the measured load: kWh (times PUE) and dollars."""
    dw = base.watts - spot.watts if base.watts is not None and spot.watts is not None else None
    dj = (
        base.joules_per_output_token - spot.joules_per_output_token
        if base.joules_per_output_token is not None and spot.joules_per_output_token is not None
        else None
    )
    kwh = dw * HOURS_PER_MONTH / 1000.0 * pue if dw is not None else None
    return Savings(
        watts=dw,
        joules_per_output_token=dj,
        joules_fraction=dj / base.joules_per_output_token if dj is not None and base.joules_per_output_token else None,
        kwh_per_month=kwh,
        dollars_per_month=kwh * dollars_per_kwh if kwh is not None and dollars_per_kwh is not None else None,
        throughput_fraction=throughput_fraction,
    )


def kwh(joules: float) -> float:
    return joules / J_PER_KWH


def pareto_frontier(
    points: Sequence[T],
    x: Callable[[T], float | None],
    y: Callable[[T], float | None],
    *,
    maximize_x: bool,
    maximize_y: bool,
) -> list[T]:
    """The points not dominated on (x, y): no other point is at least as good on both and better on one.

    Returned sorted by x. Points missing either figure are left out.
    """
    sx = 1.0 if maximize_x else -1.0
    sy = 1.0 if maximize_y else -1.0
    scored = [(sx * vx, sy * vy, p) for p in points if (vx := x(p)) is not None and (vy := y(p)) is not None]
    front = [
        (a, b, p) for a, b, p in scored if not any(a2 >= a and b2 >= b and (a2 > a or b2 > b) for a2, b2, _ in scored)
    ]
    return [p for a, _, p in sorted(front, key=lambda t: sx * t[0])]

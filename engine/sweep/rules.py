"""The ceiling finder's decisions, apart from any server: which concurrency next, when to stop, what it found.

Pure and synchronous so it can be tested with recorded snapshots. ``engine.sweep.runner`` drives a live controller with
it; the TUI's auto-ramp uses the same rules one step at a time.

Rules (latencies over the step's own steady window; throughput over its whole hold, see ``StepJudge``):
- a step *fails* when its error rate passes ``max_error_rate`` (10%), when a given SLO (TTFT p99, TPOT p99) is
  passed, or when its output tok/s falls more than ``threshold`` (5%) below the best step so far;
- a step *plateaus* when raising the load gained no more than ``threshold`` over the best step: the server is
  saturated, more load would only queue;
- a step *queues* when requests keep waiting for their first token (at least 2 and at least ``threshold`` of its
  concurrency at nearly every tick of its last half window; ``engine.sweep.runner.StepJudge``): the server is not
  admitting them, so the step is past its admission limit and
  its figures come from the survivors; the waiting requests are censored observations, so TTFT p99 is reported
  as "≥ X" (X = the longer of the observed p99 and the oldest wait) and the SLO rule sees that bound;
- a step that completed nothing is never the "best" a later step is compared against (it measured nothing);
- the sweep stops at the first failure, at a plateau, or at ``max``.

The load axis is concurrency, or for a trace replay (``wattload sweep --trace``) the trace speed: each step
replays the trace on at ``speeds[k]`` times its recorded clock, open loop, and the same rules judge it (a server
that keeps up turns twice the speed into twice the output tok/s; one that does not plateaus or queues).

Results:
- **capacity**: the lowest concurrency whose output tok/s is within ``threshold`` of the best error-free step
  (the last good step before the throughput stopped rising);
- **knee**: the last step whose throughput still grew by at least half as much as its load, relative to the
  step before (beyond it, added concurrency mostly adds latency);
- **goodput**: the highest output tok/s among steps that meet every given SLO (None when no SLO is given).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from enum import StrEnum
from itertools import pairwise
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.snapshot import Snapshot

KNEE_EFFICIENCY = 0.5
LoadAxis = Literal["concurrency", "speed"]


class SweepSettings(BaseModel):
    """How the ceiling finder steps and when it stops."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: int = Field(default=1, ge=1)
    max: int = Field(default=512, ge=1)
    factor: float = Field(default=2.0, gt=1)
    """Geometric steps: each step multiplies the concurrency by this (rounded up to at least +1)."""
    linear_step: int | None = Field(default=None, ge=1)
    """Linear steps of this size instead of geometric ones."""
    step_time_s: float = Field(default=20.0, gt=0)
    """Longest hold per step; a step ends earlier once its window is steady."""
    window_s: float = Field(default=10.0, gt=0)
    """The sliding window a step is measured over (the shortest hold: the window must hold only this step)."""
    steady_tolerance: float = Field(default=0.05, gt=0, lt=1)
    """A window is steady when its output tok/s stayed within this fraction over the last half window."""
    threshold: float = Field(default=0.05, gt=0, lt=1)
    max_error_rate: float = Field(default=0.10, ge=0, le=1)
    slo_ttft_p99_ms: float | None = Field(default=None, gt=0)
    slo_tpot_p99_ms: float | None = Field(default=None, gt=0)
    axis: LoadAxis = "concurrency"
    """What the steps change: the concurrency (``start``..``max``), or a trace replay's speed (``speeds``)."""
    speeds: tuple[float, ...] = ()
    """axis "speed": each step's trace speed (1 = the recorded clock), ascending (``speed_steps``)."""

    @model_validator(mode="after")
    def _ordered(self) -> SweepSettings:
        if self.start > self.max:
            raise ValueError(f"--start ({self.start}) is above --max ({self.max})")
        if self.axis == "speed" and (not self.speeds or any(b <= a for a, b in pairwise(self.speeds))):
            raise ValueError("a speed sweep needs ascending trace speeds")
        return self

    def load_steps(self) -> list[float]:
        """Every step's load on the sweep's axis: concurrencies, or trace speeds."""
        return list(self.speeds) if self.axis == "speed" else [float(n) for n in self.steps()]

    @property
    def has_slo(self) -> bool:
        return self.slo_ttft_p99_ms is not None or self.slo_tpot_p99_ms is not None

    def steps(self) -> Iterator[int]:
        """The concurrency of every step, from ``start`` up to and including ``max``."""
        n = self.start
        while True:
            yield n
            if n >= self.max:
                return
            nxt = n + self.linear_step if self.linear_step else max(n + 1, round(n * self.factor))
            n = min(nxt, self.max)

    def step_count(self) -> int:
        return len(self.load_steps())


def speed_steps(start: float, top: float, factor: float = 2.0, linear: float | None = None) -> tuple[float, ...]:
    """Trace speeds from ``start`` up to and including ``top``: times ``factor``, or plus ``linear``."""
    if start <= 0 or top < start:
        raise ValueError(f"the trace speeds must satisfy 0 < start <= max, got {start:g} and {top:g}")
    out = [start]
    while out[-1] < top:
        nxt = out[-1] + linear if linear else out[-1] * factor
        out.append(min(round(nxt, 6), top))
    return tuple(out)


def load_label(concurrency: int, speed: float | None) -> str:
    """How a step's load reads in lines and tables: 'concurrency 8' or 'trace speed ×2'."""
    return f"concurrency {concurrency}" if speed is None else f"trace speed ×{speed:g}"


class Verdict(StrEnum):
    IMPROVED = "improved"  # best so far by more than the threshold (or the first step)
    PLATEAU = "plateau"  # within the threshold of the best: saturated
    DROPPED = "dropped"  # fell more than the threshold below the best
    ERRORS = "errors"  # error rate over the limit
    SLO = "slo"  # an SLO was passed (throughput may still be fine)
    QUEUED = "queued"  # requests still waiting for a first token at the step's end: past the admission limit


class StepResult(BaseModel):
    """One concurrency step, measured over its own steady window."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int
    concurrency: int
    held_s: float
    steady: bool
    requests: int
    errors: int
    error_rate: float
    errors_by_class: dict[str, int] = Field(default_factory=dict)
    requests_per_s: float
    output_tokens_per_s: float
    """Over the step's hold after its first window: tokens streamed (chunks, corrected by usage as requests end)."""
    input_tokens_per_s: float
    output_tokens: int | None = None
    """Output tokens streamed over that part of the hold (None: measured from one window only)."""
    window_output_tokens_per_s: float | None = None
    """The last window's output tok/s, for comparison (the hold's figure is the one judged)."""
    mean_input_tokens: float | None = None
    mean_output_tokens: float | None = None
    ttft_p50_ms: float | None = None
    ttft_p99_ms: float | None = None
    ttfo_p50_ms: float | None = None
    """Time to first output token (the answer's, after reasoning; == TTFT without reasoning)."""
    ttfo_p99_ms: float | None = None
    tpot_p50_ms: float | None = None
    tpot_p99_ms: float | None = None
    itl_p99_ms: float | None = None
    e2e_p99_ms: float | None = None
    watts: float | None = None
    joules_per_output_token: float | None = None
    dollars_per_million_output: float | None = None
    dollars_per_million_total: float | None = None
    client_saturated: bool = False
    waiting_first_token: int = 0
    """Requests still waiting for their first token when the step ended (censored TTFT observations)."""
    oldest_wait_ms: float | None = None
    ttft_p99_censored: bool = False
    """``ttft_p99_ms`` is a lower bound ("≥"): waiting requests are at least 1% of the step's requests."""
    hold_note: str = ""
    """Why the step held longer than --step-time (its requests last longer, or none had ended)."""
    verdict: Verdict | None = None
    reason: str = ""
    speed: float | None = None
    """A trace-speed step's speed (its ``concurrency`` is then the requests in flight at its end)."""

    @property
    def load(self) -> float:
        """The step's place on the sweep's axis (capacity and knee are read on it)."""
        return self.speed if self.speed is not None else float(self.concurrency)

    @property
    def load_label(self) -> str:
        return load_label(self.concurrency, self.speed)

    def queued(self, settings: SweepSettings) -> bool:
        """Requests the server did not start: at least 2 and ``threshold`` of the concurrency still waiting."""
        return self.waiting_first_token >= max(2, settings.threshold * self.concurrency)

    def slo_failures(self, settings: SweepSettings) -> list[str]:
        """Which given SLOs this step passes over (a missing figure counts as passed over: nothing completed)."""
        out: list[str] = []
        if settings.slo_ttft_p99_ms is not None and (
            self.ttft_p99_ms is None or self.ttft_p99_ms > settings.slo_ttft_p99_ms
        ):
            at_least = "≥ " if self.ttft_p99_censored else ""
            out.append(f"TTFT p99 {at_least}{_ms(self.ttft_p99_ms)} > SLO {_ms(settings.slo_ttft_p99_ms)}")
        if settings.slo_tpot_p99_ms is not None and (
            self.tpot_p99_ms is None or self.tpot_p99_ms > settings.slo_tpot_p99_ms
        ):
            out.append(f"TPOT p99 {_ms(self.tpot_p99_ms)} > SLO {_ms(settings.slo_tpot_p99_ms)}")
        return out


def censored_ttft_p99(observed_p99_ms: float | None, observed: int, waiting: int,
                      oldest_wait_ms: float | None) -> tuple[float | None, bool]:
    """TTFT p99 counting the requests still waiting: (value, is a lower bound).

    A waiting request's TTFT is at least its age so far. When the waiting ones are at least 1% of all, they fill
    the top percentile a survivors-only p99 leaves out, so the figure becomes "≥ max(observed p99, oldest wait)".
    """
    if waiting == 0 or waiting < 0.01 * (observed + waiting):
        return observed_p99_ms, False
    candidates = [v for v in (observed_p99_ms, oldest_wait_ms) if v is not None]
    return (max(candidates) if candidates else None), True


def step_from_snapshot(index: int, concurrency: int, held_s: float, steady: bool, snap: Snapshot) -> StepResult:
    """A step's figures from the snapshot that closed it (its window holds only this step)."""
    w = snap.window
    oldest_ms = None if snap.oldest_wait_s is None else snap.oldest_wait_s * 1e3
    ttft_p99, censored = censored_ttft_p99(w.ttft.p99, w.ttft.count, snap.waiting_first_token, oldest_ms)
    return StepResult(
        index=index,
        concurrency=concurrency,
        held_s=held_s,
        steady=steady,
        requests=w.requests,
        errors=w.errors,
        error_rate=w.error_rate,
        errors_by_class=dict(w.errors_by_class),
        requests_per_s=w.requests_per_s,
        output_tokens_per_s=w.output_tokens_per_s,
        input_tokens_per_s=w.input_tokens_per_s,
        mean_input_tokens=w.input_tokens / w.requests if w.requests else None,
        mean_output_tokens=w.output_tokens / w.requests if w.requests else None,
        ttft_p50_ms=w.ttft.p50,
        ttft_p99_ms=ttft_p99,
        ttfo_p50_ms=w.ttfo.p50,
        ttfo_p99_ms=w.ttfo.p99,
        tpot_p50_ms=w.tpot.p50,
        tpot_p99_ms=w.tpot.p99,
        itl_p99_ms=w.itl.p99,
        e2e_p99_ms=w.e2e.p99,
        watts=snap.gpu.window.mean_watts if snap.gpu.available else None,
        joules_per_output_token=snap.gpu.window.joules_per_output_token if snap.gpu.available else None,
        dollars_per_million_output=snap.cost.window_per_million_output,
        dollars_per_million_total=snap.cost.window_per_million_total,
        client_saturated=snap.client.saturated,
        waiting_first_token=snap.waiting_first_token,
        oldest_wait_ms=oldest_ms,
        ttft_p99_censored=censored,
    )


class SweepOutcome(BaseModel):
    """What the ceiling finder found."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    steps: list[StepResult]
    stop_reason: str
    capacity: int | None = None
    capacity_step: StepResult | None = None
    knee: int | None = None
    goodput_tokens_per_s: float | None = None
    goodput_concurrency: int | None = None
    capacity_speed: float | None = None
    """A trace-speed sweep: the capacity, knee and goodput as trace speeds (the concurrency fields stay None)."""
    knee_speed: float | None = None
    goodput_speed: float | None = None


class CeilingFinder:
    """Judges each measured step and says whether to go on; ``outcome()`` summarises the steps so far."""

    def __init__(self, settings: SweepSettings) -> None:
        self.settings = settings
        self._steps: list[StepResult] = []
        self._plan = settings.load_steps()
        self.stop_reason = ""

    @property
    def steps(self) -> Sequence[StepResult]:
        return tuple(self._steps)

    @property
    def done(self) -> bool:
        return bool(self.stop_reason)

    def next_load(self) -> float | None:
        """The next step's load on the sweep's axis, or None when the sweep is over."""
        if self.done or len(self._steps) >= len(self._plan):
            return None
        return self._plan[len(self._steps)]

    def next_concurrency(self) -> int | None:
        """The next step's concurrency, or None when the sweep is over."""
        n = self.next_load()
        return None if n is None else round(n)

    def record(self, step: StepResult) -> StepResult:
        """Judge a measured step, remember it, and decide whether the sweep goes on. Returns the judged step."""
        s = self.settings
        best = self._best()
        slo = step.slo_failures(s)
        verdict: Verdict
        if step.error_rate > s.max_error_rate:
            verdict = Verdict.ERRORS
            reason = f"error rate {step.error_rate:.0%} > {s.max_error_rate:.0%}{_error_classes(step)}"
        elif step.queued(s):
            verdict = Verdict.QUEUED
            oldest = "" if step.oldest_wait_ms is None else f", the oldest for {_ms(step.oldest_wait_ms)}"
            p99 = f"; TTFT p99 ≥ {_ms(step.ttft_p99_ms)}" if step.ttft_p99_censored else ""
            reason = (
                f"{step.waiting_first_token} of {step.concurrency} requests still waiting for a first token at the "
                f"end of the step{oldest}: the server queues them{p99}"
            )
        elif best is not None and step.output_tokens_per_s < best.output_tokens_per_s * (1 - s.threshold):
            verdict = Verdict.DROPPED
            reason = (
                f"output {step.output_tokens_per_s:,.0f} tok/s fell {_drop(step, best):.0%} below the best "
                f"({best.output_tokens_per_s:,.0f} tok/s at {best.load_label})"
            )
        elif slo:
            verdict = Verdict.SLO
            reason = "; ".join(slo)
        elif best is None or step.output_tokens_per_s > best.output_tokens_per_s * (1 + s.threshold):
            verdict = Verdict.IMPROVED
            reason = ""
        else:
            verdict = Verdict.PLATEAU
            reason = (
                f"saturated: {step.load_label} gained under {s.threshold:.0%} over {best.load_label}"
            )
        judged = step.model_copy(update={"verdict": verdict, "reason": reason})
        self._steps.append(judged)
        if verdict is not Verdict.IMPROVED:
            self.stop_reason = f"{step.load_label}: {reason}"
        elif len(self._steps) >= len(self._plan):
            top = f"{s.max}" if s.axis == "concurrency" else f"×{s.speeds[-1]:g}"
            self.stop_reason = f"reached --max {top}"
        return judged

    def stop(self, reason: str) -> None:
        """End early from outside (interrupted, the server went away)."""
        if not self.stop_reason:
            self.stop_reason = reason

    def outcome(self) -> SweepOutcome:
        s = self.settings
        ok = [st for st in self._steps
              if st.verdict not in (Verdict.ERRORS, Verdict.QUEUED, None) and st.requests > 0]
        capacity_step: StepResult | None = None
        if ok:
            top = max(st.output_tokens_per_s for st in ok)
            capacity_step = min(
                (st for st in ok if st.output_tokens_per_s >= top * (1 - s.threshold)), key=lambda st: st.load
            )
        good = [st for st in ok if st.verdict is not Verdict.SLO and not st.slo_failures(s)] if s.has_slo else []
        goodput = max(good, key=lambda st: st.output_tokens_per_s) if good else None
        knee = _knee(ok)
        by_speed = s.axis == "speed"
        return SweepOutcome(
            steps=list(self._steps),
            stop_reason=self.stop_reason or "not finished",
            capacity=capacity_step.concurrency if capacity_step and not by_speed else None,
            capacity_step=capacity_step,
            knee=None if knee is None or by_speed else round(knee),
            goodput_tokens_per_s=goodput.output_tokens_per_s if goodput else None,
            goodput_concurrency=goodput.concurrency if goodput and not by_speed else None,
            capacity_speed=capacity_step.speed if capacity_step and by_speed else None,
            knee_speed=knee if by_speed else None,
            goodput_speed=goodput.speed if goodput and by_speed else None,
        )

    def _best(self) -> StepResult | None:
        scored = [st for st in self._steps if st.verdict not in (Verdict.ERRORS, Verdict.QUEUED) and st.requests > 0]
        return max(scored, key=lambda st: st.output_tokens_per_s) if scored else None


def _knee(steps: Sequence[StepResult]) -> float | None:
    """The last step whose throughput still grew by at least half of its relative growth in load.

    "Last", not "before the first miss": at very low load a fixed client or network overhead can make one early
    step look inefficient although the server is far from saturated.
    """
    ordered = sorted(steps, key=lambda st: st.load)
    if not ordered:
        return None
    knee = ordered[0]
    for prev, cur in pairwise(ordered):
        if prev.output_tokens_per_s <= 0:
            continue
        load_growth = cur.load / prev.load - 1
        tput_growth = cur.output_tokens_per_s / prev.output_tokens_per_s - 1
        if tput_growth >= KNEE_EFFICIENCY * load_growth:
            knee = cur
    return knee.load


def _drop(step: StepResult, best: StepResult) -> float:
    return 1 - step.output_tokens_per_s / best.output_tokens_per_s if best.output_tokens_per_s else 0.0


def _error_classes(step: StepResult) -> str:
    if not step.errors_by_class:
        return ""
    top = sorted(step.errors_by_class.items(), key=lambda kv: -kv[1])
    return " (" + ", ".join(f"{k} {v}" for k, v in top[:3]) + ")"


def _ms(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v / 1000:.2f} s" if v >= 1000 else f"{v:.0f} ms"

"""The power-cap sweep: hold the load, step the GPU power cap from high to low, measure each cap's steady window.

Per cap: set it on every selected GPU, wait until the telemetry reads it back, let the window settle (no cap
change inside it, output tok/s within ``steady_tolerance`` over the last half window, at least ``min_requests``
completed), then take that window's figures. ``--repeat N`` runs the whole sweep N times; the sweet spot is picked
from the means (``engine.sweep.sweetspot``). The original caps are restored by the controller's GPU session on
every exit path (``close``, atexit, SIGTERM/SIGHUP, the state file for ``wattload gpu restore``), never here.

The controller's window should equal ``step_time_s`` (``run_config`` arranges it), so a step's figures cover
exactly one steady window at one cap.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from time import perf_counter_ns
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from engine.control import LoadControl
from engine.records import ControlEvent, EventKind
from engine.snapshot import RunState, Snapshot
from engine.sweep.rules import StepResult, step_from_snapshot
from engine.sweep.sweetspot import (
    CapFigures,
    Interval,
    PickRule,
    SweetSpot,
    mean_ci,
    pareto_frontier,
    pick_sweet_spot,
)

READBACK_TOLERANCE_W = 1.0
BINDING_FRACTION = 0.95  # "cap binding": the window's mean draw reached 95% of the enforced limit (an instant
# throttle flag says only what one sample saw: a prefill burst trips it although the window mostly ran free)
READBACK_TIMEOUT_S = 10.0  # the telemetry samples at 10 Hz: a cap not seen by then was not applied
_SNAPSHOT_WAIT_S = 2.0
_MAX_SILENT_WAITS = 5


class CapControl(LoadControl, Protocol):
    """What the sweep needs from a session: the load controls, absolute caps, and the event log."""

    def set_power_cap(self, watts: float) -> str: ...
    def emit(self, event: ControlEvent) -> None: ...


class CapSweepSettings(BaseModel):
    """How the power-cap sweep steps and measures."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    caps_w: list[float] = Field(min_length=1)
    """Caps to measure, from high to low (the first is the reference for slowdown)."""
    step_time_s: float = Field(default=20.0, gt=0)
    """The measured window at each cap (the controller's window is set to it)."""
    settle_s: float | None = Field(default=None, ge=0)
    """Extra time after a change before the window may count (default: a quarter of the window)."""
    max_wait_s: float | None = Field(default=None, gt=0)
    """Longest a cap is held waiting for a steady window (default: 3 windows); then taken, marked not steady."""
    min_requests: int = Field(default=20, ge=1)
    steady_tolerance: float = Field(default=0.05, gt=0, lt=1)
    cooldown_s: float = Field(default=0.0, ge=0)
    """Pause the load this long between caps (the GPU cools, so each cap starts from the same temperature)."""
    repeat: int = Field(default=1, ge=1, le=100)
    rule: PickRule = PickRule()

    @property
    def settle(self) -> float:
        return self.settle_s if self.settle_s is not None else self.step_time_s / 4

    @property
    def max_wait(self) -> float:
        return self.max_wait_s if self.max_wait_s is not None else 3 * self.step_time_s


class CapStep(BaseModel):
    """One cap, one repetition: the window's figures plus the GPU's side of it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    repetition: int
    cap_w: float
    concurrency: int | None = None
    rate: float | None = None
    enforced_limit_w: float | None = None
    cap_binding: bool | None = None
    sm_clock_mhz: int | None = None
    temperature_c: int | None = None
    relative_throughput: float | None = None
    step: StepResult

    def figures(self) -> CapFigures:
        s = self.step
        return CapFigures(
            cap_w=self.cap_w,
            output_tokens_per_s=s.output_tokens_per_s,
            watts=s.watts,
            joules_per_output_token=s.joules_per_output_token,
            dollars_per_million_output=s.dollars_per_million_output,
            ttft_p99_ms=s.ttft_p99_ms,
            tpot_p99_ms=s.tpot_p99_ms,
        )


SUMMARY_FIGURES = (
    "output_tokens_per_s",
    "watts",
    "joules_per_output_token",
    "dollars_per_million_output",
    "ttft_p99_ms",
    "tpot_p99_ms",
    "relative_throughput",
)


class CapSummary(BaseModel):
    """One cap over all repetitions: mean ± 95% CI per figure (a figure missing in any run is left out)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cap_w: float
    concurrency: int | None = None
    runs: int
    steady_runs: int
    figures: dict[str, Interval]
    enforced_limit_w: float | None = None
    cap_binding: bool | None = None
    sm_clock_mhz: float | None = None
    temperature_c: float | None = None

    def mean(self, name: str) -> float | None:
        iv = self.figures.get(name)
        return iv.mean if iv is not None else None

    def cap_figures(self) -> CapFigures:
        tps = self.mean("output_tokens_per_s")
        return CapFigures(
            cap_w=self.cap_w,
            output_tokens_per_s=tps or 0.0,
            watts=self.mean("watts"),
            joules_per_output_token=self.mean("joules_per_output_token"),
            dollars_per_million_output=self.mean("dollars_per_million_output"),
            ttft_p99_ms=self.mean("ttft_p99_ms"),
            tpot_p99_ms=self.mean("tpot_p99_ms"),
        )


class CapSweepResult(BaseModel):
    """A whole power-cap sweep: every measured step, the per-cap summaries and the sweet spot."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    settings: CapSweepSettings
    load: str
    steps: list[CapStep]
    summaries: list[CapSummary]
    sweet_spot: SweetSpot
    alternatives: dict[str, SweetSpot] = Field(default_factory=dict)
    """The other rules' picks (energy, cost, slowdown), for comparison."""
    grid: list[CapSummary] = Field(default_factory=list)
    """--grid: one summary per (concurrency, cap)."""
    pareto_throughput_watts: list[CapSummary] = Field(default_factory=list)
    pareto_energy_latency: list[CapSummary] = Field(default_factory=list)
    stop_reason: str = ""
    completed: bool = True
    warnings: list[str] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CapProgress:
    """Where a running cap sweep is, for progress lines and the dashboard's event log."""

    repetition: int  # 1-based
    repeats: int
    index: int  # 0-based cap position
    caps: int
    cap_w: float
    held_s: float
    phase: str  # "setting", "settling", "measuring", "cooldown", "done"
    finished: CapStep | None = None
    concurrency: int | None = None


CapProgressCallback = Callable[[CapProgress], None]


class CapSweepAborted(RuntimeError):
    """The sweep cannot go on (no power control, the session ended); the caps measured so far still count."""


def summarize(steps: Sequence[CapStep], concurrency: int | None = None) -> list[CapSummary]:
    """Per cap (high to low): mean ± CI over repetitions of every figure all repetitions have."""
    by_cap: dict[float, list[CapStep]] = {}
    for st in steps:
        by_cap.setdefault(st.cap_w, []).append(st)
    out = []
    for cap in sorted(by_cap, reverse=True):
        group = by_cap[cap]
        figures: dict[str, Interval] = {}
        for name in SUMMARY_FIGURES:
            values = [_figure(st, name) for st in group]
            present = [v for v in values if v is not None]
            if present and len(present) == len(values):
                figures[name] = mean_ci(present)
        last = group[-1]
        clocks = [st.sm_clock_mhz for st in group if st.sm_clock_mhz is not None]
        temps = [st.temperature_c for st in group if st.temperature_c is not None]
        out.append(
            CapSummary(
                cap_w=cap,
                concurrency=concurrency if concurrency is not None else last.concurrency,
                runs=len(group),
                steady_runs=sum(1 for st in group if st.step.steady),
                figures=figures,
                enforced_limit_w=last.enforced_limit_w,
                cap_binding=any(bool(st.cap_binding) for st in group) if group else None,
                sm_clock_mhz=sum(clocks) / len(clocks) if clocks else None,
                temperature_c=sum(temps) / len(temps) if temps else None,
            )
        )
    return out


def _figure(st: CapStep, name: str) -> float | None:
    if name == "relative_throughput":
        return st.relative_throughput
    value = getattr(st.step, name)
    return float(value) if value is not None else None


def with_relative_throughput(steps: Sequence[CapStep]) -> list[CapStep]:
    """Each step's output tok/s over the highest cap's in the same repetition (and concurrency)."""
    top: dict[tuple[int, int | None], CapStep] = {}
    for st in steps:
        key = (st.repetition, st.concurrency)
        if key not in top or st.cap_w > top[key].cap_w:
            top[key] = st
    out = []
    for st in steps:
        ref = top[(st.repetition, st.concurrency)].step.output_tokens_per_s
        rel = st.step.output_tokens_per_s / ref if ref > 0 else None
        out.append(st.model_copy(update={"relative_throughput": rel}))
    return out


def conclude(
    settings: CapSweepSettings,
    load: str,
    steps: Sequence[CapStep],
    *,
    dollars_per_kwh: float | None = None,
    pue: float = 1.0,
    grid: bool = False,
    stop_reason: str = "",
    completed: bool = True,
) -> CapSweepResult:
    """Summaries, the sweet spot (and the other rules' picks) and, for a grid, the Pareto frontiers."""
    judged = with_relative_throughput(steps)
    concurrencies = sorted({st.concurrency for st in judged if st.concurrency is not None})
    grid_rows: list[CapSummary] = []
    if grid and concurrencies:
        for c in concurrencies:
            grid_rows += summarize([st for st in judged if st.concurrency == c], c)
        # the sweet spot of a grid: at the highest load measured (what the fleet runs at)
        main = [st for st in judged if st.concurrency == concurrencies[-1]]
    else:
        main = list(judged)
    summaries = summarize(main)
    points = [s.cap_figures() for s in summaries if "output_tokens_per_s" in s.figures]
    spot = pick_sweet_spot(points, settings.rule, dollars_per_kwh, pue)
    alternatives = {
        kind: pick_sweet_spot(points, settings.rule.model_copy(update={"kind": kind}), dollars_per_kwh, pue)
        for kind in ("slowdown", "energy", "cost")
        if kind != settings.rule.kind
    }
    pool = grid_rows or summaries
    warnings = noise_warnings(summaries, settings.rule.max_slowdown)
    return CapSweepResult(
        settings=settings,
        load=load,
        steps=judged,
        summaries=summaries,
        sweet_spot=spot,
        alternatives=alternatives,
        grid=grid_rows,
        pareto_throughput_watts=pareto_frontier(
            pool, lambda s: s.mean("watts"), lambda s: s.mean("output_tokens_per_s"), maximize_x=False, maximize_y=True
        ),
        pareto_energy_latency=pareto_frontier(
            pool,
            lambda s: s.mean("ttft_p99_ms"),
            lambda s: s.mean("joules_per_output_token"),
            maximize_x=False,
            maximize_y=False,
        ),
        stop_reason=stop_reason,
        completed=completed,
        warnings=warnings,
    )


FREE_MARGIN = 1.25  # a cap this far above the uncapped mean draw cannot slow the load (prefill peaks included)


def noise_warnings(summaries: Sequence[CapSummary], max_slowdown: float) -> list[str]:
    """Caps far above what the GPU drew uncapped cannot change the throughput: when they differ by more than half
    the slowdown limit, the load (or the client) is noisier than the rule can judge."""
    if not summaries:
        return []
    top = max(summaries, key=lambda s: s.cap_w)
    draw = top.mean("watts")
    if draw is None:
        return []
    free = [s for s in summaries if s.cap_w >= FREE_MARGIN * draw and s.mean("relative_throughput") is not None]
    if len(free) < 2:
        return []
    rel = [s.mean("relative_throughput") or 0.0 for s in free]
    spread = max(rel) - min(rel)
    if spread <= max_slowdown / 2:
        return []
    caps = ", ".join(f"{s.cap_w:g}" for s in free)
    return [
        f"throughput varied {spread:.1%} between caps far above the uncapped draw of {draw:.0f} W ({caps} W): the "
        f"measurement is noisier than the {max_slowdown:.0%} slowdown limit (longer --step-time, --repeat, or a "
        "quieter client machine)"
    ]


class CapJudge:
    """Decides when one cap's window is settled and steady, and measures it."""

    def __init__(self, settings: CapSweepSettings, cap_w: float, t_start_s: float, message: str = "") -> None:
        self.settings = settings
        self.message = message  # what setting the cap said (the reason when it never reads back)
        self.cap_w = cap_w
        self.t_start_s = t_start_s
        self.t_applied_s: float | None = None  # when the telemetry first read the cap back
        self._recent: list[tuple[float, float]] = []
        self.enforced_w: float | None = None

    def held_s(self, snap: Snapshot) -> float:
        return max(0.0, snap.t_s - self.t_start_s)

    def applied(self, snap: Snapshot) -> bool:
        """True once every GPU reads back a limit equal to the cap (clamped to its range)."""
        gpus = snap.gpu.gpus
        if not gpus:
            return False
        for g in gpus:
            want = self.cap_w
            if g.min_limit_w is not None:
                want = max(want, g.min_limit_w)
            if g.max_limit_w is not None:
                want = min(want, g.max_limit_w)
            if g.power_limit_w is None or abs(g.power_limit_w - want) > READBACK_TOLERANCE_W:
                return False
        self.enforced_w = sum(g.enforced_limit_w or g.power_limit_w or 0.0 for g in gpus)
        return True

    def feed(self, snap: Snapshot) -> tuple[bool, bool]:
        """(done, steady) for this snapshot."""
        s = self.settings
        if self.t_applied_s is None:
            if not self.applied(snap):
                if self.held_s(snap) > READBACK_TIMEOUT_S:
                    raise CapSweepAborted(f"the GPUs never read back a {self.cap_w:g} W cap: {self.message}")
                return False, False
            self.t_applied_s = snap.t_s
        window = snap.window_s or s.step_time_s
        since = snap.t_s - self.t_applied_s
        if since >= s.settle + window and snap.steady:
            self._recent.append((snap.t_s, snap.window.output_tokens_per_s))
            self._recent = [p for p in self._recent if p[0] >= snap.t_s - window]
            if self._steady(snap, window):
                return True, True
        if since >= s.max_wait + window:
            return True, False
        return False, False

    def _steady(self, snap: Snapshot, window: float) -> bool:
        horizon = snap.t_s - window / 2
        if not self._recent or self._recent[0][0] > horizon + 1e-9:
            return False
        if snap.window.requests < self.settings.min_requests:
            return False
        values = [v for t, v in self._recent if t >= horizon - 1e-9]
        if len(values) < 3:
            return False
        mean = sum(values) / len(values)
        return mean > 0 and all(abs(v - mean) <= self.settings.steady_tolerance * mean for v in values)


def cap_label(repetition: int, cap_w: float, concurrency: int | None = None) -> str:
    """The annotation that opens a cap step's phase (reports split sessions on these)."""
    at = f" at concurrency {concurrency}" if concurrency is not None else ""
    return f"cap sweep run {repetition}: {cap_w:g} W{at}"


class CapSweepRunner:
    """Runs the cap sweep on a started controller, blocking the calling thread until it ends."""

    def __init__(
        self,
        control: CapControl,
        settings: CapSweepSettings,
        on_progress: CapProgressCallback | None = None,
        stop_flag: threading.Event | None = None,
        concurrency_grid: Sequence[int] = (),
    ) -> None:
        self.control = control
        self.settings = settings
        self.grid = list(concurrency_grid)
        self._on_progress = on_progress
        self._stop = stop_flag or threading.Event()
        self._snaps: queue.Queue[Snapshot] = queue.Queue()
        self.steps: list[CapStep] = []
        self.stop_reason = ""

    @property
    def interrupted(self) -> bool:
        return self._stop.is_set()

    def run(self) -> list[CapStep]:
        """Every measured step so far (also when stopped or aborted; ``stop_reason`` says why)."""
        self.control.subscribe(self._snaps.put)
        try:
            levels: list[int | None] = [*self.grid] or [None]
            for c in levels:
                if c is not None:
                    self.control.set_concurrency(c)
                for rep in range(1, self.settings.repeat + 1):
                    for i, cap in enumerate(self.settings.caps_w):
                        if self._stop.is_set():
                            self.stop_reason = "interrupted"
                            return self.steps
                        if (i or rep > 1 or c != levels[0]) and self.settings.cooldown_s > 0:
                            self._cooldown(rep, i, cap, c)
                        step = self._measure(rep, i, cap, c)
                        if step is None:
                            self.stop_reason = "interrupted"
                            return self.steps
                        self.steps.append(step)
                        self._progress(CapProgress(rep, self.settings.repeat, i, len(self.settings.caps_w), cap,
                                                   step.step.held_s, "done", step, c))  # fmt: skip
            self.stop_reason = "finished"
        except CapSweepAborted as exc:
            self.stop_reason = str(exc)
        finally:
            unsubscribe = getattr(self.control, "unsubscribe", None)
            if callable(unsubscribe):
                unsubscribe(self._snaps.put)
        return self.steps

    def _next(self) -> Snapshot | None:
        silent = 0
        while not self._stop.is_set():
            try:
                snap = self._snaps.get(timeout=_SNAPSHOT_WAIT_S)
            except queue.Empty:
                silent += 1
                if silent >= _MAX_SILENT_WAITS:
                    raise CapSweepAborted("the controller stopped sending snapshots") from None
                continue
            if snap.state in (RunState.FAILED, RunState.STOPPED, RunState.STOPPING):
                raise CapSweepAborted(snap.message or f"the session {snap.state.value}")
            return snap
        return None

    def _drain(self) -> float:
        while True:
            try:
                self._snaps.get_nowait()
            except queue.Empty:
                return self.control.latest.t_s

    def _cooldown(self, rep: int, i: int, cap: float, c: int | None) -> None:
        self.control.pause()
        t0 = self._drain()
        try:
            while (snap := self._next()) is not None and snap.t_s - t0 < self.settings.cooldown_s:
                self._progress(CapProgress(rep, self.settings.repeat, i, len(self.settings.caps_w), cap,
                                           snap.t_s - t0, "cooldown", None, c))  # fmt: skip
        finally:
            self.control.resume()

    def _measure(self, rep: int, i: int, cap: float, c: int | None) -> CapStep | None:
        message = self.control.set_power_cap(cap)
        if message.startswith("no GPU power control"):
            raise CapSweepAborted(message)
        self.control.emit(ControlEvent(perf_counter_ns(), EventKind.ANNOTATION, value=cap,
                                       message=cap_label(rep, cap, c)))  # fmt: skip
        judge = CapJudge(self.settings, cap, self._drain(), message)
        n = len(self.settings.caps_w)
        while (snap := self._next()) is not None:
            done, steady = judge.feed(snap)
            if done:
                return self._step(rep, i, cap, c, judge, snap, steady)
            phase = "settling" if judge.t_applied_s is None or not snap.steady else "measuring"
            self._progress(CapProgress(rep, self.settings.repeat, i, n, cap, judge.held_s(snap), phase, None, c))
        return None

    def _step(
        self, rep: int, i: int, cap: float, c: int | None, judge: CapJudge, snap: Snapshot, steady: bool
    ) -> CapStep:
        result = step_from_snapshot(i, snap.target_concurrency, judge.held_s(snap), steady, snap)
        gpus = snap.gpu.gpus
        clocks = [g.sm_clock_mhz for g in gpus if g.sm_clock_mhz is not None]
        temps = [g.temperature_c for g in gpus if g.temperature_c is not None]
        binding = [g.power_cap_binding for g in gpus if g.power_cap_binding is not None]
        limit = judge.enforced_w
        if result.watts is not None and limit:  # the window's mean draw at the limit: the cap held the GPU back
            binding = [result.watts >= BINDING_FRACTION * limit]
        return CapStep(
            repetition=rep,
            cap_w=cap,
            concurrency=c if c is not None else (snap.target_concurrency if snap.mode.value == "concurrency" else None),
            rate=snap.target_rate if snap.mode.value == "rate" else None,
            enforced_limit_w=judge.enforced_w,
            cap_binding=all(binding) if binding else None,
            sm_clock_mhz=round(sum(clocks) / len(clocks)) if clocks else None,
            temperature_c=max(temps) if temps else None,
            step=result,
        )

    def _progress(self, p: CapProgress) -> None:
        if self._on_progress is not None:
            self._on_progress(p)

"""Driving the ceiling finder: hold each concurrency step until its window is steady, judge it, step up.

Two drivers share one step judge (``StepJudge``) and one set of rules (``engine.sweep.rules.CeilingFinder``):
``SweepRunner`` blocks the calling thread on a controller's snapshots (the headless ``wattload sweep``), and
``AutoRamp`` is fed one snapshot per tick by the TUI (the ``a`` key) and never blocks.

Each step is a phase of the session: the concurrency change itself is a CONCURRENCY event (the controller emits
it), and when the controller offers ``annotate(text)`` the runner adds an ANNOTATION naming the step, so
recordings and reports can split the session into steps.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter_ns

from engine.control import LoadControl
from engine.records import ControlEvent, EventKind
from engine.snapshot import LoadMode, RunState, Snapshot
from engine.sweep.rules import (
    CeilingFinder,
    StepResult,
    SweepOutcome,
    SweepSettings,
    censored_ttft_p99,
    load_label,
    step_from_snapshot,
)
from engine.workload.lengths import LengthTally

_SNAPSHOT_WAIT_S = 2.0  # the controller ticks at 4 Hz; silence for this long means it stopped ticking
_MAX_SILENT_WAITS = 5
MIN_FAILING_SAMPLE = 20  # requests in a window before its error rate alone may end a step early
REQUEST_DURATIONS = 3  # a step holds at least this many request durations (E2E p50), whatever --step-time says
MAX_HOLD_FACTOR = 10  # ... but never longer than this many --step-time (a request that never ends cannot hold it)


class SweepAborted(RuntimeError):
    """The session ended under the sweep (a worker died, the server vanished): the steps so far still count."""


def step_label(index: int, concurrency: int, speed: float | None = None) -> str:
    """The annotation that opens a step's phase (reports split sessions on these)."""
    return f"sweep step {index + 1}: {load_label(concurrency, speed)}"


def _enter_step(control: LoadControl, index: int, concurrency: int, speed: float | None = None) -> None:
    """Set the step's load and mark it as a phase: the controller logs the CONCURRENCY (or, for a trace speed,
    RATE) event itself, and an ANNOTATION names the step (``Controller.emit``; a control without it just gets
    the load change)."""
    if speed is None:
        control.set_concurrency(concurrency)
    else:
        control.set_rate(speed)
    emit = getattr(control, "emit", None)
    if callable(emit):
        label = step_label(index, concurrency, speed)
        value = concurrency if speed is None else speed
        emit(ControlEvent(perf_counter_ns(), EventKind.ANNOTATION, value=value, message=label))


class StepJudge:
    """Decides when one step's window is steady and measures the step from its snapshots.

    A window is usable once it covers only this step: ``window_s`` after the change and the snapshot's own
    ``steady`` flag (no load change inside the window). Latencies come from the last window; throughput from the
    whole hold (``_over_hold``). It is steady once output tok/s stayed within
    ``steady_tolerance`` of its mean over the last half window and something completed; a usable window whose
    error rate is over twice the limit ends the step at once. Past ``step_time_s`` the step ends anyway, marked
    not steady.
    """

    def __init__(self, index: int, concurrency: int, settings: SweepSettings, t_start_s: float,
                 speed: float | None = None) -> None:  # fmt: skip
        self.index = index
        self.concurrency = concurrency
        self.speed = speed  # a trace-speed step: the target is this speed, not a concurrency
        self.settings = settings
        self.t_start_s = t_start_s
        self._recent: list[tuple[float, float]] = []  # (t_s, window output tok/s) of usable snapshots
        self._waiting: list[tuple[float, int]] = []  # (t_s, requests waiting for a first token) of usable ones
        self.first: Snapshot | None = None  # the step's first snapshot
        self.settled: Snapshot | None = None  # its first usable one: where its hold's token count starts
        self.last: Snapshot | None = None

    def held_s(self, snap: Snapshot) -> float:
        return max(0.0, snap.t_s - self.t_start_s)

    def feed(self, snap: Snapshot) -> StepResult | None:
        """The measured step once it is steady or out of time; None while it should hold."""
        if not self._is_mine(snap):
            return None  # a snapshot from before the change reached the controller
        if self.first is None:
            self.first = snap
        self.last = snap
        s = self.settings
        window = snap.window_s or s.window_s  # the controller's real window decides when it holds only this step
        held = self.held_s(snap)
        usable = held >= window and snap.steady
        if usable and self.settled is None:
            self.settled = snap
        if usable:
            self._recent.append((snap.t_s, snap.window.output_tokens_per_s))
            self._recent = [p for p in self._recent if p[0] >= snap.t_s - window]
            self._waiting.append((snap.t_s, snap.waiting_first_token))
            self._waiting = [p for p in self._waiting if p[0] >= snap.t_s - window / 2]
            if self._clearly_failing(snap):
                return self._over_hold(self._step(held, True, snap), snap)
            if self._is_steady(snap) and held >= self.min_hold_s(snap):
                return self._measured(held, True, snap)
        if held >= self.max_hold_s(snap):
            return self._measured(held, False, snap)
        return None

    def _is_mine(self, snap: Snapshot) -> bool:
        if self.speed is None:
            return snap.target_concurrency == self.concurrency
        return snap.mode is LoadMode.RATE and abs(snap.target_rate - self.speed) <= 1e-9 * max(1.0, self.speed)

    def _step(self, held: float, steady: bool, snap: Snapshot) -> StepResult:
        """The step's figures; a trace-speed step records its speed and the requests in flight at its end."""
        if self.speed is None:
            return step_from_snapshot(self.index, self.concurrency, held, steady, snap)
        step = step_from_snapshot(self.index, snap.in_flight, held, steady, snap)
        return step.model_copy(update={"speed": self.speed})

    def min_hold_s(self, snap: Snapshot) -> float:
        """At least ``REQUEST_DURATIONS`` request durations: a step shorter than its requests measures survivors."""
        e2e = snap.total.e2e.p50 if snap.window.e2e.p50 is None else snap.window.e2e.p50
        return 0.0 if e2e is None else REQUEST_DURATIONS * e2e / 1e3

    def max_hold_s(self, snap: Snapshot) -> float:
        """``step_time_s``, extended to ``min_hold_s`` (and while nothing completed), within ``MAX_HOLD_FACTOR``."""
        s = self.settings
        cap = MAX_HOLD_FACTOR * s.step_time_s
        if snap.window.requests + snap.window.errors == 0:
            return cap  # nothing to judge yet: extend, do not compare
        return min(cap, max(s.step_time_s, self.min_hold_s(snap)))

    def _over_hold(self, step: StepResult, snap: Snapshot) -> StepResult:
        """Throughput over the step's hold: the tokens streamed from its first usable snapshot (one window in: the
        new requests' prefill burst and the previous step's stragglers are behind it) to this one, chunks as they
        arrived, corrected by each request's usage when it ended; not only the last window's. A request longer
        than the window streams its tokens in every window, but a window can hold none of its usage corrections
        (or all of them): over several request durations both even out."""
        first = self.settled or self.first
        span = snap.t_s - first.t_s if first is not None else 0.0
        if first is None or span <= 0:
            return step
        out = max(0, snap.total.output_tokens - first.total.output_tokens)
        inp = max(0, snap.total.input_tokens - first.total.input_tokens)
        update: dict[str, object] = {
            "output_tokens": out,
            "output_tokens_per_s": out / span,
            "input_tokens_per_s": inp / span,
            "window_output_tokens_per_s": snap.window.output_tokens_per_s,
        }
        # Watts, J/token and $/M over the same span as the tokens (so J/token x tok/s = W in the step's row), from
        # the energy counter and the running spend; where either end lacks them, the last window's figures stay.
        e0, e1 = first.gpu.total.energy_j, snap.gpu.total.energy_j
        if snap.gpu.available and e0 is not None and e1 is not None and e1 > e0 and out > 0:
            update.update(watts=(e1 - e0) / span, joules_per_output_token=(e1 - e0) / out)
        d0, d1 = first.cost.total_dollars, snap.cost.total_dollars
        if d0 is not None and d1 is not None and d1 > d0 and out > 0:
            update.update(dollars_per_million_output=(d1 - d0) / out * 1e6,
                          dollars_per_million_total=(d1 - d0) / (out + inp) * 1e6)  # fmt: skip
        return step.model_copy(update=update)

    def _measured(self, held: float, steady: bool, snap: Snapshot) -> StepResult:
        step = self._over_hold(self._step(held, steady, snap), snap)
        if self._waiting:
            # Requests the server holds back wait at every tick; requests merely in prefill (short answers at high
            # speed spend a good share of their life there) do not. So the count that judges the step is a low
            # quantile over its last half window: the waiting that never went away.
            counts = sorted(n for _, n in self._waiting)
            waiting = counts[len(counts) // 10]
            ttft_p99, censored = censored_ttft_p99(snap.window.ttft.p99, snap.window.ttft.count, waiting,
                                                   step.oldest_wait_ms)
            step = step.model_copy(
                update={"waiting_first_token": waiting, "ttft_p99_ms": ttft_p99, "ttft_p99_censored": censored}
            )
        if held > self.settings.step_time_s + 1.0:
            e2e = snap.window.e2e.p50
            why = f"{REQUEST_DURATIONS} request durations (E2E p50 {e2e / 1e3:.1f} s)" if e2e else "no request ended"
            step = step.model_copy(update={"hold_note": f"held {held:.0f} s: {why}"})
        return step

    def _clearly_failing(self, snap: Snapshot) -> bool:
        """A full window of this step with errors far over the limit: waiting for steadiness changes nothing."""
        w = snap.window
        return w.requests + w.errors >= MIN_FAILING_SAMPLE and w.error_rate > 2 * self.settings.max_error_rate

    def _is_steady(self, snap: Snapshot) -> bool:
        s = self.settings
        horizon = snap.t_s - (snap.window_s or s.window_s) / 2
        if not self._recent or self._recent[0][0] > horizon + 1e-9:
            return False  # usable snapshots do not cover the last half window yet
        values = [v for t, v in self._recent if t >= horizon - 1e-9]
        if len(values) < 3 or snap.window.requests + snap.window.errors == 0:
            return False
        mean = sum(values) / len(values)
        if mean <= 0:
            return all(v == 0 for v in values)
        return all(abs(v - mean) <= s.steady_tolerance * mean for v in values)


@dataclass(frozen=True, slots=True)
class StepProgress:
    """Where a running sweep is, for progress lines."""

    index: int  # 0-based step number
    planned: int  # steps in the plan (the sweep usually stops earlier)
    concurrency: int
    held_s: float
    step_time_s: float
    finished: StepResult | None = None  # set once per step, when it was judged
    speed: float | None = None  # a trace-speed sweep: the step's speed

    @property
    def load_label(self) -> str:
        return load_label(self.concurrency, self.speed)


ProgressCallback = Callable[[StepProgress], None]


class SweepRunner:
    """Runs the ceiling finder on a started controller, blocking the calling thread until it stops."""

    def __init__(
        self,
        control: LoadControl,
        settings: SweepSettings,
        on_progress: ProgressCallback | None = None,
        stop_flag: threading.Event | None = None,
        lengths: LengthTally | None = None,
    ) -> None:
        self.control = control
        self.settings = settings
        self.finder = CeilingFinder(settings)
        self._on_progress = on_progress
        self._stop = stop_flag or threading.Event()
        self._lengths = lengths
        self._snaps: queue.Queue[Snapshot] = queue.Queue()

    def run(self) -> SweepOutcome:
        """Step until the finder stops (or the stop flag is set, or the session ends); returns what it found."""
        self.control.subscribe(self._snaps.put)
        try:
            return self._run()
        finally:
            unsubscribe = getattr(self.control, "unsubscribe", None)
            if callable(unsubscribe):
                unsubscribe(self._snaps.put)

    def _run(self) -> SweepOutcome:
        planned = self.settings.step_count()
        try:
            while (load := self.finder.next_load()) is not None:
                if self._stop.is_set():
                    self.finder.stop("interrupted")
                    break
                index = len(self.finder.steps)
                speed = load if self.settings.axis == "speed" else None
                n = 0 if speed is not None else round(load)
                step = self._hold(index, n, planned, speed)
                if step is None:
                    break
                judged = self.finder.record(step)
                self._progress(StepProgress(index, planned, n, step.held_s, self.settings.step_time_s, judged,
                                            speed))  # fmt: skip
        except SweepAborted as exc:
            self.finder.stop(str(exc))
        return self.finder.outcome()

    def _hold(self, index: int, n: int, planned: int, speed: float | None = None) -> StepResult | None:
        _enter_step(self.control, index, n, speed)
        if self._lengths is not None:
            self._lengths.begin_phase(index)
        judge = StepJudge(index, n, self.settings, self._now_s(), speed)
        silent = 0
        while not self._stop.is_set():
            try:
                snap = self._snaps.get(timeout=_SNAPSHOT_WAIT_S)
            except queue.Empty:
                silent += 1
                if silent >= _MAX_SILENT_WAITS:
                    raise SweepAborted("the controller stopped sending snapshots") from None
                continue
            silent = 0
            if snap.state in (RunState.FAILED, RunState.STOPPED):
                raise SweepAborted(snap.message or f"the session {snap.state.value}")
            result = judge.feed(snap)
            if result is not None:
                return self._with_lengths(result)
            self._progress(StepProgress(index, planned, n, judge.held_s(snap), self.settings.step_time_s,
                                        speed=speed))  # fmt: skip
        self.finder.stop("interrupted")
        return None

    def _with_lengths(self, step: StepResult) -> StepResult:
        """Exact per-request means from the tally (the window's token sums include requests still streaming)."""
        if self._lengths is None:
            return step
        check = self._lengths.check(step.index)
        return step.model_copy(
            update={"mean_input_tokens": check.actual_input, "mean_output_tokens": check.actual_output}
        )

    def _now_s(self) -> float:
        """Session time of the latest snapshot: steps are timed on the snapshots' own clock."""
        while True:  # drop snapshots taken before the change; the judge also filters on target_concurrency
            try:
                self._snaps.get_nowait()
            except queue.Empty:
                break
        return self.control.latest.t_s

    def _progress(self, p: StepProgress) -> None:
        if self._on_progress is not None:
            self._on_progress(p)


class AutoRamp:
    """The TUI's auto-ramp (the ``a`` key): the ceiling finder driven one snapshot at a time.

    Call ``on_snapshot`` from the UI for every snapshot (it never blocks; it calls ``set_concurrency`` on the
    control). It starts from the current target concurrency (or ``settings.start`` when idle; a rate-mode
    session switches to concurrency), steps up while throughput rises, and when it finishes by itself it holds
    the load at the capacity it found. Steps are judged over the session's own window (``Snapshot.window_s``).
    The operator changing the load by hand, pausing it, or toggling the ramp off ends the ramp and leaves the
    load alone.
    """

    OVERRIDE_GRACE_S = 1.0  # snapshots this soon after a step change may predate it (queued in the UI)

    def __init__(self, control: LoadControl, settings: SweepSettings | None = None) -> None:
        self.control = control
        self.base_settings = settings or SweepSettings()
        self._finder: CeilingFinder | None = None
        self._judge: StepJudge | None = None
        self._outcome: SweepOutcome | None = None
        self._held = False

    @property
    def enabled(self) -> bool:
        return self._finder is not None

    @property
    def outcome(self) -> SweepOutcome | None:
        """The last finished (or stopped) ramp's result."""
        return self._outcome

    def toggle(self) -> str:
        """Start or stop the ramp; returns a line for the event log."""
        if self._finder is not None:
            self._finish("stopped by the operator", hold=False)
            return self._summary("auto-ramp off")
        start = max(1, self.control.latest.target_concurrency or self.base_settings.start)
        settings = self.base_settings.model_copy(update={"start": start, "max": max(start, self.base_settings.max)})
        self._finder = CeilingFinder(settings)
        self._outcome = None
        self._begin_step(self.control.latest)
        return f"auto-ramp on: from concurrency {start}, up to {settings.max}"

    def status(self) -> str:
        """A short label for the header while the ramp runs (empty when it does not)."""
        if self._finder is None or self._judge is None:
            return ""
        j = self._judge
        held = j.held_s(j.last) if j.last is not None else 0.0
        return f"auto: c={j.concurrency} step {j.index + 1} {held:.0f}/{self._finder.settings.step_time_s:.0f}s"

    def on_snapshot(self, snap: Snapshot) -> str | None:
        """Advance the ramp; returns an event-log line when a step ended or the ramp finished."""
        if self._finder is None or self._judge is None:
            return None
        if snap.state in (RunState.STOPPED, RunState.FAILED, RunState.STOPPING):
            self._finish("the session stopped", hold=False)
            return self._summary("auto-ramp stopped")
        if snap.state is RunState.PAUSED:  # a paused step's falling tok/s says nothing about the server
            self._finish("the operator paused the load", hold=False)
            return self._summary("auto-ramp off")
        j = self._judge
        if snap.target_concurrency != j.concurrency and snap.t_s > j.t_start_s + self.OVERRIDE_GRACE_S:
            self._finish(f"the operator set concurrency {snap.target_concurrency}", hold=False)
            return self._summary("auto-ramp off")
        step = j.feed(snap)
        if step is None:
            return None
        judged = self._finder.record(step)
        line = f"auto-ramp: c={judged.concurrency} {judged.output_tokens_per_s:,.0f} tok/s ({judged.verdict})"
        if self._finder.done:
            self._finish(self._finder.stop_reason)
            return self._summary("auto-ramp done")
        self._begin_step(snap)
        return line

    def _begin_step(self, snap: Snapshot) -> None:
        assert self._finder is not None
        n = self._finder.next_concurrency()
        if n is None:
            return
        index = len(self._finder.steps)
        _enter_step(self.control, index, n)
        self._judge = StepJudge(index, n, self._finder.settings, snap.t_s)

    def _finish(self, reason: str, hold: bool = True) -> None:
        if self._finder is None:
            return
        self._finder.stop(reason)
        self._outcome = self._finder.outcome()
        self._finder = None
        self._judge = None
        self._held = hold and self._outcome.capacity is not None
        if self._held and self._outcome.capacity is not None:
            self.control.set_concurrency(self._outcome.capacity)
        emit = getattr(self.control, "emit", None)
        if callable(emit):  # the result goes into the session (and its recording and report), not only the UI log
            emit(ControlEvent(perf_counter_ns(), EventKind.ANNOTATION, value=self._outcome.capacity,
                              message=self._summary("auto-ramp result")))

    def _summary(self, head: str) -> str:
        o = self._outcome
        if o is None or o.capacity is None or o.capacity_step is None:
            return f"{head}: {o.stop_reason if o else ''}".rstrip(": ")
        hold = f"; holding at {o.capacity}" if self._held else ""
        return (
            f"{head}: capacity {o.capacity} ({o.capacity_step.output_tokens_per_s:,.0f} tok/s), knee {o.knee}"
            f"{hold}. {o.stop_reason}"
        )

"""A ceiling search on a production trace: the load axis is the trace speed (``wattload sweep --trace``).

"How many times my traffic can this server take?" Each step replays the trace *on* from where the previous step
left it, at the step's speed (×1 = the recorded clock), open loop on the trace's own schedule; the ceiling
finder's rules judge each step as they judge a concurrency step. The trace is not restarted per step: a rerun of
the same rows would meet the prompts the server just cached (Mooncake ``hash_ids``, session traces) and flatter
every later step, and the real trace's mix and bursts go on as they would in production.

A trace is finite: when it runs out during a step, the sweep stops and says so; the steps before it count.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from time import perf_counter_ns

from engine.session.calibrate import ProbeError
from engine.session.spec import TraceSpec
from engine.session.trace_setup import TracePlan, prepare_trace
from engine.snapshot import RunState
from engine.sweep.rules import SweepSettings
from engine.sweep.runner import ProgressCallback, SweepRunner
from engine.sweep.session import CeilingResult, SweepTarget, open_controller
from engine.workload.lengths import LengthTally
from engine.workload.profile import ProfileInfo
from engine.workload.traces import TraceError, TraceWindow


def trace_time_needed(settings: SweepSettings) -> float:
    """Trace seconds the steps replay at most: each holds up to ``step_time_s`` of wall time at its speed."""
    return sum(settings.step_time_s * speed for speed in settings.speeds)


def trace_profile_info(plan: TracePlan) -> ProfileInfo:
    """What the sweep report stores as its workload: the trace's fingerprint (sha256, rows, lengths)."""
    fp = plan.fingerprint
    return ProfileInfo(name=f"trace-{fp.kind}", path=fp.path, sha256=fp.sha256,
                       profile={"trace": fp.model_dump(mode="json")}, data=fp)  # fmt: skip


def find_trace_ceiling(
    target: SweepTarget,
    trace: TraceSpec,
    settings: SweepSettings,
    *,
    seed: int = 0,
    on_progress: ProgressCallback | None = None,
    stop_flag: threading.Event | None = None,
    notify: Callable[[str], None] = lambda _line: None,
) -> tuple[CeilingResult, TracePlan | None]:
    """Prepare the trace (detect, check, calibrate; each said to ``notify``), then step its speed on one
    controller until the finder stops, the trace ends, or ``stop_flag`` is set. Raises TraceError for the file
    (one line, before any request)."""
    t0 = perf_counter_ns()
    window = TraceWindow(*trace.window_s) if trace.window_s is not None else None
    config = target.config.model_copy(update={"seed": seed, "window_s": settings.window_s, "duration_s": None})
    try:
        factory, config, plan = prepare_trace(config, trace.path, speed=settings.speeds[0], window=window)
    except ProbeError as exc:
        return _ended(f"trace {trace.path}", t0, str(exc).splitlines()[0]), None
    label = f"trace-{plan.fingerprint.kind}"
    notify(f"trace detected as {factory.source.description}")
    notify(plan.fingerprint.line())
    if plan.skipped:
        notify(f"{trace.path}: {plan.skipped}")
    if (warning := check_trace_covers(settings, plan.fingerprint.duration_s)):
        notify(warning)
    tally = LengthTally(config.input_tokens, config.max_tokens)
    controller = open_controller(target, config, factory, (tally,))
    try:
        controller.start()
        outcome = SweepRunner(controller, settings, on_progress, stop_flag, lengths=tally).run()
        reason = outcome.stop_reason
        if controller.latest.state in (RunState.STOPPING, RunState.STOPPED) and _trace_ran_out(controller):
            at = len(outcome.steps) + 1
            speed = settings.speeds[min(at, len(settings.speeds)) - 1]
            reason = (f"the trace ended during step {at} (×{speed:g}) after its {plan.fingerprint.rows:,} rows: the "
                      "steps before it are reported; a longer --trace-window or a lower --max goes further")
            outcome = outcome.model_copy(update={"stop_reason": reason})
    finally:
        controller.close()
    ok = any(s.requests for s in outcome.steps)
    return CeilingResult(workload=label, status="ok" if ok else "failed", message="" if ok else reason,
                         calibration=plan.calibration, lengths=tally.check(), outcome=outcome,
                         duration_s=(perf_counter_ns() - t0) / 1e9), plan  # fmt: skip


def _trace_ran_out(controller: object) -> bool:
    reason = str(getattr(controller, "stop_reason", "") or "")
    return reason.startswith("request count reached")


def _ended(workload: str, t0_ns: int, message: str) -> CeilingResult:
    return CeilingResult(workload=workload, status="failed", message=message,
                         duration_s=(perf_counter_ns() - t0_ns) / 1e9)  # fmt: skip


def check_trace_covers(settings: SweepSettings, plan_duration_s: float | None) -> str:
    """A warning line when the trace (or its window) is shorter than the steps may replay ("" otherwise)."""
    if plan_duration_s is None or not math.isfinite(plan_duration_s):
        return ""
    needed = trace_time_needed(settings)
    if plan_duration_s >= needed:
        return ""
    return (f"the trace covers {plan_duration_s:,.0f} s and the steps may replay up to {needed:,.0f} s of it "
            f"(--step-time {settings.step_time_s:g}s at ×{', ×'.join(f'{s:g}' for s in settings.speeds)}): "
            "the sweep stops where it ends")


__all__ = ["TraceError", "check_trace_covers", "find_trace_ceiling", "trace_profile_info", "trace_time_needed"]

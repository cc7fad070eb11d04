"""One ceiling search against one server: calibrate, start a controller, run the finder, report.

Used by ``wattload sweep`` for a profile and by the matrix run for each cell. The result carries everything
needed to reproduce and trust it: the calibration, target versus measured lengths, each step's figures.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from engine.config import RunConfig
from engine.control import LoadControl, SessionSink
from engine.gpu.base import BackendKind
from engine.session.calibrate import ExceedsContext, ProbeError, check_cell_fits
from engine.session.workload_setup import apply_profile, calibrated_factory
from engine.sweep.rules import SweepOutcome, SweepSettings
from engine.sweep.runner import ProgressCallback, SweepRunner
from engine.workload.calibration import CalibrationResult
from engine.workload.lengths import LengthCheck, LengthTally
from engine.workload.profile import LoadedProfile
from engine.workload.prompts import ProfileRequestFactory
from engine.workload.sessions import SessionFactory
from engine.workload.synthetic import RequestFactory

if TYPE_CHECKING:
    from engine.load.controller import Controller
    from engine.load.ray_spec import RaySpec
    from engine.pricing import PricingProfile

CellStatus = Literal["ok", "exceeds context", "failed"]


@dataclass(frozen=True)
class SweepTarget:
    """The server and how to measure it; ``config`` is the base run config (its load fields are overridden)."""

    config: RunConfig
    gpu: BackendKind = "none"
    gpus: str | None = None
    sim_url: str | None = None
    pricing: PricingProfile | None = None
    ray: RaySpec | None = None  # --ray: every step's workers are Ray actors


class CeilingResult(BaseModel):
    """One ceiling search: a profile's, or one matrix cell's."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workload: str
    status: CellStatus
    message: str = ""
    calibration: CalibrationResult | None = None
    lengths: LengthCheck = LengthCheck()
    outcome: SweepOutcome | None = None
    duration_s: float = 0.0

    @property
    def capacity_line(self) -> str:
        o = self.outcome
        if self.status != "ok" or o is None:
            return f"{self.workload}: {self.status}{': ' + self.message if self.message else ''}"
        if o.capacity_speed is not None and o.capacity_step is not None:
            knee = "" if o.knee_speed is None else f", knee ×{o.knee_speed:g}"
            return (f"{self.workload}: capacity ×{o.capacity_speed:g} the trace's speed "
                    f"({o.capacity_step.output_tokens_per_s:,.0f} output tok/s, "
                    f"{o.capacity_step.requests_per_s:,.1f} req/s){knee}")  # fmt: skip
        if o.capacity is None or o.capacity_step is None:
            return f"{self.workload}: no capacity found ({o.stop_reason})"
        return (
            f"{self.workload}: capacity {o.capacity} concurrent ({o.capacity_step.output_tokens_per_s:,.0f} output "
            f"tok/s), knee {o.knee}"
        )


def run_config_for(target: SweepTarget, loaded: LoadedProfile, settings: SweepSettings, seed: int) -> RunConfig:
    """The run config a search uses: the profile's API shape, the sweep's window, the first step's load."""
    return apply_profile(target.config, loaded).model_copy(
        update={
            "window_s": settings.window_s,
            "concurrency": settings.start,
            "duration_s": None,
            "max_requests": None,
            "seed": seed,
        }
    )


@dataclass(frozen=True)
class Prepared:
    """A workload ready to run on a server: its run config and its calibrated request factory."""

    loaded: LoadedProfile
    config: RunConfig
    factory: ProfileRequestFactory | SessionFactory
    calibration: CalibrationResult | None
    t0_ns: int


def prepare(
    target: SweepTarget,
    loaded: LoadedProfile,
    settings: SweepSettings,
    seed: int = 0,
    check_fits: tuple[int, int] | None = None,
) -> Prepared | CeilingResult:
    """Calibrate (and check that the largest request fits); a result instead when the workload cannot run.

    ``check_fits`` = (input, output) tokens of the largest request: a shape the server cannot hold is reported
    "exceeds context" rather than failing every request of the run.
    """
    t0 = perf_counter_ns()
    config = run_config_for(target, loaded, settings, seed)
    try:
        factory, calibration = calibrated_factory(config, loaded, seed)
        if check_fits is not None:
            asyncio.run(check_cell_fits(config, factory.base if isinstance(factory, SessionFactory) else factory,
                                        *check_fits))  # fmt: skip
    except ExceedsContext as exc:
        return _ended(loaded, t0, "exceeds context", str(exc))
    except (ProbeError, ValueError, OSError) as exc:
        return _ended(loaded, t0, "failed", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    return Prepared(loaded, config, factory, calibration, t0)


def open_controller(
    target: SweepTarget, config: RunConfig, factory: RequestFactory, sinks: tuple[SessionSink, ...] = ()
) -> Controller:
    """A controller for the target (telemetry, pricing) driving ``factory``; not started."""
    from engine.session.build import open_controller as open_session_controller
    from engine.session.spec import SessionSpec

    spec = SessionSpec(config=config, probe="none", gpu=target.gpu, gpus=target.gpus, sim_url=target.sim_url,
                       pricing=target.pricing, recording=None, ray=target.ray)
    return open_session_controller(spec, request_factory=factory, sinks=sinks)


def search(
    control: LoadControl,
    prepared: Prepared,
    settings: SweepSettings,
    tally: LengthTally,
    *,
    on_progress: ProgressCallback | None = None,
    stop_flag: threading.Event | None = None,
) -> CeilingResult:
    """Run the ceiling finder on a started controller whose requests come from ``prepared``'s factory and whose
    finished requests reach ``tally``."""
    outcome = SweepRunner(control, settings, on_progress, stop_flag, lengths=tally).run()
    ok = any(s.requests for s in outcome.steps)
    return _ended(
        prepared.loaded,
        prepared.t0_ns,
        "ok" if ok else "failed",
        "" if ok else outcome.stop_reason,
        calibration=prepared.calibration,
        lengths=tally.check(),
        outcome=outcome,
    )


def find_ceiling(
    target: SweepTarget,
    loaded: LoadedProfile,
    settings: SweepSettings,
    *,
    seed: int = 0,
    on_progress: ProgressCallback | None = None,
    stop_flag: threading.Event | None = None,
    check_fits: tuple[int, int] | None = None,
) -> CeilingResult:
    """Calibrate, then run the ceiling finder on a fresh controller (one ceiling search, start to end)."""
    prepared = prepare(target, loaded, settings, seed, check_fits)
    if isinstance(prepared, CeilingResult):
        return prepared
    tally = LengthTally.for_profile(loaded)
    controller = open_controller(target, prepared.config, prepared.factory, (tally,))
    try:
        controller.start()
        return search(controller, prepared, settings, tally, on_progress=on_progress, stop_flag=stop_flag)
    finally:
        controller.close()


def _ended(loaded: LoadedProfile, t0_ns: int, status: CellStatus, message: str = "", **kw: Any) -> CeilingResult:
    return CeilingResult(
        workload=loaded.profile.name,
        status=status,
        message=message,
        duration_s=(perf_counter_ns() - t0_ns) / 1e9,
        **kw,
    )

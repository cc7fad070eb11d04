"""One power-cap sweep against one server: calibrate, hold the load (or find the ceiling first), step the caps.

The controller owns the GPU session, so closing it restores the original caps on every path out of here
(normal end, an exception, Ctrl-C as KeyboardInterrupt); SIGTERM/SIGHUP and atexit are covered by the power-cap
manager itself.
"""

from __future__ import annotations

import threading
from typing import Literal

from pydantic import BaseModel, ConfigDict

from engine.snapshot import LoadMode
from engine.sweep.powercap_sweep import (
    CapProgressCallback,
    CapSweepResult,
    CapSweepRunner,
    CapSweepSettings,
    conclude,
)
from engine.sweep.rules import SweepSettings
from engine.sweep.runner import ProgressCallback
from engine.sweep.session import CeilingResult, SweepTarget, open_controller, prepare, search
from engine.workload.lengths import LengthTally
from engine.workload.profile import LoadedProfile


class CapLoad(BaseModel):
    """The load held during the sweep: a fixed concurrency, a rate, or the capacity the ceiling finder finds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["concurrency", "rate", "capacity"] = "concurrency"
    concurrency: int = 16
    """The held concurrency (for "capacity": 0 until the ceiling finder has found it)."""
    rate: float = 1.0
    grid: tuple[int, ...] = ()
    """--grid: concurrency steps, each swept over all caps (the 2-D profile)."""

    def describe(self) -> str:
        if self.grid:
            return "concurrency " + ", ".join(str(c) for c in self.grid)
        if self.kind == "rate":
            return f"rate {self.rate:g} req/s"
        if self.kind == "capacity":
            return "capacity (the ceiling finder runs first)" if self.concurrency <= 0 else (
                f"capacity (concurrency {self.concurrency})")
        return f"concurrency {self.concurrency}"


def run_cap_sweep(
    target: SweepTarget,
    loaded: LoadedProfile,
    settings: CapSweepSettings,
    load: CapLoad,
    *,
    seed: int = 0,
    ceiling_settings: SweepSettings | None = None,
    on_progress: CapProgressCallback | None = None,
    on_ceiling_progress: ProgressCallback | None = None,
    stop_flag: threading.Event | None = None,
) -> tuple[CapSweepResult, CeilingResult | None]:
    """Run the sweep start to end; returns its result and, with ``load.kind == "capacity"``, the ceiling search."""
    stop = stop_flag or threading.Event()
    window = settings.step_time_s  # one window for the whole session: a cap step's figures cover exactly it
    base = ceiling_settings or SweepSettings()
    ceiling = base.model_copy(update={"window_s": window, "step_time_s": max(base.step_time_s, 1.5 * window)})
    prepared = prepare(target, loaded, ceiling, seed)
    if isinstance(prepared, CeilingResult):
        raise CapSweepError(f"{loaded.profile.name}: {prepared.status}: {prepared.message}")
    config = prepared.config.model_copy(
        update={
            "mode": LoadMode.RATE if load.kind == "rate" else LoadMode.CONCURRENCY,
            "concurrency": load.grid[0] if load.grid else load.concurrency,
            "rate": load.rate,
            "window_s": window,
        }
    )
    tally = LengthTally.for_profile(loaded)
    controller = open_controller(target, config, prepared.factory, (tally,))
    found: CeilingResult | None = None
    try:
        controller.start()
        if load.kind == "capacity":
            found = search(controller, prepared, ceiling, tally, on_progress=on_ceiling_progress, stop_flag=stop)
            o = found.outcome
            if stop.is_set() or o is None or o.capacity is None:
                why = "interrupted" if stop.is_set() else (o.stop_reason if o else found.message)
                return _empty(settings, load, f"no capacity found: {why}"), found
            load = load.model_copy(update={"concurrency": o.capacity})
            controller.set_concurrency(o.capacity)
        runner = CapSweepRunner(controller, settings, on_progress, stop, load.grid)
        steps = runner.run()
        pricing = target.pricing
        kwh_price, pue = _energy_price(pricing)
        result = conclude(
            settings,
            load.describe(),
            steps,
            dollars_per_kwh=kwh_price,
            pue=pue,
            grid=bool(load.grid),
            stop_reason=runner.stop_reason,
            completed=runner.stop_reason == "finished",
        )
        return result, found
    finally:
        controller.close()  # restores the original caps


class CapSweepError(ValueError):
    """The workload could not start (calibration failed, does not fit); ``str()`` is one line."""


def _empty(settings: CapSweepSettings, load: CapLoad, reason: str) -> CapSweepResult:
    return conclude(settings, load.describe(), [], stop_reason=reason, completed=False)


def _energy_price(pricing: object) -> tuple[float | None, float]:
    """$/kWh and PUE for the monthly saving (a rental price that includes power still saves the operator's kWh,
    priced at the profile's $/kWh when it gives one)."""
    energy = getattr(pricing, "energy", None)
    if energy is None:
        return None, 1.0
    price = getattr(energy, "dollars_per_kwh", None)
    return (float(price) if price is not None else None), float(getattr(energy, "pue", 1.0) or 1.0)

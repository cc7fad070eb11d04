"""The dashboard's live power-cap sweep (the ``w`` key): the same sweep as ``sweep --power-caps``, on the running
session, in a background thread.

It holds whatever load the operator set, steps the cap from the GPU's maximum down to 40% of it (8 caps, each
measured over the session's own window), writes each cap's figures and the sweet spot to the event log as
annotations (so recordings keep them too), then puts back the cap the GPU had before the sweep. The original caps
are still restored at exit by the session itself. Never imports textual.
"""

from __future__ import annotations

import threading
from time import perf_counter_ns

from engine.records import ControlEvent, EventKind
from engine.reports.numbers import fmt_num
from engine.reports.text import sweet_spot_text
from engine.snapshot import Snapshot
from engine.sweep.powercap_sweep import CapControl, CapProgress, CapSweepRunner, CapSweepSettings, conclude
from engine.sweep.sweetspot import PickRule

STEPS = 8
LOWEST_FRACTION = 0.4


def default_caps(snap: Snapshot) -> list[float]:
    """From the first GPU's maximum limit down to max(its minimum, 40% of the maximum), 8 caps, 25 W rounded."""
    gpus = [g for g in snap.gpu.gpus if g.max_limit_w]
    if not gpus:
        return []
    top = float(gpus[0].max_limit_w or 0.0)
    low = max(float(gpus[0].min_limit_w or 0.0), LOWEST_FRACTION * top)
    step = (top - low) / (STEPS - 1)
    return sorted({round((top - k * step) / 25.0) * 25.0 for k in range(STEPS)}, reverse=True)


class LiveCapSweep:
    """Start/stop a cap sweep on a live session; ``toggle`` returns one line for the UI."""

    def __init__(self, control: CapControl, rule: PickRule | None = None) -> None:
        self.control = control
        self.rule = rule or PickRule()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.result_line = ""

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def toggle(self) -> str:
        if self.running:
            self._stop.set()
            return "cap sweep: stopping after this cap"
        snap = self.control.latest
        caps = default_caps(snap)
        if not caps:
            return "cap sweep: no GPU power limits to sweep (no GPU telemetry)"
        before = snap.gpu.gpus[0].power_limit_w
        settings = CapSweepSettings(caps_w=caps, step_time_s=snap.window_s, min_requests=10, rule=self.rule)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(settings, before), name="wattload-capsweep",
                                        daemon=True)  # fmt: skip
        self._thread.start()
        return f"cap sweep on: {', '.join(fmt_num(c) for c in caps)} W, {snap.window_s:g}s each (w again: stop)"

    def _note(self, text: str) -> None:
        self.control.emit(ControlEvent(perf_counter_ns(), EventKind.ANNOTATION, message=text))

    def _progress(self, p: CapProgress) -> None:
        if p.finished is None:
            return
        s = p.finished.step
        self._note(
            f"cap sweep {p.index + 1}/{p.caps} {fmt_num(p.cap_w)} W: {fmt_num(s.output_tokens_per_s)} tok/s, "
            f"{fmt_num(s.watts)} W, {fmt_num(s.joules_per_output_token)} J/tok"
        )

    def _run(self, settings: CapSweepSettings, before: float | None) -> None:
        runner = CapSweepRunner(self.control, settings, self._progress, self._stop)
        try:
            steps = runner.run()
            result = conclude(settings, "live load", steps, stop_reason=runner.stop_reason,
                              completed=runner.stop_reason == "finished")  # fmt: skip
            self.result_line = f"cap sweep done: {sweet_spot_text(result)}" if steps else "cap sweep: nothing measured"
            if runner.stop_reason not in ("finished", "interrupted"):
                self.result_line += f" ({runner.stop_reason})"
            self._note(self.result_line)
        except Exception as exc:  # a sweep bug must not take the dashboard down
            self._note(f"cap sweep failed: {exc}".splitlines()[0])
        finally:
            if before is not None:
                self.control.set_power_cap(before)

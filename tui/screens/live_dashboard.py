"""The live dashboard: load, power-cap, pause, recording and auto-ramp keys over a LoadControl.

A key's new target is shown at once (``pending``) and trusted over the snapshot's until the engine reports it,
so a burst of presses steps from the value just asked for, not from a snapshot that has not caught up yet.
Control calls that may touch hardware or disk (power caps, recording files) run off the UI thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, ClassVar, cast

from textual.app import SystemCommand
from textual.binding import Binding, BindingType

from engine.control import LoadControl
from engine.reports import format as fmt
from engine.snapshot import EventView, LoadMode, RunState, Snapshot
from tui.ramp_link import RampLine, RampLink
from tui.screens.dashboard import DashboardScreen
from tui.screens.workers_view import WorkersScreen
from tui.toasts import toasts

if TYPE_CHECKING:
    from engine.sweep.powercap_sweep import CapControl
    from engine.sweep.rules import SweepSettings
    from tui.live_capsweep import LiveCapSweep

DEFAULT_CAP_STEP_W = 25.0
PENDING_S = 1.5  # a key's new target is trusted over the snapshot's until the engine reports it (or this long)

LIVE_BINDINGS: list[BindingType] = [
    Binding("plus", "load_step(1)", "more", key_display="+", tooltip="raise concurrency (or rate) by one step"),
    Binding("up", "load_step(1)", "load+", show=False),
    Binding("minus", "load_step(-1)", "less", key_display="-", tooltip="lower concurrency (or rate) by one step"),
    Binding("down", "load_step(-1)", "load-", show=False),
    Binding("asterisk", "load_scale(2)", "load×2", show=False, tooltip="double concurrency (or rate)"),
    Binding("shift+up", "load_scale(2)", "load×2", show=False),
    Binding("slash", "load_scale(0.5)", "load÷2", show=False, tooltip="halve concurrency (or rate)"),
    Binding("shift+down", "load_scale(0.5)", "load÷2", show=False),
    Binding("left_square_bracket", "cap_step(-1)", "cap-", key_display="[", tooltip="lower the GPU power cap"),
    Binding("right_square_bracket", "cap_step(1)", "cap+", key_display="]", tooltip="raise the GPU power cap"),
    Binding(
        "a",
        "toggle_auto_ramp",
        "ramp",  # "auto-ramp" would push "quit" out of an 80-column footer
        tooltip="auto-ramp on/off: raise load until throughput peaks",
    ),
    Binding("w", "toggle_cap_sweep", "cap sweep", show=False,
            tooltip="power-cap sweep: step the cap down at this load, find the sweet spot (again: stop)"),
    Binding("space", "toggle_pause", "pause", tooltip="pause / resume the load (in-flight requests finish)"),
    Binding("r", "toggle_recording", "rec", tooltip="start / stop recording the session"),
    Binding("n", "workers", "workers", show=False, tooltip="every worker of a --ray run: node, lags, rec/s, clock"),
]


class LiveDashboard(DashboardScreen):
    """Steers a live session; every control call answers with one line (a toast; the engine logs the fact)."""

    BINDINGS: ClassVar[list[BindingType]] = LIVE_BINDINGS

    def __init__(
        self,
        control: LoadControl,
        *,
        step: float | None = None,
        cap_step_w: float = DEFAULT_CAP_STEP_W,
        ramp_settings: SweepSettings | None = None,
    ) -> None:
        super().__init__(control)
        self.control = control
        config = getattr(control, "config", None)
        self.step = float(step if step is not None else getattr(config, "step", 1.0) or 1.0)
        self.cap_step_w = cap_step_w
        self.ramp = RampLink(control, ramp_settings)
        self._cap_sweep: LiveCapSweep | None = None
        self._pending_target: tuple[float, float] | None = None
        self._pending_paused: tuple[float, bool] | None = None
        self._pending_recording: tuple[float, bool] | None = None

    # -- hooks -------------------------------------------------------------------------------------------------

    def ingest(self, snapshot: Snapshot) -> tuple[RampLine, ...]:
        super().ingest(snapshot)
        return self.ramp.feed(snapshot)

    def absorb(self, t_s: float, row: tuple[float, ...], events: tuple[EventView, ...],
               lines: tuple[RampLine, ...]) -> None:
        super().absorb(t_s, row, events, lines)
        panels = self.panels
        for line, pop_up in lines:
            panels.events.add_line(t_s, "ramp", line)
            panels.status.note(t_s, "ramp", line)
            if pop_up:
                toasts(self.app).say("auto-ramp", line, title="auto-ramp", timeout=6)

    def show(self, snapshot: Snapshot) -> None:
        self._settle_pending(snapshot)
        self.panels.header.ramp = self.ramp.status
        self.panels.load.key_step = self.step
        super().show(snapshot)

    def quit_question(self) -> tuple[str | None, bool]:
        return self.current.recording, bool(self.control.power_cap_changed)

    def close_source(self, keep_caps: bool) -> None:
        self.control.close(keep_power_caps=keep_caps)

    def help_note(self) -> str:
        return f"load step {fmt.sig(self.step)}, power-cap step {self.cap_step_w:g} W"

    def commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("More load", "Concurrency (or rate) up one step", lambda: self.action_load_step(1))
        yield SystemCommand("Less load", "Concurrency (or rate) down one step", lambda: self.action_load_step(-1))
        yield SystemCommand("Double load", "Double concurrency (or rate)", lambda: self.action_load_scale(2))
        yield SystemCommand("Halve load", "Halve concurrency (or rate)", lambda: self.action_load_scale(0.5))
        yield SystemCommand("Lower power cap", "GPU power cap down one step", lambda: self.action_cap_step(-1))
        yield SystemCommand("Raise power cap", "GPU power cap up one step", lambda: self.action_cap_step(1))
        yield SystemCommand(
            "Auto-ramp",
            "Step concurrency up until throughput stops rising, then hold (again: stop)",
            self.action_toggle_auto_ramp,
        )
        yield SystemCommand("Pause / resume", "Stop sending new requests, or start again", self.action_toggle_pause)
        yield SystemCommand("Start / stop recording", "Record this session to a file", self.action_toggle_recording)

    # -- state -------------------------------------------------------------------------------------------------

    def _settle_pending(self, snapshot: Snapshot) -> None:
        """Forget a key's pending value once the engine reports it (or it has had time to)."""
        now = time.perf_counter()
        if self._pending_target is not None:
            at, value = self._pending_target
            current = snapshot.target_rate if snapshot.mode is LoadMode.RATE else snapshot.target_concurrency
            if abs(current - value) < 1e-9 or now - at > PENDING_S:
                self._pending_target = None
        if self._pending_paused is not None:
            at, paused = self._pending_paused
            if (snapshot.state is RunState.PAUSED) == paused or now - at > PENDING_S:
                self._pending_paused = None
        if self._pending_recording is not None:
            at, recording = self._pending_recording
            if bool(snapshot.recording) == recording or now - at > PENDING_S:
                self._pending_recording = None

    def _target(self) -> float:
        if self._pending_target is not None and time.perf_counter() - self._pending_target[0] <= PENDING_S:
            return self._pending_target[1]
        snapshot = self.current
        return snapshot.target_rate if snapshot.mode is LoadMode.RATE else float(snapshot.target_concurrency)

    def _set_target(self, value: float) -> None:
        if self.current.mode is LoadMode.RATE:
            value = max(0.0, round(value, 6))
            self.control.set_rate(value)
        else:
            value = float(max(0, round(value)))
            self.control.set_concurrency(int(value))
        self._pending_target = (time.perf_counter(), value)

    # -- actions -----------------------------------------------------------------------------------------------

    def action_load_step(self, direction: int) -> None:
        step = self.step if self.current.mode is LoadMode.RATE else max(1.0, round(self.step))
        self._set_target(self._target() + direction * step)

    def action_load_scale(self, factor: float) -> None:
        current = self._target()
        if factor > 1 and current <= 0:
            new = self.step  # doubling zero would stay zero: start from one step
        elif self.current.mode is LoadMode.CONCURRENCY and factor < 1:
            new = max(1.0, float(int(current * factor))) if current > 1 else 0.0
        else:
            new = current * factor
        self._set_target(new)

    def action_cap_step(self, direction: int) -> None:
        self._in_thread("power_cap", self.control.step_power_cap, direction * self.cap_step_w)

    def action_toggle_pause(self) -> None:
        paused = self.current.state is RunState.PAUSED
        if self._pending_paused is not None:
            paused = self._pending_paused[1]
        if paused:
            self.control.resume()
        else:
            self.control.pause()
        self._pending_paused = (time.perf_counter(), not paused)

    def action_workers(self) -> None:
        self.app.push_screen(WorkersScreen(self.current))

    def action_toggle_recording(self) -> None:
        recording = bool(self.current.recording)
        if self._pending_recording is not None:
            recording = self._pending_recording[1]
        self._pending_recording = (time.perf_counter(), not recording)
        if recording:
            self._in_thread("record_stop", self.control.stop_recording)
        else:
            self._in_thread("record_start", self.control.start_recording)

    def action_toggle_auto_ramp(self) -> None:
        """a: start or stop the auto-ramp; the engine thread carries it out with the next snapshot."""
        if self.current.state in (RunState.STOPPING, RunState.STOPPED, RunState.FAILED):
            toasts(self.app).say("auto-ramp", "auto-ramp: the session has ended", severity="warning", timeout=3)
            return
        if self.current.trace:  # the ramp steps concurrency, which stops a trace's clock
            toasts(self.app).say("auto-ramp", "auto-ramp: not in a trace replay; + - * / set the trace speed, and "
                                 "`wattload sweep --trace` steps it", severity="warning", timeout=5)
            return
        self.ramp.request_toggle()

    def action_toggle_cap_sweep(self) -> None:
        """w: start or stop a live power-cap sweep (tui.live_capsweep); its results go to the event log."""
        if self._cap_sweep is None:
            from tui.live_capsweep import LiveCapSweep

            self._cap_sweep = LiveCapSweep(cast("CapControl", self.control))
        toasts(self.app).say("cap sweep", self._cap_sweep.toggle(), title="cap sweep", timeout=4)

    def _in_thread(self, kind: str, call: Callable[..., str], *args: object) -> None:
        """Run a control call off the UI thread, then show its one-line answer as the toast of its kind."""

        def work() -> None:
            try:
                message = call(*args)
            except Exception as exc:  # the contract says "returns a message"; a bug still must not kill the UI
                message = f"{kind} failed: {exc}".splitlines()[0]
            self.app.call_from_thread(self._say, kind, message)

        self.run_worker(work, name=kind, group="control", thread=True, exit_on_error=False)

    def _say(self, kind: str, message: str) -> None:
        """A hotkey's answer. The engine logs what it actually did (cap read-backs, recording paths) as events,
        which reach the event log with the snapshots, so the log holds each fact once."""
        toast_kind = "record" if kind.startswith("record") else kind
        toasts(self.app).say(toast_kind, message, title=kind.replace("_", " "), timeout=5)

"""The live TUI: panels over a snapshot source, hotkeys over a LoadControl (live) or a ReplayControl (replay).

Snapshots arrive on the engine's thread. The callback only stores the newest one, queues its chart row and
events (cheap appends) and posts a single wake-up if none is pending, so however slow the terminal is, the
engine never waits on the UI and the UI never works through a backlog: it always draws the newest snapshot.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual import events
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen

from engine.control import LoadControl, ReplayControl
from engine.reports import format as fmt
from engine.snapshot import EventView, LoadMode, RunState, Snapshot
from engine.sweep.rules import SweepSettings
from engine.sweep.runner import AutoRamp
from tui.screens.confirm_quit import ConfirmQuitScreen, QuitChoice
from tui.screens.dashboard import DashboardScreen, LiveDashboard, ReplayDashboard
from tui.screens.failed import FailedScreen
from tui.screens.help import HelpScreen, help_rows
from tui.screens.too_small import TooSmallScreen, too_small
from tui.widgets.charts import ChartHistory, snapshot_row
from tui.widgets.timeline import speed_label

if TYPE_CHECKING:
    from engine.sweep.powercap_sweep import CapControl
    from tui.live_capsweep import LiveCapSweep

DEFAULT_CAP_STEP_W = 25.0
PENDING_S = 1.5  # a key's new target is trusted over the snapshot's until the engine reports it (or this long)
INBOX_MAX = 4096  # rows waiting for a stalled UI; beyond this the oldest chart rows are dropped
REPLAY_DISABLED = "replay: load keys are disabled"
HANGUP_GRACE_S = 20.0  # after SIGHUP, stopping the engine may take this long before the process leaves anyway
EXIT_HANGUP = 129  # 128 + SIGHUP, as a shell reports it

APP_BINDINGS: list[BindingType] = [
    Binding("question_mark", "help", "help", key_display="?", tooltip="this help"),
    Binding("q", "quit", "quit", tooltip="quit (asks first if recording or power caps changed)"),
    Binding("ctrl+c", "force_quit", "force quit", show=False, priority=True, tooltip="quit now, restoring caps"),
]


class RampLink:
    """The ``a`` key's auto-ramp, driven on the engine's thread from the same callback that receives snapshots.

    Why there and not on the UI thread: AutoRamp must judge every snapshot, and the UI skips frames. Worse, a UI
    that stalls and then works through a backlog would hand the ramp snapshots taken before its last step change,
    long after that change (AutoRamp would read the old target as the operator overriding it). On the engine
    thread ``set_concurrency`` lands before the next snapshot is taken, so every snapshot it sees carries its own
    target. AutoRamp never blocks, so the engine never waits on it.

    The UI never touches the AutoRamp itself (it is not thread-safe): ``a`` only counts a request, which the next
    snapshot's callback carries out (at most one tick later), so there is no lock the engine could wait on.
    ``status`` is a plain string the engine thread replaces and the UI reads.
    """

    def __init__(self, control: LoadControl, settings: SweepSettings | None = None) -> None:
        self.ramp = AutoRamp(control, settings)
        self.status = ""  # the header label while the ramp runs; written by the engine thread only
        self._requested = 0  # toggles asked for: written by the UI thread only
        self._done = 0  # toggles carried out: written by the engine thread only

    def request_toggle(self) -> None:
        """UI thread: ask for a toggle; the next snapshot carries it out."""
        self._requested += 1

    def feed(self, snapshot: Snapshot) -> tuple[tuple[str, bool], ...]:
        """Engine thread: carry out pending toggles, else advance the ramp; returns (line, notify) pairs."""
        lines: list[tuple[str, bool]] = []
        try:
            if self._done < self._requested:
                while self._done < self._requested:
                    self._done += 1
                    lines.append((self.ramp.toggle(), True))
            else:
                line = self.ramp.on_snapshot(snapshot)
                if line is not None:
                    lines.append((line, not self.ramp.enabled))  # step verdicts go to the log; the end also pops up
        except Exception as exc:  # a ramp bug must not cost the dashboard its snapshots: drop the ramp, say why
            self.ramp = AutoRamp(self.ramp.control, self.ramp.base_settings)
            lines.append((f"auto-ramp failed and stopped: {exc}".splitlines()[0], True))
        self.status = self.ramp.status()
        return tuple(lines)


class SnapshotArrived(Message):
    """A wake-up: the newest snapshot waits in the app's slot. Consecutive wake-ups merge into one."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SnapshotArrived)


Arrival = tuple[float, tuple[float, ...], tuple[EventView, ...], tuple[tuple[str, bool], ...]]
"""One snapshot's share of the inbox: t_s, chart row, new events, auto-ramp (line, notify) pairs."""


class WattloadApp(App[int]):
    """Dashboard over ``control``: a LoadControl (``replay=False``) or a ReplayControl (``replay=True``)."""

    CSS_PATH = "app.tcss"
    TITLE = "wattload"
    BINDINGS: ClassVar[list[BindingType]] = APP_BINDINGS
    # textual declares the breakpoints as instance attributes with class defaults, so no ClassVar here.
    HORIZONTAL_BREAKPOINTS: list[tuple[int, str]] | None = [(0, "-narrow"), (100, "-medium"), (150, "-wide")]  # noqa: RUF012
    VERTICAL_BREAKPOINTS: list[tuple[int, str]] | None = [(0, "-short"), (34, "-tall")]  # noqa: RUF012

    def __init__(
        self,
        control: LoadControl | ReplayControl,
        *,
        replay: bool = False,
        refresh_hz: float = 4.0,
        step: float | None = None,
        cap_step_w: float = DEFAULT_CAP_STEP_W,
        handle_signals: bool = False,
        ramp_settings: SweepSettings | None = None,
    ) -> None:
        super().__init__()
        self.control = control
        self.replay = replay
        self.min_interval_s = 1.0 / refresh_hz if refresh_hz > 0 else 0.0
        config = getattr(control, "config", None)
        self.step = float(step if step is not None else getattr(config, "step", 1.0) or 1.0)
        self.cap_step_w = cap_step_w
        self.handle_signals = handle_signals
        self.history = ChartHistory()
        self.ramp = None if replay else RampLink(cast(LoadControl, control), ramp_settings)
        self._cap_sweep: LiveCapSweep | None = None
        self.closed = False  # control.close() has been called (run_tui must not call it again)
        self.exit_message = ""  # printed by run_tui after the terminal is restored
        self.renders = 0  # how many frames were drawn (tests and the CPU benchmark read it)
        # Written by the engine thread, read by the UI thread (single reference assignments and deque ops).
        self._latest: Snapshot | None = None
        self._inbox: deque[Arrival] = deque(maxlen=INBOX_MAX)
        self._wake_pending = False
        self._accepting = True
        # UI-thread state.
        self._shown: Snapshot | None = None
        self._last_render = -1e9
        self._timer_pending = False
        self._pending_target: tuple[float, float] | None = None
        self._pending_paused: tuple[float, bool] | None = None
        self._pending_recording: tuple[float, bool] | None = None
        self._failed_offered = False
        self._quitting = False
        self._too_small_screen: TooSmallScreen | None = None
        self._dashboard: DashboardScreen | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def on_mount(self) -> None:
        self._dashboard = ReplayDashboard(self.history) if self.replay else LiveDashboard(self.history)
        await self.push_screen(self._dashboard)
        self._latest = self.control.latest  # draw something at once; the chart starts with the first tick
        self.control.subscribe(self._on_snapshot)
        self._render_latest()
        self._check_size(self.size.width, self.size.height)
        if self.handle_signals:
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, self.action_force_quit)
            loop.add_signal_handler(signal.SIGHUP, self._on_hangup)

    def on_unmount(self) -> None:
        self._accepting = False

    def on_resize(self, event: events.Resize) -> None:
        self._check_size(event.size.width, event.size.height)

    def _check_size(self, width: int, height: int) -> None:
        """Cover the dashboard with a notice below the minimum size; uncover it when the window grows."""
        if self._dashboard is None or not self._dashboard.is_mounted:
            return  # on_mount checks once the dashboard is up (a first Resize arrives before it)
        small = too_small(width, height)
        if small and self._too_small_screen is None:
            self._too_small_screen = TooSmallScreen()
            self.push_screen(self._too_small_screen)
        elif small and self._too_small_screen is not None:
            self._too_small_screen.show_size(width, height)
        elif not small and self._too_small_screen is not None:
            screen, self._too_small_screen = self._too_small_screen, None
            if self.screen is screen:
                self.pop_screen()

    # -- snapshot flow -----------------------------------------------------------------------------------------

    def _on_snapshot(self, snapshot: Snapshot) -> None:
        """Engine thread: keep the newest, queue its chart row and events, wake the UI at most once."""
        if not self._accepting:
            return
        self._ingest(snapshot)
        if not self._wake_pending:
            self._wake_pending = True
            self.post_message(SnapshotArrived())

    def _ingest(self, snapshot: Snapshot) -> None:
        ramp_lines = self.ramp.feed(snapshot) if self.ramp is not None else ()
        self._inbox.append((snapshot.t_s, snapshot_row(snapshot), snapshot.new_events, ramp_lines))
        self._latest = snapshot

    def on_snapshot_arrived(self, _message: SnapshotArrived) -> None:
        self._wake_pending = False
        wait = self.min_interval_s - (time.perf_counter() - self._last_render)
        if wait > 0.005:
            if not self._timer_pending:
                self._timer_pending = True
                self.set_timer(wait, self._render_latest)
            return
        self._render_latest()

    def _render_latest(self) -> None:
        """Draw the newest snapshot: chart rows and events first (none are lost), then every panel once."""
        self._timer_pending = False
        snapshot = self._latest
        dashboard = self._dashboard
        if snapshot is None or dashboard is None or not dashboard.is_mounted:
            return
        self._last_render = time.perf_counter()
        panels = dashboard.panels
        while self._inbox:
            t_s, row, new_events, ramp_lines = self._inbox.popleft()
            if self.replay and self.history.last_t is not None and t_s < self.history.last_t - 1e-6:
                panels.events.add_line(t_s, "replay", f"seek to {fmt.clock(t_s)}")
            self.history.append(t_s, row, new_events)
            for event in new_events:
                panels.events.add(event)
            for line, pop_up in ramp_lines:
                panels.events.add_line(t_s, "ramp", line)
                if pop_up:
                    self.notify(line, title="auto-ramp", timeout=6)
        if snapshot is not self._shown:
            self._settle_pending(snapshot)
            with self.batch_update():
                panels.header.ramp = self.ramp.status if self.ramp is not None else ""
                panels.header.show(snapshot)
                panels.load.show(snapshot)
                panels.latency.show(snapshot)
                panels.throughput.show(snapshot)
                panels.gpu.show(snapshot)
                panels.charts.refresh_from_history()
                if self.replay:
                    self._show_timeline()
            self._shown = snapshot
            self.renders += 1
        if snapshot.state is RunState.FAILED and not self._failed_offered and not self._quitting:
            self._failed_offered = True
            self.push_screen(FailedScreen(snapshot.message), self._after_failed)

    def _after_failed(self, quit_now: bool | None) -> None:
        if quit_now:
            self._finish(keep_caps=False)

    @property
    def snapshot(self) -> Snapshot:
        """The snapshot on screen (or the source's latest before the first frame)."""
        return self._shown or self._latest or self.control.latest

    # -- live: load, power, pause, recording ---------------------------------------------------------------------

    def _live(self) -> LoadControl | None:
        if self.replay:
            self.action_load_disabled()
            return None
        return self.control  # type: ignore[return-value]

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
        snapshot = self.snapshot
        return snapshot.target_rate if snapshot.mode is LoadMode.RATE else float(snapshot.target_concurrency)

    def _set_target(self, value: float) -> None:
        control = self._live()
        if control is None:
            return
        if self.snapshot.mode is LoadMode.RATE:
            value = max(0.0, round(value, 6))
            control.set_rate(value)
        else:
            value = float(max(0, round(value)))
            control.set_concurrency(int(value))
        self._pending_target = (time.perf_counter(), value)

    def action_load_step(self, direction: int) -> None:
        if self.replay:
            self.action_load_disabled()
            return
        step = self.step if self.snapshot.mode is LoadMode.RATE else max(1.0, round(self.step))
        self._set_target(self._target() + direction * step)

    def action_load_scale(self, factor: float) -> None:
        if self.replay:
            self.action_load_disabled()
            return
        current = self._target()
        if factor > 1 and current <= 0:
            new = self.step  # doubling zero would stay zero: start from one step
        elif self.snapshot.mode is LoadMode.CONCURRENCY and factor < 1:
            new = max(1.0, float(int(current * factor))) if current > 1 else 0.0
        else:
            new = current * factor
        self._set_target(new)

    def action_cap_step(self, direction: int) -> None:
        control = self._live()
        if control is None:
            return
        self._in_thread("power_cap", control.step_power_cap, direction * self.cap_step_w)

    def action_toggle_pause(self) -> None:
        control = self._live()
        if control is None:
            return
        paused = self.snapshot.state is RunState.PAUSED
        if self._pending_paused is not None:
            paused = self._pending_paused[1]
        if paused:
            control.resume()
        else:
            control.pause()
        self._pending_paused = (time.perf_counter(), not paused)

    def action_toggle_recording(self) -> None:
        control = self._live()
        if control is None:
            return
        recording = bool(self.snapshot.recording)
        if self._pending_recording is not None:
            recording = self._pending_recording[1]
        self._pending_recording = (time.perf_counter(), not recording)
        if recording:
            self._in_thread("record_stop", control.stop_recording)
        else:
            self._in_thread("record_start", control.start_recording)

    def _in_thread(self, kind: str, call: Callable[..., str], *args: object) -> None:
        """Run a control call that may touch hardware or disk (power caps, recording files) off the UI thread,
        then show its one-line answer."""

        def work() -> None:
            try:
                message = call(*args)
            except Exception as exc:  # the contract says "returns a message"; a bug still must not kill the UI
                message = f"{kind} failed: {exc}".splitlines()[0]
            self.call_from_thread(self._say, kind, message)

        self.run_worker(work, name=kind, group="control", thread=True, exit_on_error=False)

    def action_toggle_auto_ramp(self) -> None:
        """a: start or stop the auto-ramp; the engine thread carries it out with the next snapshot."""
        if self._live() is None or self.ramp is None:
            return
        if self.snapshot.state in (RunState.STOPPING, RunState.STOPPED, RunState.FAILED):
            self.notify("auto-ramp: the session has ended", severity="warning", timeout=3)
            return
        self.ramp.request_toggle()

    def action_toggle_cap_sweep(self) -> None:
        """w: start or stop a live power-cap sweep (tui.live_capsweep); its results go to the event log."""
        control = self._live()
        if control is None:
            return
        if self._cap_sweep is None:
            from tui.live_capsweep import LiveCapSweep

            self._cap_sweep = LiveCapSweep(cast("CapControl", control))
        self.notify(self._cap_sweep.toggle(), title="cap sweep", timeout=4)

    def action_load_disabled(self) -> None:
        self.notify(REPLAY_DISABLED, severity="warning", timeout=2)

    def _say(self, kind: str, message: str) -> None:
        """A hotkey's answer as a notification. The engine logs what it actually did (cap read-backs, recording
        paths) as events, which reach the event log with the snapshots, so the log holds each fact once."""
        self.notify(message, title=kind.replace("_", " "), timeout=5)

    # -- replay ------------------------------------------------------------------------------------------------

    def _player(self) -> ReplayControl:
        return self.control  # type: ignore[return-value]

    def _show_timeline(self) -> None:
        if self._dashboard is None or not self._dashboard.is_mounted:
            return
        player = self._player()
        panels = self._dashboard.panels
        if panels.timeline is not None:
            panels.timeline.show(player.position_s, player.duration_s, player.playing, player.speed, player.markers())
        panels.header.playback = f"▶ {speed_label(player.speed)}" if player.playing else "⏸"

    def action_replay_toggle(self) -> None:
        if self.replay:
            self._player().toggle()
            self._show_timeline()

    def action_replay_seek(self, delta_s: float) -> None:
        if self.replay:
            self._player().seek(delta_s)
            self._show_timeline()

    def action_replay_seek_to(self, t_s: float) -> None:
        if self.replay:
            self._player().seek_to(t_s)
            self._show_timeline()

    def action_replay_end(self) -> None:
        if self.replay:
            self._player().seek_to(self._player().duration_s)
            self._show_timeline()

    def action_replay_speed(self, speed: float) -> None:
        if self.replay:
            self._player().set_speed(speed)
            self._show_timeline()
            self.notify(f"replay speed {speed_label(speed)}", timeout=2)

    # -- help, palette, quit -----------------------------------------------------------------------------------

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss(None)
            return
        bindings: list[BindingType] = []
        if self._dashboard is not None:
            bindings += [b for b in self._dashboard.BINDINGS if not _is_disabled(b)]
        bindings += APP_BINDINGS
        rows = [*help_rows(bindings), ("ctrl+p", "command palette (every action, searchable)")]
        steps = f"load step {fmt.sig(self.step)}, power-cap step {self.cap_step_w:g} W"
        note = REPLAY_DISABLED if self.replay else steps
        self.push_screen(HelpScreen("wattload replay keys" if self.replay else "wattload keys", rows, note))

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if self.replay:
            yield SystemCommand("Play / pause", "Toggle replay playback", self.action_replay_toggle)
            yield SystemCommand("Seek back 10 s", "Replay: jump back", lambda: self.action_replay_seek(-10))
            yield SystemCommand("Seek forward 10 s", "Replay: jump ahead", lambda: self.action_replay_seek(10))
            yield SystemCommand("Replay from the start", "Replay: jump to 0:00", lambda: self.action_replay_seek_to(0))
            for speed in (1, 2, 4, 8, 0):
                label = speed_label(speed)
                yield SystemCommand(f"Speed {label}", f"Replay at {label}", lambda s=speed: self.action_replay_speed(s))
        else:
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
        yield SystemCommand("Hotkeys", "Show every hotkey", self.action_help)

    async def action_quit(self) -> None:
        """q: quit, asking first when a recording runs or power caps were changed; a second q forces."""
        if self._quitting:
            self._leave()
            return
        if isinstance(self.screen, ConfirmQuitScreen):
            self.screen.dismiss("restore")
            return
        snapshot = self.snapshot
        caps_changed = False if self.replay else bool(self._live_control().power_cap_changed)
        recording = None if self.replay else snapshot.recording
        if recording or caps_changed:
            self.push_screen(ConfirmQuitScreen(recording=recording, caps_changed=caps_changed), self._after_confirm)
            return
        self._finish(keep_caps=False)

    def _live_control(self) -> LoadControl:
        return self.control  # type: ignore[return-value]

    def _after_confirm(self, choice: QuitChoice | None) -> None:
        if choice is not None:
            self._finish(keep_caps=choice == "keep")

    def action_force_quit(self) -> None:
        """ctrl+c / SIGTERM: no questions; caps are restored. A second one leaves without waiting for cleanup."""
        if self._quitting:
            self._leave()
            return
        self._finish(keep_caps=False)

    def _leave(self) -> None:
        code = self._exit_code()
        self.exit(code, return_code=code)

    def _on_hangup(self) -> None:
        """The terminal is gone (window closed, tmux session killed): nothing can be drawn or asked, and Textual's
        own teardown can block writing to the dead tty. Stop the engine (restoring caps) and leave directly."""
        self._accepting = False
        threading.Thread(target=self._hangup_exit, name="wattload-hangup", daemon=True).start()

    def _hangup_exit(self) -> None:
        watchdog = threading.Timer(HANGUP_GRACE_S, os._exit, args=(EXIT_HANGUP,))
        watchdog.daemon = True
        watchdog.start()
        try:
            if not self.closed:
                self._close_control(keep_caps=False)
        finally:
            os._exit(EXIT_HANGUP)

    def _exit_code(self) -> int:
        return 1 if self.snapshot.state is RunState.FAILED else 0

    def _finish(self, *, keep_caps: bool) -> None:
        """Stop the engine off the UI thread (workers take a moment to drain), then leave."""
        if self._quitting:
            return
        self._quitting = True
        self.notify("stopping…" + (" (keeping power caps)" if keep_caps else ""), timeout=10)
        self.run_worker(self._close_and_exit(keep_caps), name="close", group="quit", exclusive=True)

    async def _close_and_exit(self, keep_caps: bool) -> None:
        try:
            await asyncio.to_thread(self._close_control, keep_caps)
        except Exception as exc:  # one line after the terminal is restored, never a traceback over the panels
            self.exit_message = f"wattload: stopping the engine failed: {exc}"
        self._leave()

    def _close_control(self, keep_caps: bool) -> None:
        self.closed = True
        self._accepting = False
        if self.replay:
            self._player().close()
        else:
            self._live_control().close(keep_power_caps=keep_caps)


def _is_disabled(binding: BindingType) -> bool:
    return isinstance(binding, Binding) and binding.action == "app.load_disabled"


def run_tui(
    controller: LoadControl, *, refresh_hz: float = 4.0, step: float | None = None, cap_step_w: float = 25.0
) -> int:
    """Open the dashboard over a running controller; returns the exit code. The controller is always closed."""
    app = WattloadApp(controller, refresh_hz=refresh_hz, step=step, cap_step_w=cap_step_w, handle_signals=True)
    start = getattr(controller, "start", None)  # the live Controller starts here (idempotent), not on import
    if callable(start):
        start()
    return _run(app, lambda: controller.close(keep_power_caps=False))


def run_replay_tui(player: ReplayControl, *, refresh_hz: float = 4.0) -> int:
    """Open the same dashboard over a recording's player."""
    app = WattloadApp(player, replay=True, refresh_hz=refresh_hz, handle_signals=True)
    return _run(app, player.close)


def _run(app: WattloadApp, close: Callable[[], None]) -> int:
    try:
        app.run()
    finally:
        if not app.closed:
            close()
    if app.exit_message:
        print(app.exit_message, file=sys.stderr)
    return app.return_code or 0

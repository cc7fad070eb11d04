"""The TUI app: snapshot intake, help, the log view and quit around one dashboard screen (live or replay).

Snapshots arrive on the engine's thread. The callback only stores the newest one, queues its chart row and
events (cheap appends) and posts a single wake-up if none is pending, so however slow the terminal is, the
engine never waits on the UI and the UI never works through a backlog: it always draws the newest snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual import events
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen

from engine.control import LoadControl, ReplayControl
from engine.signals import OWNER
from engine.snapshot import EventView, RunState, Snapshot
from tui.ramp_link import RampLine
from tui.screens.confirm_quit import ConfirmQuitScreen, QuitChoice
from tui.screens.dashboard import DashboardScreen
from tui.screens.failed import FailedScreen
from tui.screens.help import HelpScreen, help_rows
from tui.screens.live_dashboard import DEFAULT_CAP_STEP_W, LiveDashboard
from tui.screens.log_view import LogViewScreen
from tui.screens.replay_dashboard import REPLAY_DISABLED, ReplayDashboard
from tui.screens.too_small import TooSmallScreen, too_small
from tui.toasts import toasts
from tui.widgets.charts import ChartHistory, snapshot_row

if TYPE_CHECKING:
    from engine.sweep.rules import SweepSettings

__all__ = ["REPLAY_DISABLED", "WattloadApp", "live_app", "replay_app", "run_replay_tui", "run_tui"]

INBOX_MAX = 4096  # rows waiting for a stalled UI; beyond this the oldest chart rows are dropped
HANGUP_GRACE_S = 20.0  # after SIGHUP, stopping the engine may take this long before the process leaves anyway
EXIT_HANGUP = 129  # 128 + SIGHUP, as a shell reports it

APP_BINDINGS: list[BindingType] = [
    Binding("question_mark", "help", "help", key_display="?", tooltip="this help"),
    Binding("l", "log_view", "log", tooltip="every event, full screen, with a filter (/)"),
    Binding("s", "screenshot", "shot", show=False, tooltip="save an SVG screenshot (working directory)"),
    Binding("q", "quit", "quit", tooltip="quit (asks first if recording or power caps changed)"),
    Binding("ctrl+c", "force_quit", "force quit", show=False, priority=True, tooltip="quit now, restoring caps"),
]


class SnapshotArrived(Message):
    """A wake-up: the newest snapshot waits in the app's slot. Consecutive wake-ups merge into one."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SnapshotArrived)


Arrival = tuple[float, tuple[float, ...], tuple[EventView, ...], tuple[RampLine, ...]]
"""One snapshot's share of the inbox: t_s, chart row, new events, auto-ramp (line, notify) pairs."""


class WattloadApp(App[int]):
    """Snapshot intake, help and quit around one dashboard (LiveDashboard or ReplayDashboard), which owns the
    mode's keys, what it adds to each frame and how its source is closed."""

    CSS_PATH = "app.tcss"
    TITLE = "wattload"
    BINDINGS: ClassVar[list[BindingType]] = APP_BINDINGS
    # textual declares the breakpoints as instance attributes with class defaults, so no ClassVar here.
    HORIZONTAL_BREAKPOINTS: list[tuple[int, str]] | None = [(0, "-narrow"), (100, "-medium"), (150, "-wide")]  # noqa: RUF012
    VERTICAL_BREAKPOINTS: list[tuple[int, str]] | None = [(0, "-tiny"), (20, "-short"), (34, "-tall")]  # noqa: RUF012

    def __init__(self, dashboard: DashboardScreen, *, refresh_hz: float = 4.0, handle_signals: bool = False,
                 screenshot_dir: str | None = None, first_frame: threading.Event | None = None,
                 theme: str | None = None) -> None:
        super().__init__()
        self.wanted_theme = theme  # from the defaults file (engine/cli/settings_file.py); checked once mounted
        # set once the first frame is on the terminal: a starting session waits for it before its import-heavy
        # work, which would otherwise hold the GIL while the dashboard tries to draw (tui/commands/demo.py)
        self.first_frame = first_frame or threading.Event()
        self.screenshot_dir = screenshot_dir  # None: the working directory (a server has no ~/Downloads)
        self.dashboard = dashboard
        self.source = dashboard.source
        self.min_interval_s = 1.0 / refresh_hz if refresh_hz > 0 else 0.0
        self.handle_signals = handle_signals
        self.closed = False  # the source has been closed (run_tui must not close it again)
        self.exit_message = ""  # printed by run_tui after the terminal is restored
        self.renders = 0  # how many frames were drawn (tests and the CPU benchmark read it)
        self.toasts = toasts(self)
        # Written by the engine thread, read by the UI thread (single reference assignments and deque ops).
        self._latest: Snapshot | None = None
        self._inbox: deque[Arrival] = deque(maxlen=INBOX_MAX)
        self._wake_pending = False
        self._accepting = True
        # UI-thread state.
        self._last_render = -1e9
        self._timer_pending = False
        self._failed_offered = False
        self._quitting = False
        self._too_small_screen: TooSmallScreen | None = None
        self._signals = contextlib.ExitStack()

    @property
    def history(self) -> ChartHistory:
        return self.dashboard.history

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def on_mount(self) -> None:
        if self.wanted_theme:
            if self.wanted_theme in self.available_themes:
                self.theme = self.wanted_theme
            else:
                self.toasts.say("theme", f"unknown theme {self.wanted_theme!r} in the config file; themes: "
                                + ", ".join(sorted(self.available_themes)), severity="warning", timeout=8)
        await self.push_screen(self.dashboard)
        self._latest = self.source.latest  # draw something at once; the chart starts with the first tick
        self.source.subscribe(self._on_snapshot)
        self._render_latest()
        self._check_size(self.size.width, self.size.height)
        self.call_after_refresh(self.first_frame.set)
        if self.handle_signals:  # through the process's one signal owner (engine/signals.py), onto this loop
            loop = asyncio.get_running_loop()
            def on_stop(signum: int) -> None:
                loop.call_soon_threadsafe(self._on_stop_signal, signum)

            self._signals.enter_context(OWNER.stopping(on_stop, escalate=False))

    def on_unmount(self) -> None:
        self._accepting = False
        self._signals.close()

    def _on_stop_signal(self, signum: int) -> None:
        """SIGHUP: the terminal is gone, leave without drawing; SIGTERM: quit now, restoring power caps."""
        if signum == getattr(signal, "SIGHUP", None):
            self._on_hangup()
        else:
            self.action_force_quit()

    def on_resize(self, event: events.Resize) -> None:
        self._check_size(event.size.width, event.size.height)

    def _check_size(self, width: int, height: int) -> None:
        """Cover the dashboard with a notice below the minimum size; uncover it when the window grows."""
        if not self.dashboard.is_mounted:
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
        lines = self.dashboard.ingest(snapshot)
        # a session still starting has nothing to chart (and the chart's numpy need not load before the first frame)
        row = () if snapshot.state is RunState.STARTING else snapshot_row(snapshot)
        self._inbox.append((snapshot.t_s, row, snapshot.new_events, lines))
        self._latest = snapshot
        if not self._wake_pending:
            self._wake_pending = True
            self.post_message(SnapshotArrived())

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
        dashboard = self.dashboard
        if snapshot is None or not dashboard.is_mounted:
            return
        self._last_render = time.perf_counter()
        while self._inbox:
            dashboard.absorb(*self._inbox.popleft())
        if snapshot is not dashboard.shown:
            with self.batch_update():
                dashboard.show(snapshot)
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
        return self.dashboard.shown or self._latest or self.source.latest

    # -- help, log, palette, quit ------------------------------------------------------------------------------

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss(None)
            return
        bindings = [*self.dashboard.help_bindings(), *APP_BINDINGS]
        rows = [*help_rows(bindings), ("ctrl+p", "command palette (every action, searchable)")]
        self.push_screen(HelpScreen(self.dashboard.help_title, rows, self.dashboard.help_note()))

    def action_log_view(self) -> None:
        if isinstance(self.screen, LogViewScreen):
            self.screen.dismiss(None)
            return
        if self.screen is self.dashboard:
            self.push_screen(LogViewScreen(self.dashboard.panels.events))

    def deliver_screenshot(self, filename: str | None = None, path: str | None = None,
                           time_format: str | None = None) -> str | None:
        """s, or the palette's screenshot: save the SVG where the operator can find it and say where (or why
        not). Textual's own delivery aims at ~/Downloads and fails without a reason where there is none."""
        directory = Path(path or self.screenshot_dir or os.getcwd())
        try:
            saved = Path(self.save_screenshot(filename, str(directory), time_format)).resolve()
        except OSError as exc:
            self.toasts.say("screenshot", f"cannot save a screenshot in {directory}: {exc.strerror or exc}",
                            title="screenshot", severity="error", timeout=8)  # fmt: skip
            return None
        self.toasts.say("screenshot", f"saved {saved}", title="screenshot", timeout=6)
        return str(saved)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield from self.dashboard.commands()
        yield SystemCommand("Event log", "Every event, full screen, with a filter", self.action_log_view)
        yield SystemCommand("Hotkeys", "Show every hotkey", self.action_help)

    async def action_quit(self) -> None:
        """q: quit, asking first when a recording runs or power caps were changed; a second q forces."""
        if self._quitting:
            self._leave()
            return
        if isinstance(self.screen, ConfirmQuitScreen):
            self.screen.dismiss("restore")
            return
        recording, caps_changed = self.dashboard.quit_question()
        if recording or caps_changed:
            self.push_screen(ConfirmQuitScreen(recording=recording, caps_changed=caps_changed), self._after_confirm)
            return
        self._finish(keep_caps=False)

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
                self._close_source(keep_caps=False)
        finally:
            os._exit(EXIT_HANGUP)

    def _exit_code(self) -> int:
        return 1 if self.snapshot.state is RunState.FAILED else 0

    def _finish(self, *, keep_caps: bool) -> None:
        """Stop the engine off the UI thread (workers take a moment to drain), then leave."""
        if self._quitting:
            return
        self._quitting = True
        self.toasts.say("quit", "stopping…" + (" (keeping power caps)" if keep_caps else ""), timeout=10)
        self.run_worker(self._close_and_exit(keep_caps), name="close", group="quit", exclusive=True)

    async def _close_and_exit(self, keep_caps: bool) -> None:
        try:
            await asyncio.to_thread(self._close_source, keep_caps)
        except Exception as exc:  # one line after the terminal is restored, never a traceback over the panels
            self.exit_message = f"wattload: stopping the engine failed: {exc}"
        self._leave()

    def _close_source(self, keep_caps: bool) -> None:
        self.closed = True
        self._accepting = False
        self.dashboard.close_source(keep_caps)


def live_app(
    control: LoadControl,
    *,
    refresh_hz: float = 4.0,
    step: float | None = None,
    cap_step_w: float = DEFAULT_CAP_STEP_W,
    handle_signals: bool = False,
    ramp_settings: SweepSettings | None = None,
    first_frame: threading.Event | None = None,
    theme: str | None = None,
) -> WattloadApp:
    """The live dashboard over a LoadControl."""
    dashboard = LiveDashboard(control, step=step, cap_step_w=cap_step_w, ramp_settings=ramp_settings)
    return WattloadApp(dashboard, refresh_hz=refresh_hz, handle_signals=handle_signals, first_frame=first_frame,
                       theme=theme)  # fmt: skip


def replay_app(player: ReplayControl, *, refresh_hz: float = 4.0, handle_signals: bool = False,
               theme: str | None = None) -> WattloadApp:  # fmt: skip
    """The replay dashboard over a ReplayControl."""
    return WattloadApp(ReplayDashboard(player), refresh_hz=refresh_hz, handle_signals=handle_signals, theme=theme)


def run_tui(
    controller: LoadControl, *, refresh_hz: float = 4.0, step: float | None = None, cap_step_w: float = 25.0,
    first_frame: threading.Event | None = None, theme: str | None = None,
) -> int:
    """Open the dashboard over a running controller; returns the exit code. The controller is always closed.
    ``first_frame`` is set once the dashboard is on the terminal."""
    app = live_app(controller, refresh_hz=refresh_hz, step=step, cap_step_w=cap_step_w, handle_signals=True,
                   first_frame=first_frame, theme=theme)  # fmt: skip
    start = getattr(controller, "start", None)  # the live Controller starts here (idempotent), not on import
    if callable(start):
        start()
    return _run(app, lambda: controller.close(keep_power_caps=False))


def run_replay_tui(player: ReplayControl, *, refresh_hz: float = 4.0, theme: str | None = None) -> int:
    """Open the same dashboard over a recording's player."""
    return _run(replay_app(player, refresh_hz=refresh_hz, handle_signals=True, theme=theme), player.close)


def _run(app: WattloadApp, close: Callable[[], None]) -> int:
    try:
        app.run()
    finally:
        if not app.closed:
            close()
    if app.exit_message:
        print(app.exit_message, file=sys.stderr)
    return app.return_code or 0

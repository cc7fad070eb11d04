"""The replay dashboard: the live layout plus a timeline, with transport keys over a ReplayControl.

After a seek the charts and the event log show the recording's history up to the new position, not just what
this screen happened to see: the player recomputes the last chart window (``backfill``) from the recorded facts
in a worker thread, and the log is rebuilt from the same walk, so an event is never lost and never shown twice.
The load keys of the live dashboard answer "replay: load keys are disabled" (derived from the live bindings, so a
new live key is covered without a list to keep in step).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import ClassVar

from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding, BindingType

from engine.control import Backfill, ReplayControl
from engine.snapshot import EventView, Snapshot
from tui.ramp_link import RampLine
from tui.screens.dashboard import DashboardScreen
from tui.screens.live_dashboard import LIVE_BINDINGS
from tui.toasts import toasts
from tui.widgets.charts import MAX_GAP_S, WINDOW_S, snapshot_row
from tui.widgets.timeline import TimelineBar, speed_label, transport_label

REPLAY_DISABLED = "replay: load keys are disabled"
BACKFILL_STEP_S = 1.0  # chart resolution of a backfilled span (about one braille pixel at 160 columns)
SEEK_GRACE_S = 2.0  # a jump in time this soon after a seek key is that seek

_TRANSPORT: list[BindingType] = [
    Binding("space", "replay_toggle", "play/pause", tooltip="play / pause the replay"),
    Binding("left", "replay_seek(-10)", "-10s", key_display="←", tooltip="seek back 10 s"),
    Binding("right", "replay_seek(10)", "+10s", key_display="→", tooltip="seek forward 10 s"),
    Binding("shift+left", "replay_seek(-60)", "-60s", show=False, tooltip="seek back 60 s"),
    Binding("shift+right", "replay_seek(60)", "+60s", show=False, tooltip="seek forward 60 s"),
    Binding("home", "replay_seek_to(0)", "start", show=False, tooltip="jump to the start"),
    Binding("end", "replay_end", "end", show=False, tooltip="jump to the end"),
    Binding("1", "replay_speed(1)", "1x", show=False, tooltip="play at 1x"),
    Binding("2", "replay_speed(2)", "2x", show=False, tooltip="play at 2x"),
    Binding("4", "replay_speed(4)", "4x", show=False, tooltip="play at 4x"),
    Binding("8", "replay_speed(8)", "8x", show=False, tooltip="play at 8x"),
    Binding("0", "replay_speed(0)", "max", show=False, tooltip="play as fast as possible"),
]


def _keys(bindings: Iterable[BindingType]) -> set[str]:
    return {key.strip() for b in bindings if isinstance(b, Binding) for key in b.key.split(",")}


_TRANSPORT_KEYS = _keys(_TRANSPORT)
REPLAY_BINDINGS: list[BindingType] = [
    *_TRANSPORT,
    *[Binding(key, "load_disabled", show=False) for key in sorted(_keys(LIVE_BINDINGS) - _TRANSPORT_KEYS)],
]


class ReplayDashboard(DashboardScreen):
    BINDINGS: ClassVar[list[BindingType]] = REPLAY_BINDINGS
    help_title = "wattload replay keys"

    def __init__(self, player: ReplayControl) -> None:
        super().__init__(player)
        self.player = player
        self._seek_key_at = -1e9  # perf_counter of the last seek key
        self._generation = 0  # bumped per detected seek; a backfill for an older one is dropped
        self._horizon_s = -1.0  # the position of the last backfill
        self._since_seek: list[EventView] = []  # events of the snapshots after it, re-added when it lands
        self._events: list[EventView] = []  # what the log shows, oldest first
        self.backfills = 0  # landed backfills (tests read it)

    def compose_extra(self) -> ComposeResult:
        yield TimelineBar(id="timeline")

    def on_mount(self) -> None:
        self._start_backfill(self.player.latest.t_s)  # the events of the first milliseconds are in the file too

    # -- hooks -------------------------------------------------------------------------------------------------

    def absorb(self, t_s: float, row: tuple[float, ...], events: tuple[EventView, ...],
               lines: tuple[RampLine, ...]) -> None:
        last = self.history.last_t
        if last is None:
            last = self._horizon_s  # nothing drawn since the last backfill: compare with where it ended
        if self._is_seek(last, t_s):
            self.history.clear()
            self._start_backfill(t_s)
            self.history.append(t_s, row, events)
            return  # this snapshot's events arrived by the seek's position: the backfill has them
        self.history.append(t_s, row, events)
        self._since_seek.extend(events)
        self._log(events)

    def _is_seek(self, last: float, t_s: float) -> bool:
        if t_s < last - 1e-6:
            return True
        gap = t_s - last
        if gap <= MAX_GAP_S:
            return False
        recent_key = time.perf_counter() - self._seek_key_at < SEEK_GRACE_S
        speed = self.player.speed
        return recent_key or (speed > 0 and gap > 4 * speed)  # playback advances speed × 0.25 s per tick

    def _log(self, events: Iterable[EventView]) -> None:
        panels = self.panels
        for event in events:
            self._events.append(event)
            panels.events.add(event)
            panels.status.note(event.t_s, event.kind, event.message)

    def show(self, snapshot: Snapshot) -> None:
        self._show_transport()  # first: the header drawn below shows the same transport state as the timeline
        super().show(snapshot)

    def close_source(self, keep_caps: bool) -> None:
        self.player.close()

    def help_note(self) -> str:
        return REPLAY_DISABLED

    def help_bindings(self) -> list[BindingType]:
        return [b for b in self.BINDINGS if not (isinstance(b, Binding) and b.action == "load_disabled")]

    def commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand("Play / pause", "Toggle replay playback", self.action_replay_toggle)
        yield SystemCommand("Seek back 10 s", "Replay: jump back", lambda: self.action_replay_seek(-10))
        yield SystemCommand("Seek forward 10 s", "Replay: jump ahead", lambda: self.action_replay_seek(10))
        yield SystemCommand("Replay from the start", "Replay: jump to 0:00", lambda: self.action_replay_seek_to(0))
        for speed in (1, 2, 4, 8, 0):
            label = speed_label(speed)
            yield SystemCommand(f"Speed {label}", f"Replay at {label}", lambda s=speed: self.action_replay_speed(s))

    # -- backfill ----------------------------------------------------------------------------------------------

    def _start_backfill(self, until_s: float) -> None:
        self._generation += 1
        generation = self._generation
        self._horizon_s = until_s
        self._since_seek = []

        def work() -> None:
            try:
                backfill = self.player.backfill(until_s, WINDOW_S, BACKFILL_STEP_S)
            except Exception as exc:  # the charts then start at the seek; say why once
                message = f"replay: cannot rebuild the history: {exc}".splitlines()[0]
                self.app.call_from_thread(toasts(self.app).say, "replay", message, severity="warning")
                return
            self.app.call_from_thread(self._land_backfill, generation, backfill)

        self.run_worker(work, name="backfill", group="backfill", thread=True, exit_on_error=False)

    def _land_backfill(self, generation: int, backfill: Backfill) -> None:
        """UI thread: the recomputed span goes before the rows seen since the seek; the log is rebuilt."""
        if generation != self._generation or not self.is_mounted:
            return
        rows = [(s.t_s, snapshot_row(s), s.new_events) for s in backfill.snapshots]
        self.history.prepend(rows, backfill.events)
        panels = self.panels
        panels.events.clear()
        self._events = []
        self._log((*backfill.events, *self._since_seek))
        panels.charts.refresh_from_history()
        self.backfills += 1

    # -- transport ---------------------------------------------------------------------------------------------

    def _show_transport(self) -> None:
        if not self.is_mounted:
            return
        player = self.player
        at_end = player.position_s >= player.duration_s - 1e-6 and not player.playing
        self.query_one(TimelineBar).show(player.position_s, player.duration_s, player.playing, player.speed,
                                         player.markers(), at_end=at_end)
        header = self.panels.header
        label = transport_label(player.playing, player.speed, at_end)
        if label != header.playback:
            header.playback = label
            if self.shown is not None:
                header.show(self.shown)

    def action_replay_toggle(self) -> None:
        self.player.toggle()
        self._show_transport()

    def action_replay_seek(self, delta_s: float) -> None:
        self._seek_key_at = time.perf_counter()
        self.player.seek(delta_s)
        self._show_transport()

    def action_replay_seek_to(self, t_s: float) -> None:
        self._seek_key_at = time.perf_counter()
        self.player.seek_to(t_s)
        self._show_transport()

    def action_replay_end(self) -> None:
        self.action_replay_seek_to(self.player.duration_s)

    def action_replay_speed(self, speed: float) -> None:
        self.player.set_speed(speed)
        self._show_transport()
        toasts(self.app).say("replay speed", f"replay speed {speed_label(speed)}", timeout=2)

    def action_load_disabled(self) -> None:
        toasts(self.app).say("disabled", REPLAY_DISABLED, severity="warning", timeout=2)

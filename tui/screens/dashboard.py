"""The dashboard screen's shared part: one layout of panels over a snapshot source, and the hooks the app calls.

The App owns snapshot intake (the engine-thread callback, coalescing, frame pacing), help and quit. A dashboard
owns what differs between a live run and a replay: its bindings and actions, what it adds to each frame, what
quitting must ask and how its source is closed. ``LiveDashboard`` (live_dashboard.py) steers a LoadControl;
``ReplayDashboard`` (replay_dashboard.py) drives a ReplayControl's transport.

Layout: header, the numeric panels (a grid), charts beside the event log, ``compose_extra`` (the replay timeline;
a later panel goes there or into ``#top``), the status line and the footer. Every row has a fixed height, so no
warning or message can shift the layout.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from textual import events
from textual.app import ComposeResult, SystemCommand
from textual.binding import BindingType
from textual.containers import Grid, Horizontal
from textual.screen import Screen
from textual.widgets import Footer

from engine.control import SnapshotSource
from engine.snapshot import EventView, Snapshot
from tui.ramp_link import RampLine
from tui.widgets.charts import ChartHistory, ChartsPanel
from tui.widgets.event_log import EventLogPanel
from tui.widgets.gpu_cost import GpuCostPanel
from tui.widgets.header import HeaderPanel
from tui.widgets.latency import LatencyPanel
from tui.widgets.load import LoadPanel
from tui.widgets.status_line import SaturationLatch, StatusLine
from tui.widgets.throughput import ThroughputPanel


class Panels(NamedTuple):
    """Direct references to the panels, looked up once (a query per panel per frame would cost more)."""

    header: HeaderPanel
    load: LoadPanel
    latency: LatencyPanel
    throughput: ThroughputPanel
    gpu: GpuCostPanel
    charts: ChartsPanel
    events: EventLogPanel
    status: StatusLine


class DashboardScreen(Screen[None]):
    """Every panel, laid out by app.tcss breakpoints (-narrow/-medium/-wide, -short/-tall)."""

    help_title = "wattload keys"
    AUTO_FOCUS = ""  # the Events panel takes focus only on tab or a click: the arrows are load/seek keys

    def __init__(self, source: SnapshotSource) -> None:
        super().__init__(id="dashboard")
        self.source = source
        self.history = ChartHistory()
        self._panels: Panels | None = None
        self.shown: Snapshot | None = None  # the snapshot on screen
        self.saturation = SaturationLatch()  # fed every snapshot on the engine thread; the status line reads it

    @property
    def current(self) -> Snapshot:
        """The snapshot on screen, or the source's latest before the first frame."""
        return self.shown or self.source.latest

    @property
    def panels(self) -> Panels:
        if self._panels is None:
            self._panels = Panels(
                self.query_one(HeaderPanel),
                self.query_one(LoadPanel),
                self.query_one(LatencyPanel),
                self.query_one(ThroughputPanel),
                self.query_one(GpuCostPanel),
                self.query_one(ChartsPanel),
                self.query_one(EventLogPanel),
                self.query_one(StatusLine),
            )
        return self._panels

    def compose(self) -> ComposeResult:
        yield HeaderPanel(id="header")
        with Grid(id="top"):
            yield LoadPanel(id="load")
            yield LatencyPanel(id="latency")
            yield ThroughputPanel(id="throughput")
            yield GpuCostPanel(id="gpu")
        with Horizontal(id="bottom"):
            yield ChartsPanel(self.history, id="charts")
            yield EventLogPanel(id="events")
        yield from self.compose_extra()
        yield StatusLine(id="status")
        yield Footer(compact=True)

    def compose_extra(self) -> ComposeResult:
        yield from ()

    def on_resize(self, event: events.Resize) -> None:
        # the footer's right-docked "^p palette" overprints the keys below 100 columns (ctrl+p still works)
        self.query_one(Footer).show_command_palette = event.size.width >= 100

    # -- hooks the app calls -----------------------------------------------------------------------------------

    def ingest(self, snapshot: Snapshot) -> tuple[RampLine, ...]:
        """Engine thread, once per snapshot: work that must see every snapshot (frames skip some); returns
        event-log lines. Overrides call this first."""
        self.saturation.update(snapshot)
        return ()

    def absorb(self, t_s: float, row: tuple[float, ...], events: tuple[EventView, ...],
               lines: tuple[RampLine, ...]) -> None:
        """UI thread: one snapshot's chart row and events (every one, even when frames are skipped)."""
        self.history.append(t_s, row, events)
        panels = self.panels
        for event in events:
            panels.events.add(event)
            panels.status.note(event.t_s, event.kind, event.message)

    def show(self, snapshot: Snapshot) -> None:
        """UI thread: draw ``snapshot`` in every panel (inside the app's batch_update)."""
        panels = self.panels
        panels.header.show(snapshot)
        panels.load.show(snapshot)
        panels.latency.show(snapshot)
        panels.throughput.show(snapshot)
        panels.gpu.show(snapshot)
        panels.charts.refresh_from_history()
        panels.status.show(snapshot, saturated=self.saturation.active, reason=self.saturation.reason)
        self.shown = snapshot

    def quit_question(self) -> tuple[str | None, bool]:
        """(the recording that quitting would end, whether power caps were changed): ask first if either."""
        return None, False

    def close_source(self, keep_caps: bool) -> None:
        """Stop the source (any thread but the UI's: it may wait for workers)."""
        raise NotImplementedError

    def help_note(self) -> str:
        return ""

    def help_bindings(self) -> list[BindingType]:
        """The bindings the help screen lists (what works in this mode)."""
        return list(self.BINDINGS)

    def commands(self) -> Iterable[SystemCommand]:
        """This mode's actions for the command palette."""
        yield from ()

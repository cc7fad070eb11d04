"""The dashboard screen: one layout of panels for live runs and replays; only the bindings differ.

Bindings live on the two screen classes (live: load and power keys; replay: transport keys, with the load keys
answered by "replay: load keys are disabled"), so the Footer and the help screen show exactly what works.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal
from textual.screen import Screen
from textual.widgets import Footer

from tui.widgets.charts import ChartHistory, ChartsPanel
from tui.widgets.event_log import EventLogPanel
from tui.widgets.gpu_cost import GpuCostPanel
from tui.widgets.header import HeaderPanel
from tui.widgets.latency import LatencyPanel
from tui.widgets.load import LoadPanel
from tui.widgets.throughput import ThroughputPanel
from tui.widgets.timeline import TimelineBar

LIVE_BINDINGS: list[BindingType] = [
    Binding("plus", "app.load_step(1)", "more", key_display="+", tooltip="raise concurrency (or rate) by one step"),
    Binding("up", "app.load_step(1)", "load+", show=False),
    Binding("minus", "app.load_step(-1)", "less", key_display="-", tooltip="lower concurrency (or rate) by one step"),
    Binding("down", "app.load_step(-1)", "load-", show=False),
    Binding("asterisk", "app.load_scale(2)", "load×2", show=False, tooltip="double concurrency (or rate)"),
    Binding("shift+up", "app.load_scale(2)", "load×2", show=False),
    Binding("slash", "app.load_scale(0.5)", "load÷2", show=False, tooltip="halve concurrency (or rate)"),
    Binding("shift+down", "app.load_scale(0.5)", "load÷2", show=False),
    Binding("left_square_bracket", "app.cap_step(-1)", "cap-", key_display="[", tooltip="lower the GPU power cap"),
    Binding("right_square_bracket", "app.cap_step(1)", "cap+", key_display="]", tooltip="raise the GPU power cap"),
    Binding(
        "a",
        "app.toggle_auto_ramp",
        "ramp",  # "auto-ramp" would push "quit" out of an 80-column footer
        tooltip="auto-ramp on/off: raise load until throughput peaks",
    ),
    Binding("w", "app.toggle_cap_sweep", "cap sweep", show=False,
            tooltip="power-cap sweep: step the cap down at this load, find the sweet spot (again: stop)"),
    Binding("space", "app.toggle_pause", "pause", tooltip="pause / resume the load (in-flight requests finish)"),
    Binding("r", "app.toggle_recording", "rec", tooltip="start / stop recording the session"),
]

_DISABLED_KEYS = (
    "plus",
    "minus",
    "up",
    "down",
    "asterisk",
    "slash",
    "shift+up",
    "shift+down",
    "left_square_bracket",
    "right_square_bracket",
    "r",
    "a",
)
REPLAY_BINDINGS: list[BindingType] = [
    Binding("space", "app.replay_toggle", "play/pause", tooltip="play / pause the replay"),
    Binding("left", "app.replay_seek(-10)", "-10s", key_display="←", tooltip="seek back 10 s"),
    Binding("right", "app.replay_seek(10)", "+10s", key_display="→", tooltip="seek forward 10 s"),
    Binding("shift+left", "app.replay_seek(-60)", "-60s", show=False, tooltip="seek back 60 s"),
    Binding("shift+right", "app.replay_seek(60)", "+60s", show=False, tooltip="seek forward 60 s"),
    Binding("home", "app.replay_seek_to(0)", "start", show=False, tooltip="jump to the start"),
    Binding("end", "app.replay_end", "end", show=False, tooltip="jump to the end"),
    Binding("1", "app.replay_speed(1)", "1x", show=False, tooltip="play at 1x"),
    Binding("2", "app.replay_speed(2)", "2x", show=False, tooltip="play at 2x"),
    Binding("4", "app.replay_speed(4)", "4x", show=False, tooltip="play at 4x"),
    Binding("8", "app.replay_speed(8)", "8x", show=False, tooltip="play at 8x"),
    Binding("0", "app.replay_speed(0)", "max", show=False, tooltip="play as fast as possible"),
    *[Binding(key, "app.load_disabled", show=False) for key in _DISABLED_KEYS],
]


class Panels(NamedTuple):
    """Direct references to the panels, looked up once (a query per panel per frame would cost more)."""

    header: HeaderPanel
    load: LoadPanel
    latency: LatencyPanel
    throughput: ThroughputPanel
    gpu: GpuCostPanel
    charts: ChartsPanel
    events: EventLogPanel
    timeline: TimelineBar | None


class DashboardScreen(Screen[None]):
    """Every panel, laid out by app.tcss breakpoints (-narrow/-medium/-wide, -short/-tall)."""

    def __init__(self, history: ChartHistory) -> None:
        super().__init__(id="dashboard")
        self.history = history
        self._panels: Panels | None = None

    @property
    def panels(self) -> Panels:
        if self._panels is None:
            timelines = self.query(TimelineBar)
            self._panels = Panels(
                self.query_one(HeaderPanel),
                self.query_one(LoadPanel),
                self.query_one(LatencyPanel),
                self.query_one(ThroughputPanel),
                self.query_one(GpuCostPanel),
                self.query_one(ChartsPanel),
                self.query_one(EventLogPanel),
                timelines.first() if timelines else None,
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
        yield Footer(compact=True)

    def compose_extra(self) -> ComposeResult:
        yield from ()


class LiveDashboard(DashboardScreen):
    BINDINGS: ClassVar[list[BindingType]] = LIVE_BINDINGS


class ReplayDashboard(DashboardScreen):
    BINDINGS: ClassVar[list[BindingType]] = REPLAY_BINDINGS

    def compose_extra(self) -> ComposeResult:
        yield TimelineBar(id="timeline")

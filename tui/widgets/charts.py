"""Charts, the centrepiece: output tok/s, TTFT p50/p99, in-flight streams, GPU watts and (once any request
failed) the error rate, on one time axis.

The history lives here in the UI (a numpy ring buffer of one row per snapshot), never in the engine. The axis
covers the whole session until it is five minutes long (the lines compress), then scrolls. Dotted vertical
markers show where the operator changed the load or the power cap, so a step in a line can be read against
its cause. Drawing is custom braille via ``render_line`` (strips cached until the data or the size changes):
a few ms of numpy per frame, far cheaper than a plotting library at 4 Hz.

Reading them: each chart has a legend row above its plot (swatch, name, latest value) and only axis ticks in
the gutter. Series differ by pattern as well as colour (a filled area, a solid line, a dashed reference line),
so they can be told apart under NO_COLOR. One colour means one thing everywhere (a fixed colour-blind-safe
palette): green throughput, blue latency (dark p50, light p99), purple load (in-flight streams and load-change
markers), orange power (watts and power-cap markers), vermillion errors, muted grey the reference lines. numpy
is imported on the first row, not with the module: the dashboard's first frame does not need it.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Literal

from rich.segment import Segment
from rich.style import Style
from textual.geometry import Region
from textual.strip import Strip
from textual.widget import Widget

from engine.reports import format as fmt
from engine.snapshot import EventView, LoadMode, Snapshot
from tui.widgets.base import theme_style

if TYPE_CHECKING:
    import numpy as np

WINDOW_S = 300.0  # the charts show at most the last five minutes
MIN_SPAN_S = 30.0  # a young session is drawn over at least this much axis
GROW_STEP_S = 30.0  # ...which widens in steps of this much until it reaches WINDOW_S
MAX_GAP_S = 3.0  # samples further apart are not joined (a stalled or paused feed shows as a gap)
MARKER_KINDS = {"concurrency": "load", "rate": "load", "power_cap": "cap"}


class Col(IntEnum):
    """Columns of the history ring (after the time column)."""

    OUT_TPS = 0
    TTFT_P50 = 1
    TTFT_P99 = 2
    IN_FLIGHT = 3
    TARGET = 4
    WATTS = 5
    LIMIT = 6
    ERR_PCT = 7
    SRV_RUNNING = 8  # the server's own running and waiting requests (server metrics), beside the client's view
    SRV_WAITING = 9


def _num(value: float | None) -> float:
    return math.nan if value is None else float(value)


def snapshot_row(snapshot: Snapshot) -> tuple[float, ...]:
    """The chart values of one snapshot; cheap enough to run on the engine's thread."""
    target = snapshot.target_concurrency if snapshot.mode is LoadMode.CONCURRENCY else None
    window = snapshot.window
    return (
        _num(snapshot.window.output_tokens_per_s) if snapshot.window.span_s > 0 else math.nan,
        _num(snapshot.window.ttft.p50),
        _num(snapshot.window.ttft.p99),
        float(snapshot.in_flight),
        _num(target),
        _num(snapshot.gpu.watts) if snapshot.gpu.available else math.nan,
        _num(snapshot.gpu.power_limit_w) if snapshot.gpu.available else math.nan,
        100.0 * window.error_rate if window.requests + window.errors > 0 else math.nan,
        _num(snapshot.server.running) if snapshot.server.available else math.nan,
        _num(snapshot.server.waiting) if snapshot.server.available else math.nan,
    )


class ChartHistory:
    """Fixed-size ring of (t_s, values...) rows plus the event markers; O(1) append, ordered views on demand."""

    def __init__(self, capacity: int = 4096, columns: int = len(Col)) -> None:
        self._capacity, self._columns = capacity, columns
        self._t_buf: np.ndarray | None = None  # allocated with the first row: numpy is not needed before it
        self._v_buf: np.ndarray | None = None
        self._next = 0
        self._size = 0
        self.markers: deque[tuple[float, str]] = deque(maxlen=256)
        self.version = 0  # bumped on every change, so the widget knows when to redraw

    @property
    def _t(self) -> np.ndarray:
        if self._t_buf is None:
            import numpy as np

            self._t_buf = np.full(self._capacity, np.nan)
            self._v_buf = np.full((self._capacity, self._columns), np.nan)
        return self._t_buf

    @property
    def _v(self) -> np.ndarray:
        self._t  # noqa: B018 (allocates both buffers)
        assert self._v_buf is not None
        return self._v_buf

    def __len__(self) -> int:
        return self._size

    def clear(self) -> None:
        self._next = self._size = 0
        self.markers.clear()
        self.version += 1

    @property
    def last_t(self) -> float | None:
        return None if self._size == 0 else float(self._t[(self._next - 1) % self._t.size])

    def append(self, t_s: float, values: tuple[float, ...], events: Iterable[EventView] = ()) -> None:
        """Add one row; a time that goes backwards (a replay seek) starts a fresh history. No values (a session
        still starting): only the events' markers."""
        if not values:
            self._mark(events)
            return
        last = self.last_t
        if last is not None and t_s < last - 1e-6:
            self.clear()
        self._t[self._next] = t_s
        self._v[self._next] = values
        self._next = (self._next + 1) % self._t.size
        self._size = min(self._size + 1, self._t.size)
        self._mark(events)

    def _mark(self, events: Iterable[EventView]) -> None:
        for event in events:
            kind = MARKER_KINDS.get(event.kind)
            if kind is not None:
                self.markers.append((event.t_s, kind))
        self.version += 1

    def prepend(self, rows: Iterable[tuple[float, tuple[float, ...], Iterable[EventView]]],
                events: Iterable[EventView] = ()) -> None:
        """Put older rows (a replay's recomputed history) before the ones held; rows not older are skipped.
        ``events`` (up to the first row held) become markers, each once."""
        first = float(self.ordered()[0][0]) if self._size else math.inf
        t_old, v_old = (a.copy() for a in self.ordered())
        markers = list(self.markers)
        self._next = self._size = 0
        self.markers.clear()
        for t_s, values, row_events in rows:
            if t_s < first - 1e-6:
                self.append(t_s, values, row_events)
        for event in events:
            kind = MARKER_KINDS.get(event.kind)
            if kind is not None and (event.t_s, kind) not in self.markers:
                self.markers.append((event.t_s, kind))
        self.markers.extend(m for m in markers if m not in self.markers)
        for t_s, values in zip(t_old, v_old, strict=True):
            self._t[self._next] = t_s
            self._v[self._next] = values
            self._next = (self._next + 1) % self._t.size
            self._size = min(self._size + 1, self._t.size)
        self.version += 1

    def ordered(self) -> tuple[np.ndarray, np.ndarray]:
        """Times and values, oldest first."""
        if self._size < self._t.size:
            return self._t[: self._size], self._v[: self._size]
        import numpy as np

        idx = np.r_[self._next : self._t.size, 0 : self._next]
        return self._t[idx], self._v[idx]


Style_ = Literal["fill", "line", "dashed"]


@dataclass(frozen=True)
class Series:
    col: Col
    label: str
    color: str  # a theme variable name, resolved when drawing (so themes and light mode just work)
    style: Style_ = "line"  # the pattern, so series differ without colour too

    @property
    def swatch(self) -> str:
        return {"fill": "█", "line": "━", "dashed": "╍"}[self.style]


@dataclass(frozen=True)
class ChartSpec:
    title: str
    series: tuple[Series, ...]  # drawn in order; later ones on top; the last is the chart's main figure
    fmt_value: str = "sig"  # "sig" or "ms"
    optional: bool = False  # drawn only once its main series is above zero (the error rate: once a request failed)


# One colour per quantity in every chart and marker, from the Okabe-Ito palette (told apart by colour-blind
# readers, legible on dark and light backgrounds). Themes colour the rest of the dashboard; they cannot colour the
# charts, because a theme's variables can coincide (textual-dark's accent is its warning colour).
THROUGHPUT, LATENCY, LATENCY_TAIL = "#009E73", "#0072B2", "#56B4E9"
LOAD, POWER, ERRORS = "#CC79A7", "#E69F00", "#D55E00"
REFERENCE = "foreground-muted"  # targets and limits, dashed

CHARTS: tuple[ChartSpec, ...] = (
    ChartSpec("out tok/s", (Series(Col.OUT_TPS, "now", THROUGHPUT, "fill"),)),
    ChartSpec("TTFT ms", (Series(Col.TTFT_P50, "p50", LATENCY, "fill"), Series(Col.TTFT_P99, "p99", LATENCY_TAIL)),
              "ms"),
    ChartSpec("errors %", (Series(Col.ERR_PCT, "now", ERRORS, "fill"),), optional=True),
    ChartSpec("in flight", (Series(Col.TARGET, "target", REFERENCE, "dashed"), Series(Col.IN_FLIGHT, "now", LOAD))),
    ChartSpec("GPU W", (Series(Col.LIMIT, "limit", REFERENCE, "dashed"), Series(Col.WATTS, "now", POWER))),
    # With server metrics: what the server itself holds. Waiting above zero while running is flat is its queue.
    ChartSpec("server reqs", (Series(Col.SRV_WAITING, "waiting", ERRORS, "dashed"),
                              Series(Col.SRV_RUNNING, "running", LOAD))),
)
# When there is not room for all of them, keep the most telling ones.
PRIORITY = ("out tok/s", "TTFT ms", "errors %", "GPU W", "in flight", "server reqs")
MARKER_COLORS = {"load": LOAD, "cap": POWER}  # the colours of what they change: in-flight load, watts
GUTTER = 7  # y ticks: up to five characters ("2.50k") and the axis
WIDE_GUTTER = 16  # one-row charts carry their name and latest value in the gutter instead of a legend row
MARKER_DOT_EVERY = 4  # one dot per character row: a faint line that cannot be mistaken for data


def time_frame(t_first: float, t_last: float, cols_px: int) -> tuple[float, float]:
    """The axis span. A young session is drawn from its start on a frame that widens in 30 s steps; past five
    minutes the frame scrolls in whole pixel columns. Either way the frame holds still between steps, so a tick
    only changes the newest columns (and only those lines need repainting)."""
    elapsed = t_last - t_first
    if elapsed <= WINDOW_S:
        span = min(WINDOW_S, max(MIN_SPAN_S, math.ceil(elapsed / GROW_STEP_S) * GROW_STEP_S))
        return t_first, t_first + span
    col_s = WINDOW_S / max(1, cols_px)
    t_hi = math.ceil(t_last / col_s) * col_s
    return t_hi - WINDOW_S, t_hi


def _runs(rows: list[int]) -> list[tuple[int, int]]:
    """[1, 2, 3, 7] -> [(1, 4), (7, 8)]: contiguous line ranges to repaint."""
    runs: list[tuple[int, int]] = []
    for y in rows:
        if runs and runs[-1][1] == y:
            runs[-1] = (runs[-1][0], y + 1)
        else:
            runs.append((y, y + 1))
    return runs


class ChartsPanel(Widget):
    """Draws the app's ChartHistory; ``refresh_from_history`` is called after each ingested snapshot."""

    can_focus = False
    DEFAULT_CLASSES = "panel"

    def __init__(self, history: ChartHistory, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.history = history
        self.border_title = "Charts"
        self._strips: list[Strip] = []
        self._key: tuple[int, int, int, str] | None = None
        self._base = Style()
        self._combined: dict[tuple[str | None, bool], Style] = {}

    def on_mount(self) -> None:
        self._update_subtitle()

    def _update_subtitle(self) -> None:
        self.border_subtitle = f"[{LOAD}]┊ load change[/]  [{POWER}]┊ power cap[/]"

    def refresh_from_history(self) -> None:
        """Redraw after new rows: only the text lines that changed are repainted (most of a 5-minute chart
        stays put from one tick to the next, since the axis moves in whole pixel columns)."""
        width, height = self.content_size.width, self.content_size.height
        key = (self.history.version, width, height, self.app.theme)
        if key == self._key or not self.is_mounted:
            return
        old = self._strips
        self._strips = self._draw(width, height)
        same_frame = self._key is not None and self._key[1:] == key[1:] and len(old) == len(self._strips)
        self._key = key
        if not same_frame:
            self.refresh()
            return
        changed = [y for y, (a, b) in enumerate(zip(old, self._strips, strict=True)) if a != b]
        for start, end in _runs(changed):
            self.refresh(Region(0, start, width, end - start))

    # -- drawing -----------------------------------------------------------------------------------------------

    def _style(self, name: str, bold: bool = False) -> Style:
        return theme_style(self.app, name, bold)

    def render_line(self, y: int) -> Strip:
        width, height = self.content_size.width, self.content_size.height
        key = (self.history.version, width, height, self.app.theme)
        if key != self._key:
            self._strips = self._draw(width, height)
            self._key = key
        return self._strips[y] if y < len(self._strips) else Strip.blank(width, self.rich_style)

    def _layout(self, height: int, present: set[str]) -> list[tuple[ChartSpec, int]]:
        """Which charts get drawn and how many rows each: all of them at >= 3 rows (a legend row and two plot
        rows), else the top priorities."""
        specs = [spec for spec in CHARTS if spec.title in present]
        avail = height - 1  # the time axis takes one row
        if avail <= 0 or not specs:
            return []
        n = len(specs)
        if avail < 3 * n:
            n = max(1, min(n, avail // 3 if avail >= 3 else avail))
            keep = [title for title in PRIORITY if title in present][:n]
            specs = [spec for spec in specs if spec.title in keep]
        base, extra = divmod(avail, len(specs))
        return [(spec, base + (1 if i < extra else 0)) for i, spec in enumerate(specs)]

    def _draw(self, width: int, height: int) -> list[Strip]:
        if height <= 0 or width <= 0:
            return []
        self._base = self.rich_style  # the panel's own background under every cell, in any terminal and theme
        self._combined.clear()
        if len(self.history) == 0 or width - GUTTER < 4:
            blank = [Strip.blank(width, self._base) for _ in range(height)]
            notice = " waiting for the first snapshot…".ljust(width)[:width]
            blank[0] = Strip([Segment(notice, self._on_base("foreground-muted"))], width)
            return blank
        import numpy as np

        t, v = self.history.ordered()
        present = {spec.title for spec in CHARTS
                   if not spec.optional or bool(np.nan_to_num(v[:, spec.series[-1].col]).any())}  # fmt: skip
        if not np.isfinite(v[:, Col.WATTS]).any():
            present.discard("GPU W")
        if not np.isfinite(v[:, Col.SRV_RUNNING]).any():
            present.discard("server reqs")  # no server metrics in this session
        layout = self._layout(height, present)
        gutter = WIDE_GUTTER if any(rows == 1 for _, rows in layout) else GUTTER
        plot_w = max(0, width - gutter)
        cols_px = plot_w * 2
        t_lo, t_hi = time_frame(float(t[0]), float(t[-1]), cols_px)
        visible = t >= t_lo - MAX_GAP_S
        t, v = t[visible], v[visible]
        marker_cells = self._marker_cells(t_lo, t_hi, plot_w)
        strips: list[Strip] = []
        for spec, rows in layout:
            strips.extend(self._draw_chart(spec, rows, t, v, t_lo, t_hi, plot_w, gutter, marker_cells))
        strips.append(self._axis(t_lo, t_hi, plot_w, gutter, marker_cells))
        while len(strips) < height:
            strips.append(Strip.blank(width, self._base))
        return strips[:height]

    def _marker_cells(self, t_lo: float, t_hi: float, plot_w: int) -> dict[str, np.ndarray]:
        """Character columns of the markers in view, one per column (close markers merge; a power-cap marker
        wins a column it shares with a load change)."""
        import numpy as np

        owner: dict[int, str] = {}
        for mt, kind in self.history.markers:
            if t_lo <= mt <= t_hi and kind in MARKER_COLORS:
                cell = min(plot_w - 1, int((mt - t_lo) / (t_hi - t_lo) * plot_w))
                if owner.get(cell) != "cap":
                    owner[cell] = kind
        return {kind: np.array(sorted(c for c, k in owner.items() if k == kind), dtype=np.int64)
                for kind in MARKER_COLORS}  # fmt: skip

    def _on_base(self, name: str | None, bold: bool = False) -> Style:
        """Theme colour ``name`` over the panel background (combined once per frame, not per segment)."""
        key = (name, bold)
        style = self._combined.get(key)
        if style is None:
            style = self._base if name is None else self._base + self._style(name, bold)
            self._combined[key] = style
        return style

    def _draw_chart(
        self,
        spec: ChartSpec,
        rows: int,
        t: np.ndarray,
        v: np.ndarray,
        t_lo: float,
        t_hi: float,
        plot_w: int,
        gutter: int,
        marker_cells: dict[str, np.ndarray],
    ) -> list[Strip]:
        """One chart: a legend row, then the plot (all rows at once: series bits OR-ed together, each cell
        coloured by its topmost series, marker dots only in cells no series uses)."""
        import numpy as np

        from tui.widgets.braille import (
            BRAILLE_BASE,
            column_ranges,
            dashed,
            dotted_columns,
            lit_grid,
            nice_ceiling,
            to_cells,
        )

        strips: list[Strip] = []
        latest = {s.col: (float(v[-1, s.col]) if v.size else math.nan) for s in spec.series}
        if rows >= 2:
            strips.append(self._legend(spec, latest, gutter + plot_w))
            rows -= 1
        cols_px, rows_px = plot_w * 2, rows * 4
        in_view = t >= t_lo
        peak = max(
            (float(np.nanmax(v[in_view, s.col])) for s in spec.series if np.isfinite(v[in_view, s.col]).any()),
            default=0.0,
        )
        y_hi = nice_ceiling(peak * 1.05)
        owner = np.full((rows, plot_w), -1, dtype=np.int64)  # -1 empty, 0.. series, 100+ marker kinds
        bits = np.zeros((rows, plot_w), dtype=np.uint16)
        for i, cells in enumerate(marker_cells.values()):
            if cells.size:
                mark = to_cells(dotted_columns(cells * 2, cols_px, rows_px, every=MARKER_DOT_EVERY))
                has = mark > 0
                owner[has] = 100 + i
                bits[has] = mark[has]
        data = np.zeros((rows, plot_w), dtype=np.uint16)
        for i, series in enumerate(spec.series):
            covered, lo, hi = column_ranges(t, v[:, series.col], t_lo, t_hi, 0.0, y_hi, cols_px, rows_px, MAX_GAP_S)
            grid = lit_grid(covered, lo, hi, rows_px, fill=series.style == "fill")
            code = to_cells(dashed(grid) if series.style == "dashed" else grid)
            owner[code > 0] = i
            data |= code
        bits = np.where(data > 0, data, bits)
        points = np.where(bits > 0, bits.astype(np.int64) + BRAILLE_BASE, 32)
        text = "".join(map(chr, points.ravel().tolist()))
        changes = owner[:, 1:] != owner[:, :-1]
        kinds = list(marker_cells)
        styles = {-1: self._base}
        for who in np.unique(owner).tolist():
            if who >= 100:
                styles[who] = self._on_base(MARKER_COLORS[kinds[who - 100]])
            elif who >= 0:
                styles[who] = self._on_base(spec.series[who].color)
        ticks = self._ticks(spec, rows, y_hi, latest, gutter)
        for row in range(rows):
            line = text[row * plot_w : (row + 1) * plot_w]
            cuts = [0, *(np.flatnonzero(changes[row]) + 1).tolist(), plot_w]
            owners = owner[row]
            segments = list(ticks[row])
            segments += [Segment(line[a:b], styles[int(owners[a])]) for a, b in itertools.pairwise(cuts)]
            strips.append(Strip(segments, gutter + plot_w))
        return strips

    def _value(self, spec: ChartSpec, value: float) -> str:
        if not math.isfinite(value):
            return fmt.DASH
        return fmt.ms(value) if spec.fmt_value == "ms" else fmt.sig(value)

    def _legend(self, spec: ChartSpec, latest: dict[Col, float], width: int) -> Strip:
        """The chart's name, then a swatch, name and latest value per series (the main one first)."""
        segments = [Segment(spec.title, self._on_base("foreground", bold=True))]
        used = len(spec.title)
        for series in reversed(spec.series):
            value = self._value(spec, latest[series.col])
            parts = [("   " + series.swatch, self._on_base(series.color)), (f" {series.label} ", self._on_base(
                "foreground-muted")), (value, self._on_base(series.color, bold=True))]  # fmt: skip
            size = sum(len(text) for text, _ in parts)
            if used + size > width:
                break
            segments += [Segment(text, style) for text, style in parts]
            used += size
        segments.append(Segment(" " * max(0, width - used), self._base))
        return Strip(segments, width)

    def _ticks(self, spec: ChartSpec, rows: int, y_hi: float, latest: dict[Col, float],
               gutter: int) -> list[list[Segment]]:
        """Gutter per plot row: only axis ticks (the top, 0, and halves or quarters on tall charts), each on the
        row its value is drawn at. A one-row chart has no legend row: its name and main value go here."""
        muted = axis = self._on_base("foreground-muted")
        inner = gutter - 1
        if rows == 1:
            main = spec.series[-1]
            value = self._value(spec, latest[main.col])
            title = spec.title[: max(0, inner - len(value) - 1)]
            return [[Segment(title, self._on_base("foreground", bold=True)),
                     Segment(value.rjust(inner - len(title)), self._on_base(main.color, bold=True)),
                     Segment("│", axis)]]  # fmt: skip
        labels: dict[int, float] = {0: y_hi, rows - 1: 0.0}
        fractions = (0.25, 0.5, 0.75) if rows >= 9 else (0.5,) if rows >= 5 else ()
        for fraction in fractions:
            pixel = round(fraction * (rows * 4 - 1))
            row = rows - 1 - pixel // 4
            if 0 < row < rows - 1:
                labels.setdefault(row, fraction * y_hi)
        lines: list[list[Segment]] = []
        for row in range(rows):
            if row in labels:
                text = "0" if row == rows - 1 else self._value(spec, labels[row])
                lines.append([Segment(text[:inner].rjust(inner), muted), Segment("┤", axis)])
            else:
                lines.append([Segment(" " * inner, self._base), Segment("│", axis)])
        return lines

    def _axis(self, t_lo: float, t_hi: float, plot_w: int, gutter: int, marker_cells: dict[str, np.ndarray]) -> Strip:
        """Shared time axis in session time (m:ss), with a ▲ under every marker (labels step aside for them)."""
        from tui.widgets.braille import nice_step

        muted = self._on_base("foreground-muted")
        chars = ["─"] * plot_w
        owners: list[str | None] = [None] * plot_w
        for kind, cells in marker_cells.items():
            for col in cells.tolist():
                if 0 <= col < plot_w:
                    chars[col] = "▲"
                    owners[col] = kind
        span = t_hi - t_lo
        step = nice_step(span, max(1, plot_w // 9))
        tick = math.ceil(t_lo / step) * step
        while tick <= t_hi + 1e-9:
            x = int((tick - t_lo) / span * plot_w)
            label = f" {fmt.axis_clock(tick)} "
            for start in (x - 1, x, x + 1, x + 2):
                end = start + len(label)
                if start >= 0 and end <= plot_w and all(c == "─" for c in chars[max(0, start - 1) : end + 1]):
                    chars[start:end] = label
                    break
            tick += step
        segments = [Segment(" " * (gutter - 1) + "└", muted)]
        start = 0
        for i in range(1, plot_w + 1):
            if i == plot_w or owners[i] != owners[start]:
                owner = owners[start]
                style = muted if owner is None else self._on_base(MARKER_COLORS[owner], bold=True)
                segments.append(Segment("".join(chars[start:i]), style))
                start = i
        return Strip(segments, gutter + plot_w)

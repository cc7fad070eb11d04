"""The live window's right edge: the moment up to which every worker still reporting has reported.

Workers report every ~100 ms and a report takes a while to reach the controller, so at "now" the newest tenth of a
second of chunks, first tokens and gaps is still missing from some workers, while a report counted whole at its
stamp overshoots the window's start: a window ending at now saws around the truth (a 1 s window, 2 workers: RMS
3.9%, worst +9%; at the edge 0.9%, worst -2%; tests/bench/window_edge.py). The window ends instead at the edge: the
oldest latest-report stamp among the workers waited for. A worker is not waited for once it is finished (its report
says ``final``) or silent for more than ``SILENT_NS``, so one stuck worker cannot freeze the dashboard. Facts
stamped after the edge are held here and enter their slot when the edge passes them; a fact stamped at or before it
(from a worker that was not waited for) enters at once, as it always did. A report's chunks are spread evenly over
the interval since that worker's previous report, so the report that straddles the edge counts its share on each
side (no sawtooth).

Chunk spreading is integer arithmetic on microseconds since t0, the resolution recordings keep, so live and
replay split a report alike; the edge depends only on the reports fed in and the snapshot time, never on batching.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from engine.metrics.windows import RecordSamples, SlottedWindow, non_negative
from engine.records import IntervalCounts, RequestRecord, StreamProgress

SILENT_NS = 1_000_000_000  # a worker with no report stamped in the last second is not waited for
HELD_LIMIT = 100_000  # facts held with no snapshot taken: past this the edge moves as if now = the newest report

T = TypeVar("T")


@dataclass(slots=True)
class _Group:
    """Records of one arrival that end in one slot, with the samples computed for the totals (raw values, a few
    bytes each while held), so a group the edge passes whole is not gone through again; one it cuts is."""

    index: int
    records: list[RequestRecord]
    samples: RecordSamples | None
    first_ns: int  # earliest end
    last_ns: int  # latest end


@dataclass(slots=True)
class _Spread:
    """One report's chunks, spread over (a_us, t_us]; the part up to ``done_us`` is in the window already."""

    a_us: int
    t_us: int
    chunks: int
    done_us: int

    def upto(self, x_us: int) -> int:
        """Chunks in (a, x]: the cumulative share, floored, so pieces always sum to ``chunks`` exactly."""
        if x_us >= self.t_us:
            return self.chunks
        return self.chunks * (x_us - self.a_us) // (self.t_us - self.a_us)


class WindowFeed:
    """Puts facts into the window's slots when the edge has passed them (``watermark``), or at once (the edge is
    then "now", as before the edge existed: kept for comparison in ``tests/bench/window_edge.py``)."""

    def __init__(self, window: SlottedWindow, *, t0_ns: int, from_ns: int, workers: int = 0, itl: bool = False,
                 watermark: bool = True) -> None:
        """``workers``: how many are expected (they are waited for from t0 until they report or fall silent);
        ``from_ns``: where a worker's first report's interval starts (the recording's start in a late replay);
        ``itl``: the records carry the ITL (recordings older than ticks with gaps)."""
        self._window = window
        self._t0 = t0_ns
        self._from = from_ns
        self._itl = itl
        self.watermark = watermark
        self.edge_ns = t0_ns
        self._reported: dict[int, int] = dict.fromkeys(range(workers), t0_ns)  # worker -> its latest report stamp
        self._final: set[int] = set()
        self._groups: list[_Group] = []
        self._firsts: list[tuple[int, int]] = []
        self._outputs: list[tuple[int, int]] = []
        self._gaps: list[tuple[int, IntervalCounts]] = []
        self._chunks: list[_Spread] = []

    @property
    def held(self) -> int:
        """Facts waiting for the edge (a group of records counts once)."""
        return len(self._groups) + len(self._firsts) + len(self._outputs) + len(self._gaps) + len(self._chunks)

    # -- facts in -------------------------------------------------------------------------------------------------

    def on_report(self, p: StreamProgress) -> None:
        """A worker's progress report: it moves that worker's mark and brings its chunks."""
        previous = self._reported.get(p.worker)
        if previous is None or p.t_ns > previous:
            self._reported[p.worker] = p.t_ns
        if p.final:
            self._final.add(p.worker)
        if not p.chunks:
            return
        if not self.watermark:
            slot = self._window.slot(self._window.index(p.t_ns))
            if slot is not None:
                slot.output_tokens += p.chunks
            return
        t_us = self._us(p.t_ns)
        a_us = min(self._us(self._from if previous is None else previous), t_us - 1)  # out of order: all at t
        spread = _Spread(a_us, t_us, p.chunks, a_us)
        self._spread(spread, self._us(self.edge_ns))
        if spread.done_us < t_us:
            self._chunks.append(spread)
        self._bound()

    def add_group(self, index: int, records: list[RequestRecord], samples: RecordSamples) -> None:
        """Records that end in slot ``index`` with their samples (computed once for the totals)."""
        ends = [r.t_end_ns for r in records]
        group = _Group(index, records, samples, min(ends), max(ends))
        if not self._waits():
            self._into_slot(index, samples)
            return
        if self._take(group, self.edge_ns):
            self._groups.append(group)
        self._bound()

    def add_firsts(self, firsts: Sequence[tuple[int, int]], output: bool = False) -> None:
        """(first-token stamp, TTFT ns) pairs; TTFO with ``output``."""
        late, held = self._split(firsts, lambda f: f[0])
        (self._outputs if output else self._firsts).extend(held)
        firsts_into(self._window, late, output)

    def add_gaps(self, t_ns: int, gaps: IntervalCounts) -> None:
        if self._waits() and t_ns > self.edge_ns:
            self._gaps.append((t_ns, gaps))
            return
        gaps_into(self._window, t_ns, gaps)

    # -- the edge -------------------------------------------------------------------------------------------------

    def advance(self, now_ns: int) -> int:
        """Move the edge to the oldest latest report among the workers waited for at ``now_ns`` (never back, never
        past now), put what it passed into the slots, and return it."""
        if not self.watermark:
            self.edge_ns = max(self.edge_ns, now_ns)
            return now_ns
        waited = [t for w, t in self._reported.items() if w not in self._final and now_ns - t <= SILENT_NS]
        edge = max(self.edge_ns, min(now_ns, min(waited, default=now_ns)))
        if edge > self.edge_ns or not self._waits():
            self._release(edge)
        self.edge_ns = edge
        return edge

    def _release(self, edge_ns: int) -> None:
        if self._groups:
            self._groups = [g for g in self._groups if self._take(g, edge_ns)]
        ready_firsts, self._firsts = self._partition(self._firsts, edge_ns, lambda f: f[0])
        firsts_into(self._window, ready_firsts, False)
        ready_outputs, self._outputs = self._partition(self._outputs, edge_ns, lambda f: f[0])
        firsts_into(self._window, ready_outputs, True)
        ready_gaps, self._gaps = self._partition(self._gaps, edge_ns, lambda g: g[0])
        for t_ns, gaps in ready_gaps:
            gaps_into(self._window, t_ns, gaps)
        if self._chunks:
            edge_us = self._us(edge_ns)
            still = []
            for spread in self._chunks:
                self._spread(spread, edge_us)
                if spread.done_us < spread.t_us:
                    still.append(spread)
            self._chunks = still

    def _bound(self) -> None:
        """Nobody takes snapshots (a long feed with one at the end): keep the held facts bounded anyway."""
        if self.held > HELD_LIMIT:
            self.advance(max(self._reported.values(), default=self.edge_ns))

    # -- helpers --------------------------------------------------------------------------------------------------

    def _take(self, group: _Group, edge_ns: int) -> bool:
        """Put what of the group the edge passed into its slot; True when some of it is still to come."""
        if group.first_ns > edge_ns:
            return True
        if group.last_ns <= edge_ns:
            self._into_slot(group.index, group.samples or RecordSamples(group.records, self._itl))
            return False
        ready = [r for r in group.records if r.t_end_ns <= edge_ns]  # the edge cuts it: its parts are redone
        group.records = [r for r in group.records if r.t_end_ns > edge_ns]
        group.samples = None
        group.first_ns = min(r.t_end_ns for r in group.records)
        self._into_slot(group.index, RecordSamples(ready, self._itl))
        return True

    def _into_slot(self, index: int, samples: RecordSamples) -> None:
        slot = self._window.slot(index)
        if slot is not None:
            samples.add_to(slot)

    def _waits(self) -> bool:
        """Some worker may still report facts before the edge's next move (else facts go straight in)."""
        return self.watermark and len(self._final) < len(self._reported)

    def _split(self, items: Iterable[T], stamp: Callable[[T], int]) -> tuple[list[T], list[T]]:
        """(facts the edge already passed, facts to hold)."""
        if not self._waits():
            return list(items), []
        return self._partition(list(items), self.edge_ns, stamp)

    @staticmethod
    def _partition(items: list[T], edge_ns: int, stamp: Callable[[T], int]) -> tuple[list[T], list[T]]:
        """(facts at or before the edge, the rest)."""
        if not items:
            return [], items
        ready = [item for item in items if stamp(item) <= edge_ns]
        if not ready:
            return [], items
        return ready, [item for item in items if stamp(item) > edge_ns]

    def _us(self, t_ns: int) -> int:
        return max(0, (t_ns - self._t0) // 1000)

    def _spread(self, s: _Spread, upto_us: int) -> None:
        """Put the report's chunks in (done, min(upto, t)] into the slots they fall in."""
        lo, hi = s.done_us, min(upto_us, s.t_us)
        if hi <= lo:
            return
        window = self._window
        slot_ns = window.slot_ns
        k = max(0, lo * 1000 // slot_ns)  # a report stamped at t0 itself: its chunks count in the first slot
        while True:
            x = min(hi, (k + 1) * slot_ns // 1000)
            n = s.upto(x) - s.upto(lo)
            if n:
                slot = window.slot(k)
                if slot is not None:
                    slot.output_tokens += n
            if x >= hi:
                break
            lo, k = x, k + 1
        s.done_us = hi


def firsts_into(window: SlottedWindow, firsts: Sequence[tuple[int, int]], output: bool) -> None:
    """TTFT (TTFO with ``output``) samples, as (token stamp, latency ns), into the slot of their token."""
    by_slot: dict[int, list[int]] = {}
    for t_first, latency in firsts:
        by_slot.setdefault(window.index(t_first), []).append(latency)
    for index, values in by_slot.items():
        slot = window.slot(index)
        if slot is not None:
            (slot.ttfo if output else slot.ttft).add_ns(non_negative(values))


def gaps_into(window: SlottedWindow, t_ns: int, gaps: IntervalCounts) -> None:
    """ITL gaps a progress tick carried, into the slot of that tick."""
    slot = window.slot(window.index(t_ns))
    if slot is not None:
        slot.itl.add_counts(gaps)

"""Time-slotted statistics: the building blocks of the sliding window and the since-start totals.

A session is cut into fixed slots (``window_s / SLOTS_PER_WINDOW`` long, aligned on the session start). Each slot
holds mergeable log histograms and plain counters, so a window is the merge of a dozen slots (O(buckets), never
a re-sort of samples) and memory stays flat over hours: slots that left the window are dropped.

Every duration is handled as integer nanoseconds and every sum is a Python int, so means and totals are exact
and do not depend on how the inputs were batched: live and replay give identical figures from identical inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain

import numpy as np

from engine.metrics.histogram import LogHistogram
from engine.records import IntervalCounts, RequestRecord
from engine.snapshot import Percentiles

SLOTS_PER_WINDOW = 10  # window resolution: the window covers between 90% and 100% of window_s (see window_view)
_NS_PER_MS = 1_000_000


class LatencyMetric:
    """A log histogram fed with integer nanoseconds, plus their exact integer sum (the histogram's own float sum
    depends on summation order, which would make a replay differ from live in the last digit)."""

    __slots__ = ("hist", "sum_ns")

    def __init__(self) -> None:
        self.hist = LogHistogram()
        self.sum_ns = 0

    def add_ns(self, values_ns: np.ndarray) -> None:
        """Add non-negative integer nanoseconds (always through the vectorised path, so a value lands in the same
        bucket whichever batch it came in)."""
        if values_ns.size == 0:
            return
        self.hist.add_many(values_ns / 1e9)
        self.sum_ns += int(values_ns.sum())

    def add_counts(self, c: IntervalCounts) -> None:
        """Add samples shipped as bucket counts (a progress tick's ITL): the same buckets and sum as ``add_ns``."""
        self.hist.add_counts(c)
        self.sum_ns += c.sum_ns

    def merge(self, other: LatencyMetric) -> None:
        self.hist.merge(other.hist)
        self.sum_ns += other.sum_ns

    @property
    def count(self) -> int:
        return self.hist.count

    def quantile_ms(self, q: float) -> float | None:
        v = self.hist.quantile(q)
        return None if v is None else v * 1e3

    def percentiles(self) -> Percentiles:
        """Milliseconds for the snapshot; percentiles within the histogram's 1%, mean and max exact."""
        h = self.hist
        if h.count == 0:
            return Percentiles()
        p50, p90, p95, p99 = (None if v is None else v * 1e3 for v in h.quantiles((0.5, 0.9, 0.95, 0.99)))
        return Percentiles(
            count=h.count, p50=p50, p90=p90, p95=p95, p99=p99, mean=self.sum_ns / h.count / _NS_PER_MS, max=h.max * 1e3
        )


class SlotStats:
    """Everything counted in one time slot (or, merged, over a window or the whole session)."""

    __slots__ = ("e2e", "errors_by_class", "input_tokens", "itl", "output_tokens", "requests", "send_lag", "tpot",
                 "ttfo", "ttft")

    def __init__(self) -> None:
        self.ttft = LatencyMetric()
        self.ttfo = LatencyMetric()  # time to first output token (after reasoning)
        self.itl = LatencyMetric()
        self.tpot = LatencyMetric()
        self.e2e = LatencyMetric()
        self.send_lag = LatencyMetric()  # t_start - t_scheduled: how late the client sent
        self.requests = 0  # successful completions
        self.errors_by_class: dict[str, int] = {}
        self.input_tokens = 0
        self.output_tokens = 0  # progress chunks at their arrival plus usage corrections at completion

    @property
    def errors(self) -> int:
        return sum(self.errors_by_class.values())

    def merge(self, other: SlotStats) -> None:
        for mine, theirs in zip(self.metrics(), other.metrics(), strict=True):
            mine.merge(theirs)
        self.requests += other.requests
        for cls, n in other.errors_by_class.items():
            self.errors_by_class[cls] = self.errors_by_class.get(cls, 0) + n
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens

    def metrics(self) -> tuple[LatencyMetric, ...]:
        return (self.ttft, self.itl, self.tpot, self.e2e, self.send_lag, self.ttfo)


class RecordSamples:
    """The values a group of records contributes, computed once and added to both its slot and the totals."""

    __slots__ = ("e2e", "errors_by_class", "input_tokens", "itl", "output_tokens", "requests", "send_lag", "tpot",
                 "ttft")

    def __init__(self, records: Sequence[RequestRecord], itl: bool = False) -> None:
        """``itl``: take ITL from the records' chunk stamps (only where progress ticks do not ship the gaps)."""
        tpot: list[int] = []
        e2e: list[int] = []
        send_lag: list[int] = []
        token_times: list[tuple[int, ...]] = []
        self.requests = 0
        self.errors_by_class: dict[str, int] = {}
        self.input_tokens = 0
        self.output_tokens = 0
        for r in records:
            send_lag.append(r.t_start_ns - r.t_scheduled_ns)  # failed sends are still sends
            # the chunks were counted as they arrived; usage is the truth, so add the difference now
            self.output_tokens += r.output_tokens - r.chunks
            if r.error is not None:
                key = r.error.value
                self.errors_by_class[key] = self.errors_by_class.get(key, 0) + 1
                continue
            self.requests += 1
            self.input_tokens += r.input_tokens or 0
            e2e.append(r.e2e_ns)
            per_token = r.tpot_ns
            if per_token is not None:
                tpot.append(round(per_token))
            if itl and len(r.token_times_ns) >= 2:
                token_times.append(r.token_times_ns)
        self.ttft = np.zeros(0, dtype=np.int64)  # TTFT and TTFO enter at their tokens: see edge.firsts_into
        self.tpot = non_negative(tpot)
        self.e2e = non_negative(e2e)
        self.send_lag = non_negative(send_lag)
        self.itl = _gaps(token_times)

    def add_to(self, stats: SlotStats) -> None:
        for metric, values in zip(stats.metrics(), (self.ttft, self.itl, self.tpot, self.e2e, self.send_lag,
                                                     self.ttft), strict=True):
            metric.add_ns(values)
        stats.requests += self.requests
        for cls, n in self.errors_by_class.items():
            stats.errors_by_class[cls] = stats.errors_by_class.get(cls, 0) + n
        stats.input_tokens += self.input_tokens
        stats.output_tokens += self.output_tokens


def non_negative(values: Sequence[int]) -> np.ndarray:
    """Clock stamps from one monotonic clock cannot go backwards; clamp rather than poison a histogram."""
    return np.maximum(np.asarray(values, dtype=np.int64), 0)


def _gaps(token_times: list[tuple[int, ...]]) -> np.ndarray:
    """Inter-token latencies of many requests in one pass: diff the concatenation, drop the cross-request gaps."""
    if not token_times:
        return np.zeros(0, dtype=np.int64)
    lengths = np.fromiter((len(t) for t in token_times), dtype=np.int64, count=len(token_times))
    flat = np.fromiter(chain.from_iterable(token_times), dtype=np.int64, count=int(lengths.sum()))
    gaps = np.delete(np.diff(flat), np.cumsum(lengths)[:-1] - 1)
    positive: np.ndarray = np.maximum(gaps, 0)
    return positive


class SlottedWindow:
    """Slots keyed by index since the session start; merges the ones inside the window and forgets older ones."""

    def __init__(self, t0_ns: int, window_ns: int, slots_per_window: int = SLOTS_PER_WINDOW) -> None:
        self._t0 = t0_ns
        self._window_ns = window_ns
        self._slots_per_window = slots_per_window
        self._slot_ns = max(1, window_ns // slots_per_window)
        self._slots: dict[int, SlotStats] = {}
        self._floor = 0  # slots below this index have left the window for good
        self._newest = 0

    @property
    def slot_count(self) -> int:
        return len(self._slots)

    @property
    def slot_ns(self) -> int:
        return self._slot_ns

    def index(self, t_ns: int) -> int:
        """Stamps before the session start count in the first slot."""
        return max(0, (t_ns - self._t0) // self._slot_ns)

    def slot(self, index: int) -> SlotStats | None:
        """The slot for an index, created on demand; None when it already left the window (totals only)."""
        if index < self._floor:
            return None
        stats = self._slots.get(index)
        if stats is None:
            stats = self._slots[index] = SlotStats()
            self._newest = max(self._newest, index)
            if len(self._slots) > 3 * self._slots_per_window:
                # nobody took a snapshot for a while: anything this far behind the newest input cannot be in any
                # later window (snapshots come after their inputs), so drop it to keep memory flat
                self._drop_below(self._newest - 2 * self._slots_per_window)
        return stats

    def view(self, now_ns: int) -> tuple[SlotStats, int]:
        """The merged window ending at ``now_ns`` (the aggregator passes the edge, see ``edge.py``: no slot holds a
        fact stamped after it) and the nanoseconds it covers.

        The window is made of whole slots starting at or after ``now - window`` plus the current partial one, so
        the span covered is ``now - start of the oldest slot``: between (1 - 1/SLOTS_PER_WINDOW) and 1 times the
        window, and ``now - t0`` early in a session. Rates divide by this exact span, never by the nominal one.
        """
        now_rel = now_ns - self._t0
        first = -((self._window_ns - now_rel) // self._slot_ns)  # ceil((now_rel - window) / slot)
        self._drop_below(first)
        merged = SlotStats()
        for i in sorted(self._slots):
            merged.merge(self._slots[i])
        span_ns = max(0, now_rel - max(0, first * self._slot_ns))
        return merged, span_ns

    def _drop_below(self, index: int) -> None:
        if index <= self._floor:
            return
        self._floor = index
        for i in [i for i in self._slots if i < index]:
            del self._slots[i]


"""Log-bucketed, mergeable histogram: bounded memory over hours, percentiles within 1% relative error.

Every sample lands in bucket ``ceil(log_gamma(x))`` with ``gamma = (1 + a) / (1 - a)``; reporting a bucket by
``2 * gamma**i / (gamma + 1)`` keeps the relative error of any quantile at most ``a`` (the DDSketch bound).
Histograms from several workers or time slots merge by adding counts, so percentiles are merged, never
averaged. Memory is one fixed int64 array (about 1,300 buckets, 10 KiB) whatever the sample count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from engine.records import IntervalCounts

RELATIVE_ERROR = 0.01
_GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
_LOG_GAMMA = math.log(_GAMMA)
MIN_VALUE = 1e-6  # seconds: anything smaller is counted in the lowest bucket (1 us is below any latency we show)
MAX_VALUE = 1e5  # seconds: anything larger is counted in the top bucket
_OFFSET = math.ceil(math.log(MIN_VALUE) / _LOG_GAMMA)
N_BUCKETS = math.ceil(math.log(MAX_VALUE) / _LOG_GAMMA) - _OFFSET + 1
_BUCKET_VALUES = 2 * np.power(_GAMMA, np.arange(N_BUCKETS) + _OFFSET) / (_GAMMA + 1)


def bucket_index(value: float) -> int:
    """The bucket a value falls into (values are clamped into [MIN_VALUE, MAX_VALUE])."""
    v = min(max(value, MIN_VALUE), MAX_VALUE)
    return math.ceil(math.log(v) / _LOG_GAMMA) - _OFFSET


def bucket_indices(values: np.ndarray) -> np.ndarray:
    """The buckets of many values (seconds), exactly as ``add_many`` computes them."""
    clipped = np.clip(np.asarray(values, dtype=np.float64), MIN_VALUE, MAX_VALUE)
    idx: np.ndarray = np.ceil(np.log(clipped) / _LOG_GAMMA).astype(np.int64) - _OFFSET
    return idx


def interval_counts(values_ns: np.ndarray) -> IntervalCounts | None:
    """Non-negative integer nanoseconds in the compact form a progress tick carries (None when there are none)."""
    if values_ns.size == 0:
        return None
    buckets, counts = np.unique(bucket_indices(values_ns / 1e9), return_counts=True)
    return IntervalCounts(tuple(int(b) for b in buckets), tuple(int(c) for c in counts), int(values_ns.sum()),
                          int(values_ns.min()), int(values_ns.max()))


class LogHistogram:
    """Counts of positive values (seconds by convention) in log buckets, plus exact count, sum, min and max."""

    __slots__ = ("count", "counts", "max", "min", "total")

    def __init__(self) -> None:
        self.counts = np.zeros(N_BUCKETS, dtype=np.int64)
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    def add(self, value: float) -> None:
        self.counts[bucket_index(value)] += 1
        self.count += 1
        self.total += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    def add_many(self, values: Iterable[float] | np.ndarray) -> None:
        arr = np.asarray(values, dtype=np.float64)
        if arr.size == 0:
            return
        self.counts += np.bincount(bucket_indices(arr), minlength=N_BUCKETS)
        self.count += int(arr.size)
        self.total += float(arr.sum())
        self.min = min(self.min, float(arr.min()))
        self.max = max(self.max, float(arr.max()))

    def add_counts(self, c: IntervalCounts) -> None:
        """Add samples given as bucket counts (``interval_counts``); ``total``, ``min`` and ``max`` in seconds."""
        n = sum(c.counts)
        if n == 0:
            return
        idx = np.clip(np.asarray(c.buckets, dtype=np.int64), 0, N_BUCKETS - 1)  # a damaged file cannot index out
        np.add.at(self.counts, idx, np.asarray(c.counts, dtype=np.int64))
        self.count += n
        self.total += c.sum_ns / 1e9
        self.min = min(self.min, c.min_ns / 1e9)
        self.max = max(self.max, c.max_ns / 1e9)

    def merge(self, other: LogHistogram) -> None:
        """Add another histogram's samples into this one."""
        if other.count == 0:
            return
        self.counts += other.counts
        self.count += other.count
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def copy(self) -> LogHistogram:
        h = LogHistogram()
        h.merge(self)
        return h

    def clear(self) -> None:
        self.counts[:] = 0
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0..1), within RELATIVE_ERROR of the exact sample quantile; None when empty."""
        return self.quantiles((q,))[0]

    def quantiles(self, qs: Iterable[float]) -> list[float | None]:
        qs = list(qs)
        if self.count == 0:
            return [None] * len(qs)
        cumulative = np.cumsum(self.counts)
        out: list[float | None] = []
        for q in qs:
            rank = max(1, math.ceil(q * self.count))  # nearest-rank definition
            i = int(np.searchsorted(cumulative, rank))
            # the exact extremes are known; never report beyond them
            out.append(min(max(float(_BUCKET_VALUES[i]), self.min), self.max))
        return out

    @classmethod
    def merged(cls, parts: Iterable[LogHistogram]) -> LogHistogram:
        h = cls()
        for p in parts:
            h.merge(p)
        return h

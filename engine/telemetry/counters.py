"""Cumulative series -> increases: counters with reset detection and histograms from merged bucket deltas.

Prometheus counters only go up; a value lower than the one before means the process restarted and the counter
began again from zero, so the increase over that interval is the new value itself (Prometheus's ``rate()`` does
the same). Never a negative rate. Histograms are cumulative too: the distribution over a window is the
difference of the bucket counts at its ends, merged across replicas bucket by bucket, and percentiles come from
that merged histogram (linear within a bucket, as ``histogram_quantile`` does), never from averaged percentiles.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from engine.telemetry.exposition import Exposition, Labels

INF = math.inf


class BucketError(ValueError):
    """A histogram whose buckets are not cumulative or lack ``+Inf``; one line."""


@dataclass(frozen=True, slots=True)
class Buckets:
    """A cumulative histogram: upper bounds (seconds, ascending, ending with +Inf), counts, and the sum."""

    bounds: tuple[float, ...]
    counts: tuple[float, ...]  # cumulative: counts[i] = observations <= bounds[i]
    total: float = 0.0  # the _sum series (seconds)

    @property
    def count(self) -> float:
        return self.counts[-1] if self.counts else 0.0

    def to_json(self) -> list[object]:
        return [[_bound_json(b) for b in self.bounds], list(self.counts), self.total]

    @classmethod
    def from_json(cls, data: Sequence[object]) -> Buckets:
        bounds, counts, total = data
        assert isinstance(bounds, list) and isinstance(counts, list) and isinstance(total, int | float | str)
        return cls(tuple(INF if b == "+Inf" else float(b) for b in bounds), tuple(float(c) for c in counts),
                   float(total))  # fmt: skip


def _bound_json(b: float) -> float | str:
    return "+Inf" if math.isinf(b) else b


def counter_increase(values: Sequence[float]) -> float:
    """Increase over consecutive readings of one counter; a drop is a reset (the new value counts whole)."""
    total = 0.0
    for prev, cur in itertools.pairwise(values):
        total += cur - prev if cur >= prev else cur
    return total


def buckets_increase(prev: Buckets, cur: Buckets) -> Buckets:
    """The observations between two readings. A reset (any count lower) or a new bucket layout counts ``cur``
    whole, as for counters."""
    if prev.bounds != cur.bounds or any(c < p for p, c in zip(prev.counts, cur.counts, strict=True)):
        return cur
    return Buckets(
        cur.bounds,
        tuple(c - p for p, c in zip(prev.counts, cur.counts, strict=True)),
        max(0.0, cur.total - prev.total),
    )


def series_increase(readings: Sequence[Buckets]) -> Buckets | None:
    """Sum of the increases between consecutive readings (resets handled per interval); None for < 2 readings."""
    if len(readings) < 2:
        return None
    out: Buckets | None = None
    for prev, cur in itertools.pairwise(readings):
        step = buckets_increase(prev, cur)
        out = step if out is None else merge([out, step])
    return out


def merge(histograms: Iterable[Buckets]) -> Buckets | None:
    """Add histograms bucket by bucket. Different layouts keep only the bounds they all share (cumulative counts
    at a shared bound are exact, so the merge stays exact at those bounds); None when there is nothing."""
    hs = [h for h in histograms if h.bounds]
    if not hs:
        return None
    if all(h.bounds == hs[0].bounds for h in hs):
        bounds = hs[0].bounds
        counts = tuple(sum(col) for col in zip(*(h.counts for h in hs), strict=True))
        return Buckets(bounds, counts, sum(h.total for h in hs))
    shared = sorted(set.intersection(*(set(h.bounds) for h in hs)))
    counts_at = [dict(zip(h.bounds, h.counts, strict=True)) for h in hs]
    return Buckets(tuple(shared), tuple(sum(c[b] for c in counts_at) for b in shared), sum(h.total for h in hs))


def quantile(h: Buckets, q: float) -> float | None:
    """The q-quantile (seconds) by linear interpolation inside its bucket; None without observations.

    As Prometheus: the first bucket interpolates from 0; a quantile in the +Inf bucket is the highest finite bound.
    """
    n = h.count
    if n <= 0:
        return None
    rank = q * n
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in zip(h.bounds, h.counts, strict=True):
        if count >= rank and count > lower_count:
            if math.isinf(bound):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        if not math.isinf(bound):
            lower_bound = bound
        lower_count = count
    return lower_bound


def read_histograms(expo: Exposition, name: str) -> list[Buckets]:
    """Every label set of histogram ``name`` in one scrape (``name_bucket``/``_sum``), validated.

    Raises BucketError when a label set's buckets are not cumulative or have no +Inf bucket.
    """
    groups: dict[Labels, dict[float, float]] = {}
    for labels, value in expo.values(f"{name}_bucket"):
        le = dict(labels).get("le")
        if le is None:
            raise BucketError(f"{name}: a bucket without le")
        try:
            bound = float(le)
        except ValueError:
            raise BucketError(f"{name}: bucket bound {le[:20]!r} is not a number") from None
        rest = tuple(kv for kv in labels if kv[0] != "le")
        groups.setdefault(rest, {})[bound] = value
    sums = {labels: v for labels, v in expo.values(f"{name}_sum")}
    out: list[Buckets] = []
    for labels, by_bound in groups.items():
        bounds = tuple(sorted(by_bound))
        counts = tuple(by_bound[b] for b in bounds)
        if not bounds or not math.isinf(bounds[-1]):
            raise BucketError(f"{name}: no +Inf bucket")
        if any(b < a for a, b in itertools.pairwise(counts)) or counts[0] < 0:
            raise BucketError(f"{name}: bucket counts are not cumulative")
        out.append(Buckets(bounds, counts, max(0.0, sums.get(labels, 0.0))))
    return out

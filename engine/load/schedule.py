"""Load schedules: how a target splits across workers, and seeded Poisson arrivals on an absolute clock.

Open-loop arrivals follow ``due_k = start + sum(Exp(1/R))``: each gap is added to a running offset from a fixed
start, never to the time the previous request was actually sent. A slow server or a busy client therefore cannot
slow the sender down (no coordinated omission); a late send keeps its due time as ``t_scheduled_ns``, so its
queueing shows up in the latency figures instead of vanishing.
"""

from __future__ import annotations

import random


def split_concurrency(total: int, workers: int) -> list[int]:
    """Shares that sum to ``total``, as even as possible (the first workers take the remainder)."""
    base, extra = divmod(max(0, total), workers)
    return [base + (1 if i < extra else 0) for i in range(workers)]


def split_rate(total: float, workers: int) -> list[float]:
    """Equal shares: W independent Poisson streams of R/W together are one Poisson stream of R."""
    return [max(0.0, total) / workers] * workers


def worker_seed(seed: int, worker: int) -> int:
    """A distinct, reproducible arrival seed per worker."""
    return seed * 1_000_003 + worker * 7_919 + 1


class PoissonArrivals:
    """Due times (perf_counter_ns) of Poisson arrivals at ``rate`` per second, from ``start_ns`` on."""

    __slots__ = ("_offset_ns", "_rate", "_rng", "_start_ns")

    def __init__(self, rate: float, seed: int, start_ns: int) -> None:
        self._rng = random.Random(seed)
        self._rate = rate
        self._start_ns = start_ns
        self._offset_ns = 0.0

    @property
    def rate(self) -> float:
        return self._rate

    def next_due_ns(self) -> int | None:
        """The next arrival's due time; None when the rate is zero (nothing is ever due)."""
        if self._rate <= 0:
            return None
        self._offset_ns += self._rng.expovariate(self._rate) * 1e9
        return self._start_ns + round(self._offset_ns)

    def restart(self, rate: float, start_ns: int) -> None:
        """A new rate (or a resume) takes effect from ``start_ns``; the seeded gap sequence carries on."""
        self._rate = rate
        self._start_ns = start_ns
        self._offset_ns = 0.0

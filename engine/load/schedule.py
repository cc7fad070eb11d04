"""Load schedules: how a target splits across workers, and seeded Poisson arrivals on an absolute clock.

Open-loop arrivals follow ``due_k = start + sum(Exp(1/R))``: each gap is added to a running offset from a fixed
start, never to the time the previous request was actually sent. A slow server or a busy client therefore cannot
slow the sender down (no coordinated omission); a late send keeps its due time as ``t_scheduled_ns``, so its
queueing shows up in the latency figures instead of vanishing.

Several workers share ONE schedule: each draws the whole seeded sequence and sends every ``of``-th arrival from its
``slot`` on (arrival k goes to worker k mod of), so the aggregate is the schedule one machine would send, whatever
the number of workers or where they run (``--ray``). Each (re)start begins a new seeded epoch, identical in every
worker that receives the same commands, so the deal stays exact across rate changes and pauses.
"""

from __future__ import annotations

import random


def split_concurrency(total: int, workers: int) -> list[int]:
    """Shares that sum to ``total``, as even as possible (the first workers take the remainder)."""
    base, extra = divmod(max(0, total), workers)
    return [base + (1 if i < extra else 0) for i in range(workers)]


def split_rate(total: float, workers: int) -> list[float]:
    """Equal shares: each worker sends 1/W of the arrivals of the one schedule at R."""
    return [max(0.0, total) / workers] * workers


def worker_seed(seed: int, worker: int) -> int:
    """A distinct, reproducible arrival seed per worker."""
    return seed * 1_000_003 + worker * 7_919 + 1


class PoissonArrivals:
    """Due times (perf_counter_ns) of Poisson arrivals at ``rate`` per second, from ``start_ns`` on; with ``of`` > 1
    only the arrivals dealt to ``slot`` (the others are drawn and skipped, so every slot sees the same sequence)."""

    __slots__ = ("_epoch", "_index", "_of", "_offset_ns", "_rate", "_rng", "_seed", "_slot", "_start_ns")

    def __init__(self, rate: float, seed: int, start_ns: int, slot: int = 0, of: int = 1) -> None:
        self._seed = seed
        self._rng = random.Random(seed)
        self._epoch = 0
        self._rate = rate
        self._start_ns = start_ns
        self._offset_ns = 0.0
        self._index = 0  # arrivals drawn in this epoch (all slots')
        self._slot, self._of = slot, max(1, of)

    @property
    def rate(self) -> float:
        return self._rate

    def next_due_ns(self) -> int | None:
        """The next arrival's due time; None when the rate is zero (nothing is ever due)."""
        if self._rate <= 0:
            return None
        while True:
            self._offset_ns += self._rng.expovariate(self._rate) * 1e9
            mine = self._index % self._of == self._slot
            self._index += 1
            if mine:
                return self._start_ns + round(self._offset_ns)

    def restart(self, rate: float, start_ns: int, slot: int | None = None, of: int | None = None) -> None:
        """A new rate (or a resume, or a new deal) takes effect from ``start_ns`` with the next seeded epoch: every
        worker restarting on the same command draws the same new sequence."""
        # the first start keeps the plain seed (one worker sends what it always sent); later ones are new epochs
        self._rng = random.Random(self._seed if self._epoch == 0 else self._seed * 1_000_033 + self._epoch)
        self._epoch += 1
        self._rate = rate
        self._start_ns = start_ns
        self._offset_ns = 0.0
        self._index = 0
        if slot is not None:
            self._slot = slot
        if of is not None:
            self._of = max(1, of)

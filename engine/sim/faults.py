"""Seeded fault decisions, drawn once per request so the same seed and arrival order give the same faults."""

from __future__ import annotations

import random
from dataclasses import dataclass

from engine.sim.model import SimConfig

NONE = -1


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What goes wrong with one request. Positions count content chunks: "after the i-th chunk" (1-based)."""

    status: int | None = None  # 500 or 429, answered before any work
    reset_after: int = NONE  # abort the connection after this many content chunks
    malformed_after: int = NONE  # write one invalid-JSON chunk after this many content chunks
    stall_after: int = NONE  # hold output for stall_s after this many content chunks


NO_FAULTS = FaultPlan()


class FaultDice:
    """Draws every request's faults from one seeded generator, a fixed number of draws per request, so turning
    one fault on or off at runtime does not reshuffle the others."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed ^ 0xFA017)

    def draw(self, cfg: SimConfig, n_chunks: int) -> FaultPlan:
        r = self._rng.random
        u_err, u_429, u_reset, u_bad, u_stall, u_pos = r(), r(), r(), r(), r(), r()
        if u_429 < cfg.rate_429:
            return FaultPlan(status=429)
        if u_err < cfg.error_rate:
            return FaultPlan(status=500)
        if not (u_reset < cfg.reset_rate or u_bad < cfg.malformed_rate or u_stall < cfg.stall_rate):
            return NO_FAULTS
        # mid-stream: after at least one content chunk and, when there are several, before the last one
        pos = 1 + int(u_pos * max(1, n_chunks - 1))
        return FaultPlan(
            reset_after=pos if u_reset < cfg.reset_rate else NONE,
            malformed_after=pos if u_bad < cfg.malformed_rate else NONE,
            stall_after=pos if u_stall < cfg.stall_rate else NONE,
        )

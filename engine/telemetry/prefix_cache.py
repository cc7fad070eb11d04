"""The server's prefix-cache hit rate over a whole session (or a span), from its cumulative counters.

vLLM counts prompt tokens looked up in its prefix cache (``prefix_cache_queries``) and those found
(``prefix_cache_hits``); hits / queries over the run is the share of prompt tokens whose prefill the cache saved,
the figure that says whether a multi-turn workload's later turns really reuse the earlier ones. Each source's
increase is summed (replicas), a counter that drops is a restart (the new value counts whole). Engines that only
export a hit-rate gauge get the mean of that gauge instead, marked as such.

The first scrape is the baseline, so whatever the load did before it is not in the figure; ``figures`` is told
when the load began and says how late the baseline came (``baseline_late_s``) rather than hide it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict

from engine.telemetry.samples import ServerSample


class PrefixCacheFigures(BaseModel):
    """The prefix cache over a span: hit rate in percent, and the token counts it comes from."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hit_rate_pct: float | None
    queries: float | None = None
    """Prompt tokens looked up in the cache (summed over the sources); None from a gauge."""
    hits: float | None = None
    basis: Literal["counters", "gauge"] = "counters"
    baseline_late_s: float | None = None
    """Seconds from the first request to the first scrape (the baseline): the load before it is not counted."""

    def line(self) -> str:
        """'prefix cache 62.5% of 12.3k prompt tokens hit (server counters)'."""
        if self.hit_rate_pct is None:
            return "prefix cache n/a (no prompt tokens looked up)"
        late = ""
        if self.baseline_late_s is not None and self.baseline_late_s >= 0.05:
            late = f", from the first scrape {self.baseline_late_s:.2g} s into the load"
        if self.basis == "gauge" or self.queries is None:
            return f"prefix cache {self.hit_rate_pct:.1f}% hit (mean of the server's gauge{late})"
        return (f"prefix cache {self.hit_rate_pct:.1f}% of {_si(self.queries)} prompt tokens hit "
                f"(server counters{late})")


class PrefixCacheTally:
    """Fed server samples in time order; ``figures()`` is the hit rate since the first one (None without any)."""

    def __init__(self) -> None:
        self._last: dict[str, dict[str, float]] = {}  # per source: the latest prefix counters
        self._increase = {"prefix_queries": 0.0, "prefix_hits": 0.0}
        self._counted = False
        self._gauge_sum = 0.0
        self._gauge_n = 0
        self._first_ns: int | None = None  # the first successful scrape: the baseline

    def add(self, samples: Iterable[ServerSample]) -> None:
        for s in samples:
            if not s.ok:
                continue
            if self._first_ns is None:
                self._first_ns = s.t_ns
            if "prefix_hit_rate" in s.gauges:
                self._gauge_sum += s.gauges["prefix_hit_rate"]
                self._gauge_n += 1
            last = self._last.setdefault(s.source, {})
            for key in self._increase:
                value = s.counters.get(key)
                if value is None:
                    continue
                prev = last.get(key)
                if prev is not None:
                    self._increase[key] += value - prev if value >= prev else value
                    self._counted = self._counted or key == "prefix_queries"  # hits alone make no rate
                last[key] = value

    def figures(self, load_start_ns: int | None = None) -> PrefixCacheFigures | None:
        """The hit rate since the baseline; ``load_start_ns`` (the first request's send, same clock as the
        samples) lets it say how much of the load came before the baseline."""
        late = None
        if load_start_ns is not None and self._first_ns is not None:
            late = max(0.0, (self._first_ns - load_start_ns) / 1e9)
        if self._counted:
            queries, hits = self._increase["prefix_queries"], self._increase["prefix_hits"]
            rate = 100.0 * hits / queries if queries > 0 else None
            return PrefixCacheFigures(hit_rate_pct=rate, queries=queries, hits=hits, baseline_late_s=late)
        if self._gauge_n:
            return PrefixCacheFigures(hit_rate_pct=100.0 * self._gauge_sum / self._gauge_n, basis="gauge",
                                      baseline_late_s=late)  # fmt: skip
        return None


def _si(value: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.0f}"

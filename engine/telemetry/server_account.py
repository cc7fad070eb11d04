"""Server samples over time -> the ServerStats of one snapshot (live and replay alike: time is passed in).

Per source it keeps the samples of the last window plus the one just before it (the baseline), so an increase
over the window is measured from a real reading, and the rate divides by the time the readings really span.
Replicas are summed; histograms are merged bucket by bucket after each replica's own window delta.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from engine.snapshot import Percentiles, ServerEndpoint, ServerStats
from engine.telemetry.counters import Buckets, counter_increase, merge, quantile, series_increase
from engine.telemetry.samples import HISTOGRAMS, ServerSample

NS = 1_000_000_000
STALE_AFTER_S = 5.0
_SUMMED = ("running", "waiting", "gen_throughput")
_QUANTILES = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}


@dataclass
class _Source:
    history: deque[ServerSample] = field(default_factory=deque)  # successful samples, oldest first
    latest: ServerSample | None = None  # the latest result, successful or not


class ServerAccount:
    """Holds recent server samples per source; ``stats(now)`` summarises them."""

    def __init__(self, window_s: float = 10.0, stale_after_s: float = STALE_AFTER_S, t0_ns: int = 0) -> None:
        self._window_ns = round(window_s * NS)
        self._stale_ns = round(stale_after_s * NS)
        self._t0 = t0_ns
        self._sources: dict[str, _Source] = {}

    def add(self, samples: Iterable[ServerSample]) -> None:
        for s in samples:
            src = self._sources.setdefault(s.source, _Source())
            if src.latest is not None and s.t_ns < src.latest.t_ns:
                continue  # out of order: the series must move forward in time
            src.latest = s
            if s.ok:
                src.history.append(s)
                self._prune(src.history, s.t_ns)

    def _prune(self, history: deque[ServerSample], now_ns: int) -> None:
        """Keep the window and one baseline reading before it (bounded memory whatever the session length)."""
        start = now_ns - self._window_ns
        while len(history) >= 2 and history[1].t_ns <= start:
            history.popleft()

    def stats(self, now_ns: int, client_ttft: Percentiles | None = None) -> ServerStats:
        if not self._sources:
            return ServerStats(message="no server metrics yet")
        endpoints = tuple(self._endpoint(name, src, now_ns) for name, src in self._sources.items())
        fresh = [src for src, ep in zip(self._sources.values(), endpoints, strict=True) if ep.ok]
        if not fresh:
            first = next((ep for ep in endpoints if ep.message), None)
            return ServerStats(endpoints=endpoints, message=first.message if first else "no server figures")
        windows = [self._window(src, now_ns) for src in fresh]
        latest = [w[-1] for w in windows]
        stats: dict[str, object] = {
            "available": True,
            "engine": latest[0].engine,
            "endpoints": endpoints,
            "running": _sum(latest, "running"),
            "waiting": _sum(latest, "waiting"),
            "kv_usage_pct": _pct(_mean(latest, "kv_usage")),
            "prefix_hit_rate_pct": _pct(_hit_rate(windows, latest)),
            "preemptions": _increase(windows, "preemptions"),
            "prompt_tokens_per_s": _rate(windows, "prompt_tokens"),
            "generation_tokens_per_s": _rate(windows, "generation_tokens"),
        }
        for key in HISTOGRAMS:
            merged = merge(h for h in (series_increase([s.histograms[key] for s in w if key in s.histograms])
                                       for w in windows) if h is not None)  # fmt: skip
            stats[key] = _percentiles(merged)
        ttft = stats["ttft"]
        assert isinstance(ttft, Percentiles)
        if client_ttft is not None:
            stats["ttft_gap_p50_ms"] = _gap(client_ttft.p50, ttft.p50)
            stats["ttft_gap_p99_ms"] = _gap(client_ttft.p99, ttft.p99)
        return ServerStats.model_validate(stats)

    def _window(self, src: _Source, now_ns: int) -> list[ServerSample]:
        """The baseline reading plus every reading in (now - window, now]."""
        start = now_ns - self._window_ns
        out: list[ServerSample] = []
        for s in src.history:
            if s.t_ns > now_ns:
                break
            if s.t_ns <= start:
                out = [s]  # the latest reading at or before the window start is the baseline
            else:
                out.append(s)
        return out

    def _endpoint(self, name: str, src: _Source, now_ns: int) -> ServerEndpoint:
        latest = src.latest
        assert latest is not None
        last_ok = src.history[-1] if src.history else None
        engine = last_ok.engine if last_ok is not None else latest.engine
        families = last_ok.families if last_ok is not None else ()
        if last_ok is None:
            return ServerEndpoint(source=name, engine=engine, message=latest.error or "no answer yet")
        age_ns = now_ns - last_ok.t_ns
        stale_ns = max(self._stale_ns, round(3 * latest.interval_s * NS))  # three missed scrapes at the least
        if not latest.ok or age_ns > stale_ns:
            since = (last_ok.t_ns - self._t0) / NS
            why = latest.error or "no new scrape"
            return ServerEndpoint(source=name, engine=engine, message=f"stale since t={since:.0f}s: {why}",
                                  families=families)  # fmt: skip
        return ServerEndpoint(source=name, engine=engine, ok=True, message=last_ok.warning, families=families)


def _sum(samples: list[ServerSample], key: str) -> float | None:
    values = [s.gauges[key] for s in samples if key in s.gauges]
    return sum(values) if values else None


def _mean(samples: list[ServerSample], key: str) -> float | None:
    values = [s.gauges[key] for s in samples if key in s.gauges]
    return sum(values) / len(values) if values else None


def _pct(fraction: float | None) -> float | None:
    return None if fraction is None else 100.0 * fraction


def _increase(windows: list[list[ServerSample]], key: str) -> float | None:
    found = False
    total = 0.0
    for w in windows:
        values = [s.counters[key] for s in w if key in s.counters]
        if values:
            found = True
            total += counter_increase(values)
    return total if found else None


def _rate(windows: list[list[ServerSample]], key: str) -> float | None:
    """Sum across sources of each source's increase / the time its readings span; None under two readings."""
    rates = []
    for w in windows:
        points = [(s.t_ns, s.counters[key]) for s in w if key in s.counters]
        if len(points) >= 2 and points[-1][0] > points[0][0]:
            rates.append(counter_increase([v for _, v in points]) / ((points[-1][0] - points[0][0]) / NS))
    return sum(rates) if rates else None


def _hit_rate(windows: list[list[ServerSample]], latest: list[ServerSample]) -> float | None:
    """Prefix-cache hits / queries over the window from the counters; else the engine's own gauge."""
    queries = _increase(windows, "prefix_queries")
    hits = _increase(windows, "prefix_hits")
    if queries is not None and hits is not None:
        return hits / queries if queries > 0 else None
    return _mean(latest, "prefix_hit_rate")


def _percentiles(h: Buckets | None) -> Percentiles:
    if h is None or h.count <= 0:
        return Percentiles()
    values = {k: _ms(quantile(h, q)) for k, q in _QUANTILES.items()}
    return Percentiles(count=round(h.count), mean=h.total / h.count * 1000.0, **values)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def _gap(client_ms: float | None, server_ms: float | None) -> float | None:
    return None if client_ms is None or server_ms is None else client_ms - server_ms

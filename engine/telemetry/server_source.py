"""Server metrics for one session: which sources to scrape, and each scrape turned into a ServerSample.

``--server-metrics auto`` means ``/metrics`` on the endpoint's origin (where vLLM, SGLang, TGI and llama.cpp
serve it); URLs name replicas explicitly; ``--prometheus URL --server-query Q`` reads the same series through a
Prometheus server. The scraper runs on its own thread; ``on_samples`` receives each sample there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import httpx

from engine.telemetry.prom_query import SERVER_NAMES, PromQuery, widen
from engine.telemetry.samples import ServerSample
from engine.telemetry.scrape import DEFAULT_INTERVAL_S, MetricsEndpoint, Scraper, ScrapeResult, Source
from engine.telemetry.server_metrics import server_sample

ServerSampleCallback = Callable[[list[ServerSample]], None]


def origin_metrics_url(base_url: str) -> str:
    """``http://h:8000/v1`` -> ``http://h:8000/metrics`` (credentials kept for the request, never shown)."""
    url = httpx.URL(base_url)
    return str(url.copy_with(path="/metrics", query=None, fragment=None))


def server_sources(spec: str | None, base_url: str, *, prometheus: str | None = None,
                   query: str | None = None) -> list[Source]:  # fmt: skip
    """Sources from the command line: ``spec`` is "auto", "none" or comma-separated URLs."""
    sources: list[Source] = []
    if spec and spec.strip().lower() not in ("none", "off"):
        for item in (s.strip() for s in spec.split(",")):
            if not item:
                continue
            sources.append(MetricsEndpoint(origin_metrics_url(base_url) if item.lower() == "auto" else item))
    if prometheus and query:
        sources.append(PromQuery(prometheus, widen(query, SERVER_NAMES), label=f"prometheus: {query[:60]}"))
    return sources


def to_server_sample(result: ScrapeResult, interval_s: float = 0.0) -> ServerSample:
    if result.exposition is None:
        return ServerSample(result.t_ns, result.source, error=result.error or "no answer", interval_s=interval_s)
    return replace(server_sample(result.exposition, result.t_ns, result.source), interval_s=interval_s)


class ServerMetrics:
    """Scrapes the sources from ``start`` to ``close``; never raises into the session."""

    def __init__(self, sources: Sequence[Source], interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self.sources = tuple(sources)
        self.interval_s = interval_s
        self._scraper: Scraper | None = None

    def describe(self) -> str:
        n = len(self.sources)
        names = ", ".join(s.name for s in self.sources[:3]) + (", ..." if n > 3 else "")
        return f"server metrics: {names} every {self.interval_s:g} s"

    def start(self, on_samples: ServerSampleCallback) -> None:
        if self._scraper is not None or not self.sources:
            return
        interval = self.interval_s
        self._scraper = Scraper(self.sources, lambda r: on_samples([to_server_sample(r, interval)]), interval)
        self._scraper.start()

    def close(self) -> None:
        if self._scraper is not None:
            self._scraper.stop()
            self._scraper = None

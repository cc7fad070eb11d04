"""ServerSample: one scrape of one serving engine's metrics, normalised to engine-independent names.

Cumulative values (counters, histogram buckets) are kept as the server reported them, so live and replay compute
rates and windowed percentiles the same way from the same facts. Gauges are the values at scrape time. A sample
with ``error`` set says the scrape failed (and why, in one line); it carries no figures.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.telemetry.counters import Buckets

# Normalised names. Gauges: running, waiting (requests), kv_usage (0..1), prefix_hit_rate (0..1, engines that
# only publish a rate), gen_throughput (tokens/s as the engine computes it).
# Counters: prompt_tokens, generation_tokens, preemptions, prefix_queries, prefix_hits, requests.
# Histograms (seconds): ttft, itl, tpot, e2e, queue.
GAUGES = ("running", "waiting", "kv_usage", "prefix_hit_rate", "gen_throughput")
COUNTERS = ("prompt_tokens", "generation_tokens", "preemptions", "prefix_queries", "prefix_hits", "requests")
HISTOGRAMS = ("ttft", "itl", "tpot", "e2e", "queue")


@dataclass(frozen=True, slots=True)
class ServerSample:
    """One scrape of ``source`` (an endpoint URL without credentials, or "prometheus") at ``t_ns``."""

    t_ns: int  # perf_counter_ns when the answer arrived
    source: str
    engine: str = ""  # "vllm", "sglang", "tgi", "llamacpp", "unknown"; "" when the scrape failed
    gauges: Mapping[str, float] = field(default_factory=dict)
    counters: Mapping[str, float] = field(default_factory=dict)
    histograms: Mapping[str, Buckets] = field(default_factory=dict)
    families: tuple[str, ...] = ()  # unknown engine: the metric families found
    error: str = ""  # one line: why this scrape gave nothing
    warning: str = ""  # one line: a part of the scrape that was ignored (e.g. inconsistent buckets)
    interval_s: float = 0.0  # how often the source is scraped (0 = not said): when its figures count as stale

    @property
    def ok(self) -> bool:
        return not self.error

    def to_json(self) -> str:
        """The recording's payload (without t_ns and source, which have their own columns)."""
        body: dict[str, object] = {"engine": self.engine}
        if self.gauges:
            body["g"] = dict(self.gauges)
        if self.counters:
            body["c"] = dict(self.counters)
        if self.histograms:
            body["h"] = {k: v.to_json() for k, v in self.histograms.items()}
        if self.families:
            body["families"] = list(self.families)
        if self.error:
            body["error"] = self.error
        if self.warning:
            body["warning"] = self.warning
        if self.interval_s:
            body["i"] = self.interval_s
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, t_ns: int, source: str, payload: str) -> ServerSample:
        body = json.loads(payload)
        return cls(
            t_ns=t_ns,
            source=source,
            engine=str(body.get("engine", "")),
            gauges={str(k): float(v) for k, v in body.get("g", {}).items()},
            counters={str(k): float(v) for k, v in body.get("c", {}).items()},
            histograms={str(k): Buckets.from_json(v) for k, v in body.get("h", {}).items()},
            families=tuple(str(f) for f in body.get("families", ())),
            error=str(body.get("error", "")),
            warning=str(body.get("warning", "")),
            interval_s=float(body.get("i", 0.0)),
        )

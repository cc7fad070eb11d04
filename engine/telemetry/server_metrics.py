"""Which serving engine published these metrics, and its figures under engine-independent names.

Recognised by metric-name prefix: ``vllm:``, ``sglang:``, ``tgi_``, ``llamacpp:``. Each engine maps its own
names (and the older names still in the field) onto the ``ServerSample`` vocabulary; several label sets of one
series (several models, several engine cores) are summed, fractions averaged. An engine nobody recognises gives
a sample that lists the families it found, so the panel can show what is there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.telemetry.counters import BucketError, Buckets, merge, read_histograms
from engine.telemetry.exposition import Exposition
from engine.telemetry.samples import ServerSample


@dataclass(frozen=True, slots=True)
class EngineNames:
    """Where one engine keeps each normalised figure; the first name present wins (newest names first)."""

    engine: str
    prefix: str
    gauges: dict[str, tuple[str, ...]] = field(default_factory=dict)
    counters: dict[str, tuple[str, ...]] = field(default_factory=dict)
    histograms: dict[str, tuple[str, ...]] = field(default_factory=dict)


FRACTIONS = frozenset({"kv_usage", "prefix_hit_rate"})  # averaged across label sets, not summed
MAX_GAUGE = 1e9  # requests, tokens/s: anything larger is not a figure but a broken exporter

ENGINES: tuple[EngineNames, ...] = (
    EngineNames(
        "vllm",
        "vllm:",
        gauges={
            "running": ("vllm:num_requests_running",),
            "waiting": ("vllm:num_requests_waiting",),
            "kv_usage": ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"),
            "prefix_hit_rate": ("vllm:gpu_prefix_cache_hit_rate",),
        },
        counters={
            "prompt_tokens": ("vllm:prompt_tokens_total",),
            "generation_tokens": ("vllm:generation_tokens_total",),
            "preemptions": ("vllm:num_preemptions_total",),
            "prefix_queries": ("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total"),
            "prefix_hits": ("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"),
            "requests": ("vllm:request_success_total",),
        },
        histograms={
            "ttft": ("vllm:time_to_first_token_seconds",),
            "itl": ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
            "tpot": ("vllm:request_time_per_output_token_seconds",),
            "e2e": ("vllm:e2e_request_latency_seconds",),
            "queue": ("vllm:request_queue_time_seconds",),
        },
    ),
    EngineNames(
        "sglang",
        "sglang:",
        gauges={
            "running": ("sglang:num_running_reqs",),
            "waiting": ("sglang:num_queue_reqs",),
            "kv_usage": ("sglang:token_usage",),
            "prefix_hit_rate": ("sglang:cache_hit_rate",),
            "gen_throughput": ("sglang:gen_throughput",),
        },
        counters={
            "prompt_tokens": ("sglang:prompt_tokens_total",),
            "generation_tokens": ("sglang:generation_tokens_total",),
            "prefix_hits": ("sglang:cached_tokens_total",),
            "requests": ("sglang:num_requests_total",),
        },
        histograms={
            "ttft": ("sglang:time_to_first_token_seconds",),
            "itl": ("sglang:inter_token_latency_seconds", "sglang:time_per_output_token_seconds"),
            "e2e": ("sglang:e2e_request_latency_seconds",),
            "queue": ("sglang:queue_time_seconds",),
        },
    ),
    EngineNames(
        "tgi",
        "tgi_",
        gauges={"running": ("tgi_batch_current_size",), "waiting": ("tgi_queue_size",)},
        # TGI has no token counters; its per-request token histograms' _sum series are the cumulative totals
        counters={
            "generation_tokens": ("tgi_request_generated_tokens_sum",),
            "prompt_tokens": ("tgi_request_input_length_sum",),
            "requests": ("tgi_request_success_total", "tgi_request_success"),
        },
        histograms={
            "queue": ("tgi_request_queue_duration",),
            "tpot": ("tgi_request_mean_time_per_token_duration",),
            "e2e": ("tgi_request_duration",),
        },
    ),
    EngineNames(
        "llamacpp",
        "llamacpp:",
        gauges={
            "running": ("llamacpp:requests_processing",),
            "waiting": ("llamacpp:requests_deferred",),
            "kv_usage": ("llamacpp:kv_cache_usage_ratio",),
        },
        counters={
            "generation_tokens": ("llamacpp:tokens_predicted_total",),
            "prompt_tokens": ("llamacpp:prompt_tokens_total",),
        },
    ),
)


def recognise(expo: Exposition) -> EngineNames | None:
    """The engine whose prefix most sample names carry; None when no known prefix is there."""
    best, best_n = None, 0
    for names in ENGINES:
        n = sum(1 for s in expo.samples if s.startswith(names.prefix))
        if n > best_n:
            best, best_n = names, n
    return best


def server_sample(expo: Exposition, t_ns: int, source: str) -> ServerSample:
    """Normalise one scrape; inconsistent histograms are left out with a one-line warning."""
    names = recognise(expo)
    if names is None:
        return ServerSample(t_ns, source, engine="unknown", families=expo.family_names())
    gauges: dict[str, float] = {}
    warnings: list[str] = []
    for key, candidates in names.gauges.items():
        values = _first(expo, candidates)
        top = 1.0 if key in FRACTIONS else MAX_GAUGE
        believable = [v for v in values if 0.0 <= v <= top]
        if len(believable) < len(values):
            warnings.append(f"{candidates[0]}: ignored values outside 0..{top:g}")
        if believable:
            gauges[key] = sum(believable) / len(believable) if key in FRACTIONS else sum(believable)
    counters: dict[str, float] = {}
    for key, candidates in names.counters.items():
        values = _first(expo, candidates)
        if values:
            counters[key] = sum(max(0.0, v) for v in values)
    histograms: dict[str, Buckets] = {}
    for key, candidates in names.histograms.items():
        for name in candidates:
            if not expo.has(f"{name}_bucket"):
                continue
            try:
                merged = merge(read_histograms(expo, name))
            except BucketError as exc:
                warnings.append(str(exc))
            else:
                if merged is not None:
                    histograms[key] = merged
            break
    return ServerSample(t_ns, source, names.engine, gauges, counters, histograms, warning="; ".join(warnings))


def _first(expo: Exposition, candidates: tuple[str, ...]) -> list[float]:
    for name in candidates:
        values = expo.values(name)
        if values:
            return [v for _, v in values]
    return []

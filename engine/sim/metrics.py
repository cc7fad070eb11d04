"""The simulator's Prometheus endpoints: ``/metrics`` in vLLM's names and ``/sim/dcgm/metrics`` in DCGM's.

Latency histograms use vLLM's own bucket bounds and are observed on the engine's step clock (one clock read per
step, a bisect per token), so the sim's chunk rate hardly moves. ``/metrics`` is rendered by prometheus_client's
exposition code from a collector over the live state; the DCGM body is written the way dcgm-exporter writes it
(counters without ``_total``, the same labels), so wattload's DCGM path is exercised as against the real one.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from engine.sim.gpu import SimGpu
    from engine.sim.scheduler import Scheduler

# vLLM's bucket bounds (vllm/v1/metrics/loggers.py)
TTFT_BOUNDS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
               40.0, 80.0, 160.0, 640.0, 2560.0)  # fmt: skip
ITL_BOUNDS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
              80.0)  # fmt: skip
REQUEST_BOUNDS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
                  480.0, 960.0, 1920.0, 7680.0)  # fmt: skip
SIM_HOSTNAME = "wattload-sim"


class SimHistogram:
    """Per-bucket counts (not cumulative) and a sum; ``observe`` is a bisect and two additions."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(running)))
        return out


class SimServerMetrics:
    """What the scheduler observes for ``/metrics``."""

    def __init__(self) -> None:
        self.ttft = SimHistogram(TTFT_BOUNDS)
        self.itl = SimHistogram(ITL_BOUNDS)
        self.e2e = SimHistogram(REQUEST_BOUNDS)
        self.queue = SimHistogram(REQUEST_BOUNDS)
        self.preemptions = 0  # KV is reserved at admission, so the sim never preempts


class _VllmCollector(Collector):
    def __init__(self, scheduler: Scheduler, model: str, extra: Callable[[], list[tuple[str, str, float]]]) -> None:
        self.scheduler = scheduler
        self.model = model
        self.extra = extra

    def collect(self) -> Iterator[Metric]:
        sch, m, model = self.scheduler, self.scheduler.metrics, [self.model]
        cfg = sch.cfg

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            g = GaugeMetricFamily(name, doc, labels=["model_name"])
            g.add_metric(model, value)
            return g

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            c = CounterMetricFamily(name, doc, labels=["model_name"])
            c.add_metric(model, value)
            return c

        def histogram(name: str, doc: str, h: SimHistogram) -> HistogramMetricFamily:
            f = HistogramMetricFamily(name, doc, labels=["model_name"])
            f.add_metric(model, h.cumulative(), h.total)
            return f

        yield gauge("vllm:num_requests_running", "Requests in the running batch.", sch.num_running)
        yield gauge("vllm:num_requests_waiting", "Requests waiting to be scheduled.", len(sch.waiting))
        yield gauge("vllm:kv_cache_usage_perc", "KV-cache usage (1 = full).", sch.kv_used / cfg.kv_capacity_tokens)
        cache = sch.prefix_cache
        yield counter("vllm:prefix_cache_queries", "Prompt tokens looked up in the prefix cache.", cache.queries_tokens)
        yield counter("vllm:prefix_cache_hits", "Prompt tokens found in the prefix cache.", cache.hits_tokens)
        yield counter("vllm:num_preemptions", "Preempted requests.", m.preemptions)
        yield counter("vllm:prompt_tokens", "Prefill tokens processed.", sch.prompt_tokens_total)
        yield counter("vllm:generation_tokens", "Generation tokens produced.", sch.generation_tokens_total)
        yield counter("vllm:request_success", "Requests finished.", sch.finished_total)
        yield histogram("vllm:time_to_first_token_seconds", "Arrival to first token.", m.ttft)
        yield histogram("vllm:inter_token_latency_seconds", "Between tokens of a request.", m.itl)
        yield histogram("vllm:e2e_request_latency_seconds", "Arrival to last token.", m.e2e)
        yield histogram("vllm:request_queue_time_seconds", "Arrival to admission.", m.queue)
        for name, kind, value in self.extra():
            family = GaugeMetricFamily(name, name) if kind == "gauge" else CounterMetricFamily(name, name)
            family.add_metric([], value)
            yield family


def vllm_exposition(scheduler: Scheduler, model: str, extra: Callable[[], list[tuple[str, str, float]]]) -> bytes:
    """The ``/metrics`` body (text format 0.0.4), vLLM names plus the sim's own ``sim:`` figures."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_VllmCollector(scheduler, model, extra))
    return generate_latest(registry)


_DCGM_FIELDS = (
    # (name, type, help, reading key)
    ("DCGM_FI_DEV_SM_CLOCK", "gauge", "SM clock frequency (in MHz).", "sm_clock_mhz"),
    ("DCGM_FI_DEV_MEM_CLOCK", "gauge", "Memory clock frequency (in MHz).", "mem_clock_mhz"),
    ("DCGM_FI_DEV_GPU_TEMP", "gauge", "GPU temperature (in C).", "temperature_c"),
    ("DCGM_FI_DEV_POWER_USAGE", "gauge", "Power draw (in W).", "power_w"),
    ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter", "Total energy consumption since boot (in mJ).", "energy_mj"),
    ("DCGM_FI_DEV_GPU_UTIL", "gauge", "GPU utilization (in %).", "util_gpu_pct"),
    ("DCGM_FI_DEV_MEM_COPY_UTIL", "gauge", "Memory utilization (in %).", "util_mem_pct"),
    ("DCGM_FI_DEV_FB_USED", "gauge", "Framebuffer memory used (in MiB).", "mem_used_mib"),
    ("DCGM_FI_DEV_FB_FREE", "gauge", "Framebuffer memory free (in MiB).", "fb_free_mib"),
    ("DCGM_FI_DEV_POWER_MGMT_LIMIT", "gauge", "Power management limit (in W).", "power_limit_w"),
)


def dcgm_exposition(gpu: SimGpu, hostname: str = SIM_HOSTNAME) -> bytes:
    """The simulated GPU as dcgm-exporter shows it (one GPU, index 0)."""
    reading = gpu.reading()
    used, total = reading.get("mem_used_mib"), reading.get("mem_total_mib")
    if isinstance(used, int) and isinstance(total, int):
        reading["fb_free_mib"] = total - used
    name = str(reading.get("name", "")).replace('"', "")
    labels = f'gpu="0",UUID="{gpu.UUID}",pci_bus_id="00000000:00:00.0",device="nvidia0",modelName="{name}",' \
             f'Hostname="{hostname}"'  # fmt: skip
    lines: list[str] = []
    for field, kind, doc, key in _DCGM_FIELDS:
        value = reading.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        lines += [f"# HELP {field} {doc}", f"# TYPE {field} {kind}", f"{field}{{{labels}}} {value}"]
    return ("\n".join(lines) + "\n").encode()

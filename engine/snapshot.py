"""The one immutable snapshot that crosses from the engine to whatever shows or stores it.

Live runs and replays both produce it through the same aggregator, so a panel cannot tell which source feeds
it. Latencies are milliseconds, rates per second, energy joules, power watts; ``None`` means "not known"
(shown as n/a or a dash), never zero.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class LoadMode(StrEnum):
    CONCURRENCY = "concurrency"  # closed loop: N requests in flight
    RATE = "rate"  # open loop: Poisson arrivals at R req/s


class RunState(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"  # a worker died; the UI offers to quit


class Percentiles(Frozen):
    """Distribution summary in milliseconds, from a merged log histogram (<= 1% relative error)."""

    count: int = 0
    p50: float | None = None
    p90: float | None = None
    p95: float | None = None
    p99: float | None = None
    mean: float | None = None
    max: float | None = None


class WindowStats(Frozen):
    """Figures over one span: the sliding window (last N seconds) or the whole session since start."""

    span_s: float = 0.0  # seconds actually covered (shorter than the window at the start of a run)
    # session seconds where the span ends: the sliding window ends at the workers' reports (the edge, a tenth of a
    # second or so before t_s, so no worker's newest facts are missing from it); since start ends at t_s
    end_s: float = 0.0
    requests: int = 0  # completed successfully
    errors: int = 0
    errors_by_class: dict[str, int] = Field(default_factory=dict)  # ErrorClass value -> count
    error_rate: float = 0.0  # errors / (requests + errors)
    requests_per_s: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    input_tokens_per_s: float = 0.0
    output_tokens_per_s: float = 0.0
    ttft: Percentiles = Percentiles()  # to the first chunk of any content, reasoning included
    ttfo: Percentiles = Percentiles()  # time to first output token: the answer's first chunk, after reasoning
    itl: Percentiles = Percentiles()  # gaps between content chunks
    tpot: Percentiles = Percentiles()  # per request: (end - first token) / (output tokens - 1)
    e2e: Percentiles = Percentiles()


class ClientHealth(Frozen):
    """Is the load generator itself the bottleneck? Figures from the workers' event loops."""

    loop_lag_ms: float = 0.0  # worst event-loop lag over the last tick, across workers
    schedule_lag_ms: float = 0.0  # rate mode: p99 of (actual send - scheduled send) over the window
    saturated: bool = False  # results are suspect: the client, not the server, limited them
    reason: str = ""


class GpuReading(Frozen):
    """One GPU at snapshot time. None = n/a on this GPU."""

    index: int
    name: str = ""
    watts: float | None = None  # d(energy)/dt over the last second (counter), else the power reading
    watts_instant: float | None = None
    power_limit_w: float | None = None
    enforced_limit_w: float | None = None
    min_limit_w: float | None = None
    max_limit_w: float | None = None
    default_limit_w: float | None = None
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None
    temperature_c: int | None = None
    util_gpu_pct: int | None = None
    mem_used_mib: int | None = None
    mem_total_mib: int | None = None
    power_cap_binding: bool | None = None


class EnergyStats(Frozen):
    """Energy and energy per token over one span, with how it was measured."""

    energy_j: float | None = None
    mean_watts: float | None = None
    joules_per_output_token: float | None = None
    kwh_per_million_output_tokens: float | None = None
    kwh_per_million_total_tokens: float | None = None
    steady: bool = False  # False during warm-up after a load or cap change


class GpuStats(Frozen):
    """GPU telemetry for the selected GPUs, totals across them plus each one."""

    available: bool = False
    message: str = ""  # e.g. "no GPU telemetry: NVML library not found"
    source: str = ""  # "nvml", "sim", "fake"
    energy_source: str = "counter"  # "counter" or "integrated" (marked in the UI)
    watts: float | None = None  # total across selected GPUs
    power_limit_w: float | None = None  # total of current limits
    gpus: tuple[GpuReading, ...] = ()
    window: EnergyStats = EnergyStats()
    total: EnergyStats = EnergyStats()
    stale_s: float | None = None  # remote telemetry that stopped answering: seconds since its last answer
    stale_reason: str = ""  # and why, one line ("http://node-1:9400/metrics: connection refused")


class ServerEndpoint(Frozen):
    """One scraped server-metrics source: is it answering, and if not since when and why."""

    source: str  # URL without credentials, or the Prometheus query
    engine: str = ""  # "vllm", "sglang", "tgi", "llamacpp", "unknown"
    ok: bool = False  # the latest scrape gave figures and is fresh
    message: str = ""  # one line: "stale since 12 s: timed out after 1 s", "HTTP 404", a warning
    families: tuple[str, ...] = ()  # unknown engine: the metric families it publishes


class ServerStats(Frozen):
    """The serving engine's own figures from its Prometheus metrics, summed across the scraped replicas.

    Gauges are the latest values; rates and percentiles cover the snapshot's window (counter increases with
    resets handled; percentiles from the merged histogram deltas). None = the engine does not publish it."""

    available: bool = False
    message: str = ""  # "no server metrics", or a one-line problem with every source
    engine: str = ""  # the engine recognised (the first fresh source's)
    endpoints: tuple[ServerEndpoint, ...] = ()
    running: float | None = None
    waiting: float | None = None
    kv_usage_pct: float | None = None
    prefix_hit_rate_pct: float | None = None  # hits / queries over the window (or the engine's own rate)
    preemptions: float | None = None  # in the window
    prompt_tokens_per_s: float | None = None
    generation_tokens_per_s: float | None = None
    ttft: Percentiles = Percentiles()  # server-side, from its histogram deltas over the window
    itl: Percentiles = Percentiles()
    tpot: Percentiles = Percentiles()
    e2e: Percentiles = Percentiles()
    queue: Percentiles = Percentiles()
    ttft_gap_p50_ms: float | None = None  # client TTFT p50 - server TTFT p50: network + client-side queueing
    ttft_gap_p99_ms: float | None = None


class CostStats(Frozen):
    """Running cost from the pricing profile and measured energy; None until there are tokens."""

    profile: str = ""
    dollars_per_hour: float | None = None
    window_per_million_output: float | None = None
    window_per_million_total: float | None = None
    total_per_million_output: float | None = None
    total_per_million_total: float | None = None
    total_dollars: float | None = None


class WorkerView(Frozen):
    """One load worker of a distributed run (``--ray``) as it is doing now: lags and record rate over the pool's
    last few seconds (the JSON report's ``workers`` keeps the whole run's worst and average)."""

    worker: int
    host: str = ""
    node: str = ""  # the Ray node id, shortened
    state: str = "starting"  # "starting", "running", "done" or "lost"
    clock_offset_ms: float | None = None  # None: not measured yet
    clock_uncertainty_ms: float | None = None  # half the best ping round trip; 0 on the controller's own host
    loop_lag_ms: float = 0.0  # worst event-loop lag it reported lately
    send_lag_ms: float | None = None  # worst delay lately from a batch's stamp to the controller (None: no batch yet)
    records_per_s: float = 0.0
    in_flight: int = 0
    lost_requests: int = 0  # its in-flight requests when it was lost, counted as worker_lost


class WorkersStats(Frozen):
    """The distributed run's workers at a glance (worst of each figure), and each one. Only with ``--ray``."""

    count: int = 0
    nodes: int = 0  # distinct nodes (hosts where the node id is not known) the workers run on
    running: int = 0
    lost: int = 0
    lost_requests: int = 0
    loop_lag_ms: float = 0.0  # the worst worker's
    loop_lag_high: bool = False  # over the client saturation limit: some worker stamps chunks late
    send_lag_ms: float | None = None
    send_lag_high: bool = False  # some worker's batches reach the controller late enough to enter the window late
    clock_uncertainty_ms: float | None = None  # the widest; None until every clock is measured
    workers: tuple[WorkerView, ...] = ()


class EventView(Frozen):
    """A control or error event as shown in the event log (seconds from session start)."""

    t_s: float
    kind: str
    message: str


class Snapshot(Frozen):
    """Everything a panel shows at one tick. Produced only by the aggregator."""

    seq: int = 0
    t_s: float = 0.0  # seconds since session start (live: perf_counter; replay: recording clock)
    endpoint: str = ""
    model: str = ""
    workload: str = ""
    source: str = "live"  # "live" or "replay"
    state: RunState = RunState.STARTING
    mode: LoadMode = LoadMode.CONCURRENCY
    target_concurrency: int = 0
    target_rate: float = 0.0
    trace: bool = False  # a trace replays on its own clock: ``target_rate`` is its speed (×1 = as recorded)
    in_flight: int = 0
    waiting_first_token: int = 0  # requests sent that have no first token yet (queued or prefilling on the server)
    oldest_wait_s: float | None = None  # how long the oldest of them has waited, from its scheduled time
    window_s: float = 10.0
    window: WindowStats = WindowStats()
    total: WindowStats = WindowStats()
    reasoning: bool = False  # some stream carried reasoning content before its answer: TTFO differs from TTFT
    tokens_estimated: bool = False  # some output counts came from chunk counting, not the server's usage
    input_tokens_unknown: bool = False  # some successful request came without prompt usage: input figures undercount
    usage_rejected: int = 0  # requests whose usage was not believed (negative, absurd, disagreeing with the stream)
    usage_rejected_reason: str = ""  # the first such reason, one line
    retry_after: int = 0  # 429 answers that carried a Retry-After (closed-loop workers waited it out)
    steady: bool = False  # no load or power-cap change inside the window (False during warm-up after one)
    client: ClientHealth = ClientHealth()
    gpu: GpuStats = GpuStats()
    cost: CostStats = CostStats()
    server: ServerStats = ServerStats()
    workers: WorkersStats | None = None  # --ray only: per-worker health (None for local worker processes, replay)
    recording: str | None = None  # path of the active recording, if any
    new_events: tuple[EventView, ...] = ()  # events since the previous snapshot
    message: str = ""  # a one-line status for the header (e.g. why the engine failed)

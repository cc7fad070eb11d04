"""The facts the engine produces: one request, one stream-progress tick, one telemetry sample, one event.

These are frozen, slotted dataclasses rather than pydantic models on purpose: they are created on the hot
path (thousands per second, pickled between processes), where pydantic's validation would cost more than the
measurement it carries. They never cross a file or user boundary as-is; the recorder and reports convert them
into pydantic rows. All ``*_ns`` stamps are ``time.perf_counter_ns()`` values (CLOCK_MONOTONIC, shared by all
processes on one machine), never wall time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ErrorClass(StrEnum):
    """Why a request failed; every failure is counted under exactly one class."""

    CONNECT = "connect"  # could not open the connection (refused, DNS, TLS)
    TIMEOUT = "timeout"  # no bytes within the read timeout, or total time exceeded
    HTTP_429 = "http_429"  # rate limited by the server
    HTTP_4XX = "http_4xx"  # other client errors (400, 401, 404, 422, ...)
    HTTP_5XX = "http_5xx"  # server errors
    STREAM_BROKEN = "stream_broken"  # connection reset or closed before [DONE] / finish
    MALFORMED = "malformed"  # a chunk that is not valid SSE/JSON or not the OpenAI shape


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One finished request (successful or not), as measured where its bytes arrived.

    ``token_times_ns`` holds the arrival stamp of every chunk that carried content (the first one included),
    so ITL and timing-accuracy figures can be computed; it may be empty for replayed requests recorded without
    ``--record-tokens``.
    """

    worker: int
    request_id: int  # unique within its worker
    t_scheduled_ns: int  # when the request was due (rate mode: the Poisson schedule; else == t_start_ns)
    t_start_ns: int  # just before the request was written
    t_headers_ns: int | None  # response status line and headers received
    t_first_token_ns: int | None  # first chunk with non-empty content or reasoning content
    t_end_ns: int  # stream finished (or failed)
    input_tokens: int | None  # usage.prompt_tokens; None when the server sent no usage
    output_tokens: int  # usage.completion_tokens, or the number of content chunks when no usage came
    output_estimated: bool  # True when output_tokens was counted from chunks, not reported by the server
    chunks: int  # content chunks received
    status: int | None = None  # HTTP status (None when no response)
    error: ErrorClass | None = None
    error_detail: str = ""  # one line, never containing request headers or keys
    response_id: str | None = None  # the server's completion id, to join with simulator ground truth
    token_times_ns: tuple[int, ...] = field(default=(), repr=False)
    usage_rejected: str = ""  # why the server's usage was not believed (counts then come from chunks, estimated)
    retry_after_s: float | None = None  # a 429's Retry-After, bounded (closed-loop workers wait that long)
    turn: int = 0  # 1-based turn of a multi-turn session (or session trace); 0 for single requests
    # First chunk of the answer itself, after any reasoning content (== t_first_token_ns when the stream carried
    # no reasoning; None when no answer content came, e.g. max_tokens ran out while reasoning).
    t_first_output_ns: int | None = None
    reasoning_chunks: int = 0  # chunks that carried reasoning content (included in ``chunks``)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def ttft_ns(self) -> int | None:
        """Time to first token, counted from the scheduled time (so client queueing is not hidden)."""
        if self.t_first_token_ns is None:
            return None
        return self.t_first_token_ns - self.t_scheduled_ns

    @property
    def ttfo_ns(self) -> int | None:
        """Time to first output token: the answer's first chunk after reasoning (AIPerf's and GuideLLM's TTFO)."""
        if self.t_first_output_ns is None:
            return None
        return self.t_first_output_ns - self.t_scheduled_ns

    @property
    def e2e_ns(self) -> int:
        return self.t_end_ns - self.t_scheduled_ns

    @property
    def tpot_ns(self) -> float | None:
        """Time per output token after the first: (end - first token) / (output tokens - 1)."""
        if self.t_first_token_ns is None or self.output_tokens < 2:
            return None
        return (self.t_end_ns - self.t_first_token_ns) / (self.output_tokens - 1)


@dataclass(frozen=True, slots=True)
class IntervalCounts:
    """Inter-token gaps in the compact form a progress tick carries: their log-histogram buckets (the buckets of
    ``engine.metrics.histogram``) with counts, and the exact sum, smallest and largest in ns. A tick ships every
    gap that arrived in it whatever the token rate, in a few dozen numbers; live and replay merge the same ones."""

    buckets: tuple[int, ...]
    counts: tuple[int, ...]
    sum_ns: int
    min_ns: int
    max_ns: int

    @property
    def count(self) -> int:
        return sum(self.counts)


@dataclass(frozen=True, slots=True)
class StreamProgress:
    """Content chunks that arrived in one worker since its previous report, up to ``t_ns``; makes live tok/s
    responsive.

    A request's final usage may differ from its chunk count (servers may pack several tokens into one chunk);
    the aggregator adds that difference when the request completes, so totals always equal the server's usage.
    """

    worker: int
    t_ns: int
    chunks: int
    in_flight: int  # requests open in this worker at t_ns
    loop_lag_ms: float  # worst event-loop lag seen by this worker since its last report
    # First tokens of open requests since the previous tick, as (request id, first-token stamp, scheduled stamp):
    # TTFT enters the window when the first token arrived, not when its (maybe minute-long) request ends.
    first_tokens: tuple[tuple[int, int, int], ...] = ()
    waiting: int = 0  # requests sent that have no first token yet at t_ns (queued on the server, or prefilling)
    waiting_since_ns: int | None = None  # scheduled stamp of the oldest of them; None when none waits
    # First answer tokens (after any reasoning) since the previous tick, shaped like ``first_tokens``: TTFO.
    first_outputs: tuple[tuple[int, int, int], ...] = ()
    # Inter-token gaps that arrived since the previous tick (of open streams and of streams that ended in it), so
    # ITL enters the window while a long answer streams. None: the producer does not ship them (recordings of
    # schema < 3), and ITL then comes from the records' token stamps at their end.
    itl: IntervalCounts | None = None
    # The worker's last report: it said goodbye, or (``--ray``) the controller wrote it for a lost worker. The
    # live window's edge stops waiting for a worker at its final report (engine/metrics/edge.py).
    final: bool = False


@dataclass(frozen=True, slots=True)
class TelemetrySample:
    """One reading of one GPU. ``None`` means the GPU or driver does not support that field (shown as n/a)."""

    t_ns: int
    gpu_index: int
    power_w: float | None = None  # nvmlDeviceGetPowerUsage (a 1 s average on Hopper)
    power_instant_w: float | None = None  # NVML_FI_DEV_POWER_INSTANT where supported
    energy_mj: int | None = None  # nvmlDeviceGetTotalEnergyConsumption, monotonic mJ counter
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None
    temperature_c: int | None = None
    util_gpu_pct: int | None = None
    util_mem_pct: int | None = None
    mem_used_mib: int | None = None
    mem_total_mib: int | None = None
    power_limit_w: float | None = None  # current (requested) limit
    enforced_limit_w: float | None = None
    default_limit_w: float | None = None
    min_limit_w: float | None = None
    max_limit_w: float | None = None
    throttle_reasons: int | None = None  # clock-event reasons bitmask
    power_cap_binding: bool | None = None  # SW power cap bit set


class EventKind(StrEnum):
    CONCURRENCY = "concurrency"
    RATE = "rate"
    PAUSE = "pause"
    RESUME = "resume"
    POWER_CAP = "power_cap"
    RECORD_START = "record_start"
    RECORD_STOP = "record_stop"
    ANNOTATION = "annotation"
    ERROR = "error"  # a (rate-limited) error reason worth showing in the event log
    WARNING = "warning"  # e.g. recording stopped because the disk is full
    START = "start"
    STOP = "stop"


@dataclass(frozen=True, slots=True)
class ControlEvent:
    """Something the operator or the engine did that splits a session into phases or explains a figure."""

    t_ns: int
    kind: EventKind
    value: float | None = None  # new concurrency / rate / cap in watts
    gpu_index: int | None = None  # for power-cap events; None = all selected GPUs
    readback: float | None = None  # enforced value read back after a change (power caps)
    message: str = ""


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """One request's content (what a workload factory makes and the client sends): the API-specific body fields
    plus the lengths it aims for.

    ``fields`` holds ``messages`` (chat) or ``prompt`` (completions) and any extra body fields a profile wants;
    the client adds model, stream, stream_options, max_tokens (and ignore_eos/min_tokens when asked).
    """

    fields: Mapping[str, Any]
    max_tokens: int
    input_tokens: int  # the target; the server's usage says what it really was
    extra: Mapping[str, Any] = field(default_factory=dict)  # free for profiles (e.g. a dataset line's id)

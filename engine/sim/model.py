"""What the simulated server models, as settings plus the pure cost formulas that turn a batch into time and watts.

Everything here is deterministic arithmetic with no I/O, so the scheduler, the GPU, the docs and the tests all
compute the same numbers (e.g. the capacity knee a sweep should find, or the J/token a demo should show).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

# Fields that POST /sim/config may change while the server runs (faults and per-request behaviour only: changing
# timing or capacity mid-run would invalidate the schedule of requests already admitted).
RUNTIME_FIELDS: frozenset[str] = frozenset(
    {
        "error_rate",
        "rate_429",
        "retry_after_s",
        "reset_rate",
        "malformed_rate",
        "stall_rate",
        "stall_s",
        "no_usage",
        "usage",
        "strict_fields",
        "early_eos_prob",
        "tokens_per_chunk",
        "reasoning_tokens",
    }
)

_Rate = Field(default=0.0, ge=0.0, le=1.0)


class SimConfig(BaseModel):
    """Settings of the simulated vLLM-like server (an 8B model on one H100 by default)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    model: str = "sim-llama-3.1-8b"
    """The one model name served; requests naming another get 404."""
    seed: int = 0
    """Seeds every random choice (faults, early EOS, output text, ids): the same seed gives the same run."""
    speed: float = Field(default=1.0, gt=0.0, le=1e6)
    """Time scale: 2.0 runs every simulated duration twice as fast. Watts stay watts, so J/token shrinks by the
    same factor: use 1.0 when energy figures should be plausible."""

    # -- engine timing -------------------------------------------------------------------------------------------
    prefill_tokens_per_s: float = Field(default=20_000.0, gt=0.0)
    """Prompt processing throughput (compute-bound)."""
    decode_base_ms: float = Field(default=7.0, ge=0.0)
    """Fixed part of a decode step (weights streamed once per step, kernel launches)."""
    decode_per_seq_ms: float = Field(default=0.18, ge=0.0)
    """Added to a decode step per running sequence: step = base + per_seq * batch."""
    max_batch: int = Field(default=256, ge=1)
    """Most sequences in one step (vLLM's max_num_seqs)."""
    max_batched_tokens: int = Field(default=8192, ge=1)
    """Token budget per step: one per decoding sequence, the rest goes to chunked prefill (FCFS)."""
    kv_capacity_tokens: int = Field(default=300_000, ge=1)
    """KV cache size. A request reserves prompt + max_tokens at admission; those that do not fit wait (FCFS)."""
    max_model_len: int = Field(default=32_768, ge=2)
    """Context window: prompt + max_tokens beyond it is answered 400."""
    prefix_cache_tokens: int = Field(default=200_000, ge=0)
    """Automatic prefix caching: prompt prefixes prefilled recently (an LRU of this many tokens) skip their
    prefill, so multi-turn sessions and shared-prefix traces get a lower TTFT. 0 turns it off."""

    # -- response shape ------------------------------------------------------------------------------------------
    tokens_per_chunk: int = Field(default=1, ge=1, le=4096)
    """Tokens carried by one streamed chunk (like servers that batch stream output); usage counts tokens."""
    usage: Literal["requested", "always"] = "requested"
    """Send the final usage chunk only with stream_options.include_usage (OpenAI, vLLM), or always."""
    strict_fields: bool = False
    """Reject non-OpenAI request fields (ignore_eos, min_tokens, ...) with 422, like some servers do."""
    reasoning_tokens: int = Field(default=0, ge=0)
    """A reasoning model: the first N generated tokens of every chat (and Responses) answer stream as
    ``delta.reasoning_content`` (``response.reasoning_text.delta``) before the answer, and count in usage, like
    vLLM and SGLang with a reasoning parser. TTFO - TTFT is then the time of N tokens. Completions: no reasoning."""
    early_eos_prob: float = _Rate
    """Per-token chance of EOS after min_tokens (0: always exactly max_tokens). Ignored with ignore_eos."""

    # -- simulated GPU -------------------------------------------------------------------------------------------
    gpu_name: str = "Simulated H100 80GB HBM3"
    idle_w: float = Field(default=120.0, gt=0.0)
    """Power with no step running."""
    decode_base_w: float = Field(default=260.0, gt=0.0)
    """Demand of a decode step at tiny batch: HBM streams the weights at full bandwidth."""
    full_load_w: float = Field(default=690.0, gt=0.0)
    """Demand of compute-bound work (prefill); decode approaches it as the batch grows."""
    decode_half_batch: float = Field(default=64.0, gt=0.0)
    """Batch at which a decode step's demand is halfway from decode_base_w to full_load_w."""
    static_w: float = Field(default=180.0, ge=0.0)
    """Part of a step's demand that does not scale with the SM clock (HBM, leakage, board): a cap only squeezes
    the rest, so far below the demand a cap slows the step more than it saves and J/token rises again."""
    cap_gamma: float = Field(default=2.0, gt=0.0, le=4.0)
    """Dynamic power grows as clock ** gamma (voltage follows the clock): under a cap the clock falls to
    ((cap - static) / (demand - static)) ** (1 / gamma) of boost."""
    decode_mem_bound: float = Field(default=0.7, ge=0.0, le=1.0)
    """Share of a decode step bound by HBM bandwidth (it does not slow with the clock): why a cap well below the
    demand costs decode little speed. Prefill is compute-bound (share 0.1)."""
    min_limit_w: float = Field(default=200.0, gt=0.0)
    max_limit_w: float = Field(default=700.0, gt=0.0)
    default_limit_w: float = Field(default=700.0, gt=0.0)
    power_limit_w: float | None = None
    """Power limit at start (None: the default limit)."""
    boost_clock_mhz: int = 1980
    idle_clock_mhz: int = 345
    mem_clock_mhz: int = 2619
    mem_total_mib: int = 81_559
    weights_mib: int = 15_317
    """Model weights (8B parameters in bf16)."""
    kv_bytes_per_token: int = 131_072
    """Llama-3.1-8B: 32 layers x 8 KV heads x 128 dims x (K, V) x 2 bytes. Sizes the preallocated KV pool."""

    # -- faults --------------------------------------------------------------------------------------------------
    error_rate: float = _Rate
    """Fraction of requests answered 500."""
    rate_429: float = _Rate
    """Fraction of requests answered 429 with a Retry-After header."""
    retry_after_s: int = Field(default=1, ge=0)
    reset_rate: float = _Rate
    """Fraction of requests whose connection is aborted (TCP reset) after some content chunks."""
    malformed_rate: float = _Rate
    """Fraction of streams that carry one chunk that is not valid JSON (the stream then goes on normally)."""
    stall_rate: float = _Rate
    """Fraction of streams that stop sending mid-stream for stall_s (tokens are held, then flushed)."""
    stall_s: float = Field(default=2.0, ge=0.0)
    """Length of a stall in wall seconds (not scaled by speed: it exercises the client's read timeout)."""
    no_usage: bool = False
    """Never send the usage chunk, whatever the request asks."""

    # -- bookkeeping ---------------------------------------------------------------------------------------------
    stamps_max_requests: int = Field(default=100_000, ge=1)
    """Ground-truth stamps kept for the most recent N requests."""
    api_key: SecretStr | None = Field(default=None, exclude=True)
    """When set, /v1 requests need "Authorization: Bearer <key>" (401 otherwise). Never dumped."""

    @model_validator(mode="after")
    def _check_limits(self) -> SimConfig:
        if not self.min_limit_w <= self.default_limit_w <= self.max_limit_w:
            raise ValueError("power limits must satisfy min_limit_w <= default_limit_w <= max_limit_w")
        if self.idle_w >= self.min_limit_w:
            raise ValueError("idle_w must be below min_limit_w (a cap can never bind at idle)")
        if self.static_w >= self.min_limit_w:
            raise ValueError("static_w must be below min_limit_w (the lowest cap must leave some dynamic power)")
        if self.power_limit_w is not None and not self.min_limit_w <= self.power_limit_w <= self.max_limit_w:
            raise ValueError("power_limit_w must lie within [min_limit_w, max_limit_w]")
        return self

    def safe_dump(self) -> dict[str, Any]:
        """Settings as JSON-able data, without the API key."""
        return self.model_dump(mode="json", exclude={"api_key"})


@dataclass(frozen=True, slots=True)
class StepCost:
    """One engine step: how long it takes (simulated seconds, before the speed factor) and what it draws."""

    duration_s: float
    watts: float  # drawn during the step: the demand, or the cap when the cap binds
    demand_w: float  # what the step would draw uncapped
    stretch: float  # duration factor from the cap (1.0 when it does not bind)
    binding: bool
    sm_clock_mhz: int
    mem_busy: float  # fraction of the step the memory system is busy (for util_mem_pct)


def decode_demand_w(cfg: SimConfig, batch: int) -> float:
    """Uncapped power of a decode step: weight streaming plus compute that grows with the batch."""
    return cfg.decode_base_w + (cfg.full_load_w - cfg.decode_base_w) * batch / (batch + cfg.decode_half_batch)


PREFILL_MEM_BOUND = 0.1
MIN_DYNAMIC_SHARE = 0.05  # a cap at (or under) the static power still leaves the GPU crawling, never stopped


def cap_clock_ratio(cfg: SimConfig, demand_w: float, cap_w: float) -> float:
    """SM clock as a fraction of boost under a cap below the demand (dynamic power ~ clock ** gamma)."""
    dynamic = demand_w - cfg.static_w
    if dynamic <= 0.0:
        return 1.0
    share: float = max(MIN_DYNAMIC_SHARE, (cap_w - cfg.static_w) / dynamic)
    return min(1.0, float(share ** (1.0 / cfg.cap_gamma)))


def step_cost(cfg: SimConfig, decode_seqs: int, prefill_tokens: int, cap_w: float) -> StepCost:
    """Time and power of one step with ``decode_seqs`` decoding sequences and ``prefill_tokens`` prompt tokens.

    decode part = decode_base_ms + decode_per_seq_ms * decode_seqs (at decode_demand_w), prefill part =
    prefill_tokens / prefill_tokens_per_s (at full_load_w). A cap below the time-weighted demand lowers the clock
    to r = ((cap - static_w) / (demand - static_w)) ** (1 / cap_gamma) of boost; the memory-bound share m of the
    step keeps its time, the rest takes 1/r as long: stretch = m + (1 - m) / r, and the step draws exactly the cap.
    J/token (cap x stretch) first falls with the cap, then rises once the static part dominates: the sweet spot.
    """
    t_dec = (cfg.decode_base_ms + cfg.decode_per_seq_ms * decode_seqs) / 1000.0
    t_pre = prefill_tokens / cfg.prefill_tokens_per_s
    total = t_dec + t_pre
    if total <= 0.0:
        total = 1e-6
    demand = (decode_demand_w(cfg, decode_seqs) * t_dec + cfg.full_load_w * t_pre) / total
    mem_busy = (0.85 * t_dec + 0.35 * t_pre) / total
    if demand > cap_w:
        clock = cap_clock_ratio(cfg, demand, cap_w)
        bound = (cfg.decode_mem_bound * t_dec + PREFILL_MEM_BOUND * t_pre) / total
        stretch = bound + (1.0 - bound) / clock
        return StepCost(total * stretch, cap_w, demand, stretch, True, round(cfg.boost_clock_mhz * clock), mem_busy)
    return StepCost(total, demand, demand, 1.0, False, cfg.boost_clock_mhz, mem_busy)


def max_concurrency(cfg: SimConfig, prompt_tokens: int, max_tokens: int) -> int:
    """Requests that can run at once for one request shape: min(max_batch, kv_capacity // (prompt + max_tokens)).

    More concurrent requests than this wait in the FCFS queue, so TTFT jumps there: the knee a sweep should find.
    """
    return min(cfg.max_batch, cfg.kv_capacity_tokens // (prompt_tokens + max_tokens))


@dataclass(frozen=True, slots=True)
class SteadyState:
    """Decode-only figures at a constant batch (prefill ignored): what a long, steady run converges to."""

    batch: int
    step_s: float  # simulated seconds per decode step, cap included
    output_tokens_per_s: float
    watts: float
    joules_per_token: float


def steady_decode(cfg: SimConfig, batch: int, cap_w: float | None = None) -> SteadyState:
    """Steady decode at ``batch`` under ``cap_w`` (default: the configured limit), in simulated time."""
    cap = cap_w if cap_w is not None else (cfg.power_limit_w or cfg.default_limit_w)
    cost = step_cost(cfg, batch, 0, cap)
    tps = batch / cost.duration_s
    return SteadyState(batch, cost.duration_s, tps, cost.watts, cost.watts / tps if tps else math.inf)

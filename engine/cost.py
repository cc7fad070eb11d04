"""The cost model, as pure functions: GPU-hours, measured energy and tokens -> dollars per hour and per M tokens.

    GPU $/h     = rental $/GPU-hour                                                 (rental)
                = purchase $/GPU / (depreciation years x 8760 h) + overhead $/GPU-h  (ownership)
    energy $    = measured kWh x PUE x $/kWh          (only when power is not included in the GPU price)
    span $      = GPU $/h x GPUs x span hours + energy $
    $/hour      = span $ / span hours
    $/M tokens  = span $ / tokens x 1e6  (= $/hour / tokens per hour x 1e6), output and total tokens
    break-even API price = $/M output tokens: what an API would have to charge per M output tokens to cost the same.

Figures are None when they cannot be true: no span yet, no tokens yet, or energy that must be paid for but was
neither measured nor assumed.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.pricing import HOURS_PER_YEAR, PricingProfile
from engine.snapshot import CostStats

J_PER_KWH = 3.6e6


@dataclass(frozen=True, slots=True)
class SpanUsage:
    """What one span (the window, or the session since start) used."""

    span_s: float
    output_tokens: int
    total_tokens: int
    energy_j: float | None  # measured over the span, all selected GPUs together


@dataclass(frozen=True, slots=True)
class SpanCost:
    dollars: float
    dollars_per_hour: float
    per_million_output: float | None
    per_million_total: float | None


def gpu_dollars_per_gpu_hour(pricing: PricingProfile) -> float:
    """What one GPU costs per hour, energy excluded."""
    if pricing.rental is not None:
        return pricing.rental.dollars_per_gpu_hour
    own = pricing.ownership
    assert own is not None  # the profile's validator guarantees one basis
    return own.purchase_price_per_gpu / (own.depreciation_years * HOURS_PER_YEAR) + own.overhead_per_gpu_hour


def energy_dollars(pricing: PricingProfile, energy_j: float) -> float:
    """Electricity cost of ``energy_j`` measured at the GPUs (0 when the GPU price includes power)."""
    if pricing.energy.included_in_gpu_price:
        return 0.0
    return energy_j / J_PER_KWH * pricing.energy.pue * pricing.energy.dollars_per_kwh


def _per_million(dollars: float, tokens: int) -> float | None:
    return dollars / tokens * 1e6 if tokens > 0 else None


def span_cost(pricing: PricingProfile, gpus: int, usage: SpanUsage) -> SpanCost | None:
    """The cost of one span; None without a span, or when energy must be paid for but is unknown."""
    if usage.span_s <= 0:
        return None
    energy_j = usage.energy_j
    if energy_j is None and not pricing.energy.included_in_gpu_price:
        if pricing.assumed_watts_per_gpu is None:
            return None
        energy_j = pricing.assumed_watts_per_gpu * gpus * usage.span_s
    hours = usage.span_s / 3600.0
    dollars = gpu_dollars_per_gpu_hour(pricing) * gpus * hours + energy_dollars(pricing, energy_j or 0.0)
    return SpanCost(
        dollars=dollars,
        dollars_per_hour=dollars / hours,
        per_million_output=_per_million(dollars, usage.output_tokens),
        per_million_total=_per_million(dollars, usage.total_tokens),
    )


def cost_stats(pricing: PricingProfile | None, gpu_count: int, window: SpanUsage, total: SpanUsage) -> CostStats:
    """Cost figures for a snapshot. ``gpu_count`` = GPUs seen by telemetry; 0 uses the profile's ``gpus``."""
    if pricing is None:
        return CostStats()
    gpus = gpu_count if gpu_count > 0 else pricing.gpus
    w = span_cost(pricing, gpus, window)
    t = span_cost(pricing, gpus, total)
    rate = w.dollars_per_hour if w else t.dollars_per_hour if t else None
    if rate is None and pricing.energy.included_in_gpu_price:
        rate = gpu_dollars_per_gpu_hour(pricing) * gpus  # known before any span: nothing else is billed
    return CostStats(
        profile=pricing.name,
        dollars_per_hour=rate,
        window_per_million_output=w.per_million_output if w else None,
        window_per_million_total=w.per_million_total if w else None,
        total_per_million_output=t.per_million_output if t else None,
        total_per_million_total=t.per_million_total if t else None,
        total_dollars=t.dollars if t else None,
    )


def break_even_api_price(cost: CostStats, *, window: bool = False) -> float | None:
    """The API price per M output tokens at which self-hosting costs the same (since start, or the window)."""
    return cost.window_per_million_output if window else cost.total_per_million_output

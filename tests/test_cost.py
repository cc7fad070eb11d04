"""The cost model against worked examples computed by hand (the arithmetic is in the comments)."""

import pytest

from engine.cost import SpanUsage, break_even_api_price, cost_stats, gpu_dollars_per_gpu_hour
from engine.pricing import PricingProfile, load_pricing
from engine.snapshot import CostStats

NO_SPAN = SpanUsage(span_s=0.0, output_tokens=0, total_tokens=0, energy_j=None)


def test_rental_with_power_included():
    # h100-sxm-rental: $2.50 per GPU-hour, power included; 2 GPUs -> $5.00/h whatever the energy.
    pricing = load_pricing("h100-sxm-rental")
    window = SpanUsage(span_s=600, output_tokens=1_200_000, total_tokens=3_000_000, energy_j=840_000)
    total = SpanUsage(span_s=3600, output_tokens=6_000_000, total_tokens=15_000_000, energy_j=5_040_000)
    c = cost_stats(pricing, 2, window, total)
    assert c.profile == "h100-sxm-rental"
    assert c.dollars_per_hour == pytest.approx(5.0)
    # window: $5.00 x 600/3600 h = $0.833333; / 1.2 M output = $0.694444; / 3.0 M total = $0.277778
    assert c.window_per_million_output == pytest.approx(0.694444, rel=1e-5)
    assert c.window_per_million_total == pytest.approx(0.277778, rel=1e-5)
    # since start: $5.00 over 1 h; / 6 M output = $0.833333; / 15 M total = $0.333333
    assert c.total_dollars == pytest.approx(5.0)
    assert c.total_per_million_output == pytest.approx(0.833333, rel=1e-5)
    assert c.total_per_million_total == pytest.approx(0.333333, rel=1e-5)
    assert break_even_api_price(c) == c.total_per_million_output
    assert break_even_api_price(c, window=True) == c.window_per_million_output


def test_ownership_with_measured_energy():
    # h100-sxm-owned-5y: $31,000 / (5 x 8760 h) = $0.707763/h + $0.30/h overhead = $1.007763 per GPU-hour.
    pricing = load_pricing("h100-sxm-owned-5y")
    assert gpu_dollars_per_gpu_hour(pricing) == pytest.approx(1.007763, rel=1e-6)
    # 1 GPU for 1 h at 700 W: 2.52 MJ = 0.7 kWh x PUE 1.3 x $0.10 = $0.091 -> $1.098763 for the hour
    hour = SpanUsage(span_s=3600, output_tokens=5_000_000, total_tokens=12_500_000, energy_j=2_520_000)
    c = cost_stats(pricing, 1, hour, hour)
    assert c.dollars_per_hour == pytest.approx(1.098763, rel=1e-6)
    assert c.total_dollars == pytest.approx(1.098763, rel=1e-6)
    # $1.098763 / 5 M output tokens = $0.219753 per M; / 12.5 M total = $0.087901 per M
    assert c.window_per_million_output == pytest.approx(0.219753, rel=1e-5)
    assert c.total_per_million_total == pytest.approx(0.087901, rel=1e-5)


def test_ownership_without_telemetry_uses_the_assumed_draw_and_the_profiles_gpu_count():
    # no telemetry (gpu_count 0 -> the profile's 1 GPU), 30 min at the assumed 500 W:
    # 500 W x 1800 s = 0.9 MJ = 0.25 kWh x 1.3 x $0.10 = $0.0325; GPU 1.007763 x 0.5 h = $0.503881
    # -> $0.536381 for the half hour = $1.072763/h; / 1 M output tokens = $0.536381 per M
    pricing = load_pricing("h100-sxm-owned-5y")
    half_hour = SpanUsage(span_s=1800, output_tokens=1_000_000, total_tokens=2_000_000, energy_j=None)
    c = cost_stats(pricing, 0, half_hour, half_hour)
    assert c.total_dollars == pytest.approx(0.536381, rel=1e-5)
    assert c.dollars_per_hour == pytest.approx(1.072763, rel=1e-5)
    assert c.total_per_million_output == pytest.approx(0.536381, rel=1e-5)


def test_unknown_energy_that_must_be_paid_for_gives_no_figures():
    pricing = load_pricing("h100-sxm-owned-5y").model_copy(update={"assumed_watts_per_gpu": None})
    span = SpanUsage(span_s=60, output_tokens=1000, total_tokens=2000, energy_j=None)
    assert cost_stats(pricing, 1, span, span) == CostStats(profile="h100-sxm-owned-5y")


def test_rental_that_bills_power_separately():
    # $2.00/GPU-h, 4 GPUs = $8.00/h; 4 x 600 W for 1 h = 8.64 MJ = 2.4 kWh x PUE 1.2 x $0.15 = $0.432
    pricing = PricingProfile.model_validate(
        {
            "name": "bare-metal",
            "gpu": "H100",
            "source": "test",
            "rental": {"dollars_per_gpu_hour": 2.0},
            "energy": {"included_in_gpu_price": False, "dollars_per_kwh": 0.15, "pue": 1.2},
        }
    )
    hour = SpanUsage(span_s=3600, output_tokens=8_432_000, total_tokens=8_432_000, energy_j=8_640_000)
    c = cost_stats(pricing, 4, hour, hour)
    assert c.dollars_per_hour == pytest.approx(8.432)
    assert c.total_per_million_output == pytest.approx(1.0)  # $8.432 / 8.432 M tokens


def test_before_any_tokens_and_before_any_span():
    pricing = load_pricing("h200-rental")
    idle = SpanUsage(span_s=30, output_tokens=0, total_tokens=0, energy_j=3000)
    c = cost_stats(pricing, 1, idle, idle)
    assert c.dollars_per_hour == pytest.approx(3.5)
    assert c.window_per_million_output is None and c.total_per_million_total is None
    assert c.total_dollars == pytest.approx(3.5 * 30 / 3600)
    start = cost_stats(pricing, 2, NO_SPAN, NO_SPAN)
    assert start.dollars_per_hour == pytest.approx(7.0) and start.total_dollars is None
    owned = cost_stats(load_pricing("h100-sxm-owned-5y"), 1, NO_SPAN, NO_SPAN)
    assert owned.dollars_per_hour is None  # energy is billed, and there is nothing measured yet


def test_no_pricing_no_cost():
    span = SpanUsage(span_s=60, output_tokens=1000, total_tokens=2000, energy_j=10.0)
    assert cost_stats(None, 1, span, span) == CostStats()

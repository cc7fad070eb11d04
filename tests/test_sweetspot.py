"""The sweet-spot rules, Student-t intervals, cap lists and Pareto frontiers against hand-computed figures."""

import math

import pytest

from engine.sweep.sweetspot import (
    CapFigures,
    PickRule,
    mean_ci,
    pareto_frontier,
    parse_caps,
    parse_fraction,
    parse_pick,
    pick_sweet_spot,
)


def caps():
    # cap, tok/s, W, J/tok, $/M, TTFT p99
    rows = [
        (700, 1000, 500, 0.500, 0.80, 100),
        (600, 1000, 480, 0.480, 0.80, 100),
        (500, 980, 420, 0.429, 0.82, 110),  # 2% slower
        (400, 940, 380, 0.404, 0.85, 130),  # 6% slower
        (300, 800, 300, 0.375, 1.00, 200),  # 20% slower, lowest J
    ]
    return [CapFigures(cap_w=c, output_tokens_per_s=t, watts=w, joules_per_output_token=j,
                       dollars_per_million_output=d, ttft_p99_ms=lat) for c, t, w, j, d, lat in rows]


def test_default_rule_is_lowest_energy_within_five_percent():
    spot = pick_sweet_spot(caps(), PickRule(), dollars_per_kwh=0.10, pue=1.5)
    assert spot.cap_w == 500 and spot.baseline_cap_w == 700
    sv = spot.savings
    assert sv.watts == pytest.approx(80)
    assert sv.joules_per_output_token == pytest.approx(0.071)
    assert sv.kwh_per_month == pytest.approx(80 * 730 / 1000 * 1.5)  # 87.6 kWh
    assert sv.dollars_per_month == pytest.approx(8.76)
    assert sv.throughput_fraction == pytest.approx(0.98)


def test_other_rules_and_slos():
    assert pick_sweet_spot(caps(), PickRule(max_slowdown=0.07)).cap_w == 400
    assert pick_sweet_spot(caps(), PickRule(kind="energy")).cap_w == 300
    assert pick_sweet_spot(caps(), PickRule(kind="cost")).cap_w == 700  # ties go to the higher cap
    assert pick_sweet_spot(caps(), PickRule(kind="energy", slo_ttft_p99_ms=150)).cap_w == 400
    none = pick_sweet_spot(caps(), PickRule(slo_ttft_p99_ms=50))
    assert none.cap_w is None and "SLO" in none.reason


def test_student_t_interval_by_hand():
    iv = mean_ci([10.0, 12.0, 14.0])  # mean 12, s = 2, t(0.975, 2) = 4.303
    assert iv.mean == 12 and iv.n == 3
    assert iv.half_width == pytest.approx(4.303 * 2 / math.sqrt(3))
    assert all(iv.contains(v) for v in (10, 12, 14))
    assert mean_ci([5.0]).half_width is None


def test_parsing():
    assert parse_caps("700:300:100") == [700, 600, 500, 400, 300]
    assert parse_caps("300:700:150") == [700, 550, 400, 300]  # the low end is always measured
    assert parse_caps("350,700,500") == [700, 500, 350]
    with pytest.raises(ValueError):
        parse_caps("700:300")
    assert parse_fraction("5%") == pytest.approx(0.05) and parse_fraction("0.1") == pytest.approx(0.1)
    assert parse_pick("slowdown:10%", 0.05).max_slowdown == pytest.approx(0.10)
    with pytest.raises(ValueError):
        parse_pick("fastest", 0.05)


def test_pareto_frontier_throughput_against_watts():
    pts = caps()
    front = pareto_frontier(pts, lambda p: p.watts, lambda p: p.output_tokens_per_s, maximize_x=False,
                            maximize_y=True)
    # 700 W is dominated by 600 W (same tok/s, fewer watts); every other cap trades watts for tok/s
    assert [p.cap_w for p in front] == [300, 400, 500, 600]


def test_caps_that_never_bound_but_differ_raise_a_noise_warning():
    from engine.sweep.powercap_sweep import CapSummary, noise_warnings
    from engine.sweep.sweetspot import Interval

    def summary(cap, rel):
        return CapSummary(cap_w=cap, runs=1, steady_runs=1, figures={"relative_throughput": Interval(mean=rel),
                                                                     "watts": Interval(mean=min(cap, 450.0))})

    # the uncapped draw is 450 W, so only caps >= 562.5 W are certainly free; 500 W may bite at prefill peaks
    quiet = [summary(700, 1.0), summary(600, 0.99), summary(500, 0.93), summary(400, 0.90)]
    assert noise_warnings(quiet, 0.05) == []  # 1% apart: within half the 5% limit
    noisy = [summary(700, 1.0), summary(600, 0.96), summary(400, 0.90)]
    (w,) = noise_warnings(noisy, 0.05)
    assert "4.0% between caps far above the uncapped draw of 450 W (700, 600 W)" in w

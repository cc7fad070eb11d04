"""Counter increases, histogram deltas and percentiles against hand-computed values."""

import math

import pytest

from engine.telemetry.counters import (
    BucketError,
    Buckets,
    counter_increase,
    merge,
    quantile,
    read_histograms,
    series_increase,
)
from engine.telemetry.exposition import ExpositionError, parse_exposition

INF = math.inf


def test_counter_increase_counts_a_reset_as_a_restart_from_zero():
    assert counter_increase([10, 15, 27]) == 17
    # 10 -> 15 (+5), reset to 3 (+3: the new process counted 3 since it started), 3 -> 9 (+6)
    assert counter_increase([10, 15, 3, 9]) == 14
    assert counter_increase([5]) == 0
    assert counter_increase([100, 0]) == 0  # never negative


def test_quantile_interpolates_inside_the_bucket_like_prometheus():
    h = Buckets((0.1, 0.2, 0.4, INF), (10, 30, 40, 40))
    # rank 20 of 40 falls in (0.1, 0.2] which holds ranks 10..30: 0.1 + 0.1 * (20 - 10) / 20 = 0.15
    assert quantile(h, 0.5) == pytest.approx(0.15)
    # rank 39.6 in (0.2, 0.4] holding 30..40: 0.2 + 0.2 * 9.6 / 10 = 0.392
    assert quantile(h, 0.99) == pytest.approx(0.392)
    # the first bucket interpolates from 0: rank 2 of 10 -> 0.1 * 2 / 10
    assert quantile(h, 0.05) == pytest.approx(0.02)
    assert quantile(Buckets((0.1, INF), (0, 0)), 0.5) is None


def test_a_quantile_in_the_inf_bucket_is_the_highest_finite_bound():
    h = Buckets((0.1, 0.5, INF), (1, 2, 10))
    assert quantile(h, 0.9) == 0.5


def test_window_histogram_is_the_merged_delta_not_an_average_of_percentiles():
    # replica A: 100 fast requests in the window; replica B: 10 slow ones
    a0, a1 = Buckets((0.1, 1.0, INF), (50, 50, 50), 5.0), Buckets((0.1, 1.0, INF), (150, 150, 150), 10.0)
    b0, b1 = Buckets((0.1, 1.0, INF), (0, 7, 7), 4.0), Buckets((0.1, 1.0, INF), (0, 17, 17), 9.0)
    merged = merge([series_increase([a0, a1]), series_increase([b0, b1])])
    assert merged == Buckets((0.1, 1.0, INF), (100, 110, 110), 10.0)
    # p50: rank 55 in (0, 0.1]: 0.1 * 55/100 = 0.055; averaging the replicas' p50s (0.05 and 0.55) would say 0.3
    assert quantile(merged, 0.5) == pytest.approx(0.055)


def test_a_histogram_reset_counts_the_new_readings_whole():
    before, after_restart = Buckets((0.1, INF), (90, 100), 20.0), Buckets((0.1, INF), (3, 4), 0.5)
    later = Buckets((0.1, INF), (5, 8), 1.0)
    assert series_increase([before, after_restart, later]) == Buckets((0.1, INF), (5, 8), 1.0)


def test_merge_of_different_layouts_keeps_the_shared_bounds():
    a = Buckets((0.1, 0.5, INF), (1, 2, 3), 1.0)
    b = Buckets((0.5, 1.0, INF), (4, 5, 6), 2.0)
    assert merge([a, b]) == Buckets((0.5, INF), (6, 9), 3.0)


def test_inconsistent_buckets_are_rejected_in_one_line():
    text = (
        "# TYPE x histogram\n"
        'x_bucket{le="0.1"} 5\nx_bucket{le="0.2"} 3\nx_bucket{le="+Inf"} 6\nx_sum 1\nx_count 6\n'
    )
    with pytest.raises(BucketError, match="not cumulative"):
        read_histograms(parse_exposition(text), "x")
    no_inf = '# TYPE y histogram\ny_bucket{le="0.1"} 5\ny_sum 1\ny_count 5\n'
    with pytest.raises(BucketError, match=r"\+Inf"):
        read_histograms(parse_exposition(no_inf), "y")


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("<!DOCTYPE html><html><body>login</body></html>", "HTML"),
        ('{"error": "no"}', "JSON"),
        ("hello world\n", "not Prometheus"),
        ("", "no metrics"),
        ("vllm:x{a=\"1\"} 1\nvllm:y{", "not Prometheus"),
    ],
)
def test_garbage_bodies_give_one_clear_line(body, why):
    with pytest.raises(ExpositionError, match=why) as info:
        parse_exposition(body)
    assert "\n" not in str(info.value)

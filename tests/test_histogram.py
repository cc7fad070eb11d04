import numpy as np
import pytest

from engine.metrics.histogram import RELATIVE_ERROR, LogHistogram


def exact_quantile(values: np.ndarray, q: float) -> float:
    s = np.sort(values)
    return float(s[max(0, int(np.ceil(q * len(s))) - 1)])


@pytest.mark.parametrize("dist", ["lognormal", "uniform", "bimodal"])
def test_quantiles_within_relative_error(dist):
    rng = np.random.default_rng(7)
    if dist == "lognormal":
        v = rng.lognormal(mean=-3, sigma=1.2, size=50_000)
    elif dist == "uniform":
        v = rng.uniform(0.001, 2.0, size=50_000)
    else:
        v = np.concatenate([rng.normal(0.02, 0.002, 40_000), rng.normal(1.5, 0.1, 10_000)])
        v = np.abs(v)
    h = LogHistogram()
    h.add_many(v)
    for q in (0.5, 0.9, 0.95, 0.99, 0.999):
        got, want = h.quantile(q), exact_quantile(v, q)
        assert abs(got - want) / want <= RELATIVE_ERROR + 1e-9, (q, got, want)
    assert h.count == v.size
    assert h.max == pytest.approx(v.max())
    assert h.mean == pytest.approx(v.mean())


def test_merge_equals_single_histogram_and_not_average_of_p99():
    rng = np.random.default_rng(1)
    fast, slow = rng.uniform(0.01, 0.02, 9_000), rng.uniform(1.0, 2.0, 1_000)
    a, b, whole = LogHistogram(), LogHistogram(), LogHistogram()
    a.add_many(fast)
    b.add_many(slow)
    whole.add_many(np.concatenate([fast, slow]))
    merged = LogHistogram.merged([a, b])
    assert np.array_equal(merged.counts, whole.counts)
    assert merged.quantile(0.99) == whole.quantile(0.99)
    # averaging per-worker p99s would be wrong by far; merged buckets are not
    averaged = (a.quantile(0.99) + b.quantile(0.99)) / 2
    assert abs(averaged - exact_quantile(np.concatenate([fast, slow]), 0.99)) > 0.1


def test_add_and_add_many_agree_and_empty_is_none():
    h1, h2 = LogHistogram(), LogHistogram()
    vals = [0.0, 1e-9, 0.5, 3.0, 1e9]  # out-of-range values are clamped, not dropped
    for x in vals:
        h1.add(x)
    h2.add_many(vals)
    assert np.array_equal(h1.counts, h2.counts)
    assert LogHistogram().quantile(0.5) is None
    assert h1.max == 1e9  # the exact max is kept even beyond the bucket range
    assert h1.quantile(1.0) == pytest.approx(1e5, rel=RELATIVE_ERROR)  # buckets clamp at MAX_VALUE
    one = LogHistogram()
    one.add(0.25)
    assert one.quantile(0.5) == 0.25  # never reported beyond the exact extremes

"""EnergyAccount: energy from counter deltas (resets included), integration only as a marked fallback, per token."""

import pytest

from engine.gpu.energy import EnergyAccount
from engine.records import TelemetrySample

BASE_NS = 1_000_000_000_000  # perf_counter stamps are large; never start at zero


def ns(t_s: float) -> int:
    return BASE_NS + round(t_s * 1e9)


def sample(t_s: float, gpu: int = 0, **fields) -> TelemetrySample:
    return TelemetrySample(t_ns=ns(t_s), gpu_index=gpu, **fields)


def stats(
    account: EnergyAccount,
    now_s: float,
    window_s: float = 10.0,
    out: int = 0,
    total: int = 0,
    out_all: int = 0,
    total_all: int = 0,
    steady: bool = True,
):
    return account.stats(
        ns(now_s),
        window_s=window_s,
        window_output_tokens=out,
        window_total_tokens=total,
        total_output_tokens=out_all,
        total_total_tokens=total_all,
        steady=steady,
    )


def test_energy_comes_from_the_counter_not_the_power_readings():
    acc = EnergyAccount()
    for i in range(31):  # 3 s at 10 Hz; the counter grows 65 J per 0.1 s = 650 W
        acc.add(sample(i / 10, energy_mj=7_000_000 + 65_000 * i, power_w=600.0, power_instant_w=700.0))
    st = stats(acc, 3.0, window_s=2.0)
    assert st.energy_source == "counter"
    assert st.total.energy_j == pytest.approx(30 * 65.0)  # 1950 J, not 600 W or 700 W x 3 s
    assert st.total.mean_watts == pytest.approx(650.0)
    assert st.gpus[0].watts == pytest.approx(650.0)  # Δenergy/Δt over the last second
    assert st.gpus[0].watts_instant == 700.0
    assert st.window.energy_j == pytest.approx(1300.0) and st.window.mean_watts == pytest.approx(650.0)


def test_a_counter_reset_is_bridged_by_power_and_never_goes_negative():
    acc = EnergyAccount()
    acc.add(sample(0, energy_mj=1_000_000, power_w=100.0))
    acc.add(sample(1, energy_mj=1_100_000, power_w=100.0))  # +100 J
    acc.add(sample(2, energy_mj=2_000, power_w=300.0))  # reset: (100 + 300) / 2 W x 1 s = 200 J
    acc.add(sample(3, energy_mj=302_000, power_w=300.0))  # +300 J
    st = stats(acc, 3.0)
    assert st.total.energy_j == pytest.approx(600.0)
    assert acc.counter_resets == 1
    assert st.energy_source == "counter"


def test_a_counter_reset_without_power_counts_the_energy_since_the_reset():
    acc = EnergyAccount()
    for t, mj in ((0, 1_000_000), (1, 1_050_000), (2, 20_000), (3, 70_000)):
        acc.add(sample(t, energy_mj=mj))
    assert stats(acc, 3.0).total.energy_j == pytest.approx(50 + 20 + 50)


def test_without_a_counter_power_is_integrated_and_marked():
    acc = EnergyAccount()
    for t, instant in ((0, 200.0), (1, 200.0), (2, 400.0), (3, 400.0)):
        acc.add(sample(t, power_w=100.0, power_instant_w=instant))  # the 1 s average lags; instant is used
    st = stats(acc, 3.0)
    assert st.energy_source == "integrated"
    assert st.total.energy_j == pytest.approx(200 + 300 + 400)  # trapezoids: 900 J
    assert st.gpus[0].watts == pytest.approx(400.0)


def test_integration_falls_back_to_the_averaged_reading():
    acc = EnergyAccount()
    acc.add(sample(0, power_w=100.0))
    acc.add(sample(2, power_w=300.0))
    st = stats(acc, 2.0)
    assert st.total.energy_j == pytest.approx(400.0) and st.energy_source == "integrated"


def _two_phase_run(acc: EnergyAccount, gpu: int = 0) -> None:
    """20 s at 10 Hz: 100 W for 10 s, then 500 W; counter E(t) in J = 100 t, then 1000 + 500 (t - 10)."""
    for i in range(201):
        t = i / 10
        joules = 100 * t if t <= 10 else 1000 + 500 * (t - 10)
        acc.add(sample(t, gpu=gpu, energy_mj=round(joules * 1000), power_w=0.0))


def test_window_and_total_energy_per_token():
    acc = EnergyAccount()
    _two_phase_run(acc)
    st = stats(acc, 20.0, window_s=10.0, out=2000, total=10_000, out_all=3000, total_all=15_000)
    # window: 500 W x 10 s = 5000 J; 5000 J / 2000 tokens = 2.5 J; 5000 / 3.6e6 kWh / 2000 x 1e6 = 0.694 kWh/M
    assert st.window.energy_j == pytest.approx(5000.0)
    assert st.window.mean_watts == pytest.approx(500.0)
    assert st.window.joules_per_output_token == pytest.approx(2.5)
    assert st.window.kwh_per_million_output_tokens == pytest.approx(0.694444, rel=1e-5)
    assert st.window.kwh_per_million_total_tokens == pytest.approx(0.138889, rel=1e-5)
    # since start: 1000 + 5000 = 6000 J over 20 s; 6000 / 3000 = 2 J per output token
    assert st.total.energy_j == pytest.approx(6000.0)
    assert st.total.mean_watts == pytest.approx(300.0)
    assert st.total.joules_per_output_token == pytest.approx(2.0)
    assert st.total.kwh_per_million_total_tokens == pytest.approx(6000 / 3.6e6 / 15_000 * 1e6)


def test_window_covers_its_whole_span_when_samples_trail_now():
    acc = EnergyAccount()
    _two_phase_run(acc)
    st = stats(acc, 20.05, window_s=10.0)  # last sample 50 ms before "now": mean power x the full 10 s
    assert st.window.mean_watts == pytest.approx(500.0)
    assert st.window.energy_j == pytest.approx(5000.0)


def test_totals_across_gpus_and_the_readings_of_each():
    acc = EnergyAccount(names={0: "H100 a", 1: "H100 b"}, source="fake")
    _two_phase_run(acc, gpu=0)
    for i in range(201):  # GPU 1 at a steady 50 W, capped at 300 W and bound by it
        acc.add(
            sample(
                i / 10,
                gpu=1,
                energy_mj=5_000 * i,
                power_limit_w=300.0,
                enforced_limit_w=300.0,
                sm_clock_mhz=1335,
                power_cap_binding=True,
                temperature_c=61,
                mem_used_mib=100,
                mem_total_mib=81_559,
            )
        )
    acc.add(sample(20.0, gpu=1, energy_mj=0))  # a duplicate stamp is ignored, not read as a reset
    st = stats(acc, 20.0, window_s=10.0)
    assert st.source == "fake" and st.available
    assert [g.index for g in st.gpus] == [0, 1] and [g.name for g in st.gpus] == ["H100 a", "H100 b"]
    assert st.watts == pytest.approx(550.0)
    assert st.window.energy_j == pytest.approx(5500.0) and st.total.energy_j == pytest.approx(7000.0)
    assert st.power_limit_w == 300.0  # only GPU 1 reported a limit
    gpu1 = st.gpus[1]
    assert (gpu1.power_limit_w, gpu1.sm_clock_mhz, gpu1.power_cap_binding, gpu1.temperature_c) == (
        300.0,
        1335,
        True,
        61,
    )
    assert acc.counter_resets == 0


def test_no_samples_yet():
    st = stats(EnergyAccount(source="sim"), 1.0)
    assert not st.available and st.source == "sim" and st.gpus == ()


def test_steady_flag_is_passed_through_and_no_tokens_means_no_per_token_figures():
    acc = EnergyAccount()
    _two_phase_run(acc)
    st = stats(acc, 20.0, steady=False)
    assert st.window.steady is False and st.total.steady is False
    assert st.window.joules_per_output_token is None and st.total.kwh_per_million_output_tokens is None
    assert stats(acc, 20.0, window_s=0.0).window.energy_j is None


def test_watts_before_a_second_of_history_is_the_power_reading():
    acc = EnergyAccount()
    acc.add(sample(0, energy_mj=1_000, power_w=123.0))
    assert stats(acc, 0.0).gpus[0].watts == 123.0


def test_long_runs_prune_history_without_changing_the_totals():
    acc = EnergyAccount()
    for i in range(6001):  # 10 minutes at 10 Hz and 100 W, with a stats() call every simulated second
        acc.add(sample(i / 10, energy_mj=10_000 * i))
        if i % 10 == 0:
            st = stats(acc, i / 10, window_s=10.0)
    assert st.total.energy_j == pytest.approx(60_000.0)
    assert st.total.mean_watts == pytest.approx(100.0)
    assert st.window.energy_j == pytest.approx(1000.0)
    assert len(acc._tracks[0].t) < 1500  # history was pruned (60 s kept + slack), yet the totals are whole

"""The cap sweep's conclusions from measured steps (no server): relative throughput per repetition and concurrency,
the grid's Pareto frontiers, and its chart drawing the frontier."""

import pytest

from engine.reports.charts import pareto_chart, powercap_chart
from engine.sweep.powercap_sweep import CapStep, CapSweepSettings, conclude
from engine.sweep.rules import StepResult


def step(rep, conc, cap, tps, watts, ttft):
    s = StepResult(index=0, concurrency=conc, held_s=5, steady=True, requests=100, errors=0, error_rate=0.0,
                   requests_per_s=10, output_tokens_per_s=tps, input_tokens_per_s=tps, ttft_p99_ms=ttft,
                   watts=watts, joules_per_output_token=watts / tps)  # fmt: skip
    return CapStep(repetition=rep, cap_w=cap, concurrency=conc, step=s)


# (concurrency, cap) -> (tok/s, W, TTFT p99 ms)
GRID = {(8, 700): (1000, 300, 50), (8, 400): (1000, 300, 50), (32, 700): (3000, 450, 90), (32, 400): (2900, 395, 95),
        (32, 300): (2400, 300, 140)}  # fmt: skip


def test_grid_frontiers_and_the_sweet_spot_at_the_highest_load():
    steps = [step(1, c, cap, *v) for (c, cap), v in GRID.items()]
    result = conclude(CapSweepSettings(caps_w=[700, 400, 300]), "grid", steps, grid=True)
    assert result.sweet_spot.cap_w == 400  # at c=32: 2900/3000 = 96.7%, the lowest J/token within 5%
    rel = {(s.concurrency, s.cap_w): s.relative_throughput for s in result.steps}
    assert rel[(32, 400)] == pytest.approx(2900 / 3000) and rel[(8, 400)] == pytest.approx(1.0)
    front = [(s.concurrency, s.cap_w) for s in result.pareto_throughput_watts]
    # c=8 at 400 W draws the same 300 W as c=8 at 700 W (a tie on both axes keeps both); c=32/300 W gives 2,400
    # tok/s for those 300 W, so it dominates them
    assert front == [(32, 300), (32, 400), (32, 700)]
    energy = [(s.concurrency, s.cap_w) for s in result.pareto_energy_latency]
    assert (8, 700) in energy and (32, 300) in energy  # fastest first token vs fewest joules per token
    for chart in (pareto_chart(result), powercap_chart(result)):
        assert chart.points >= 3 and 'id="data-' in chart.svg()

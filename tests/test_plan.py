"""Capacity planning against worked examples computed by hand (the formulas are in engine/plan/capacity.py)."""

import pytest

from engine.plan.capacity import Demand, OperatingPoint, parse_demand, plan, ranked


def h100_rental():
    return OperatingPoint(name="h100 @ 700 W", goodput_tokens_per_s=3000, watts_per_replica=500,
                          idle_watts_per_gpu=120, gpu_dollars_per_hour=2.50, energy_included=True)  # fmt: skip


def test_worked_example_rental():
    # 2e9 tokens/day = 23,148.1 tok/s mean; peak x2.5 = 57,870.4; usable per GPU 3000 x 0.8 = 2400
    demand = Demand(tokens_per_s=parse_demand("2e9/day"), peak=2.5, headroom=0.2, api_price=0.20)
    p = plan(h100_rental(), demand)
    assert p.peak_tokens_per_s == pytest.approx(57_870.37, rel=1e-6)
    assert p.replicas == 25 and p.gpus == 25 and p.nodes == 4  # ceil(57,870.4 / 2400) = 25; ceil(25 / 8) = 4
    assert p.utilisation == pytest.approx(23_148.148 / 75_000, rel=1e-6)  # 0.3086
    # watts: 25 x (120 + 380 x 0.30864) = 25 x 237.28 = 5,932.1 W; x 730 h = 4,330.4 kWh (PUE 1)
    assert p.watts == pytest.approx(5_932.10, rel=1e-5)
    assert p.kwh_per_month == pytest.approx(4_330.43, rel=1e-5)
    assert p.gpu_dollars_per_month == pytest.approx(25 * 2.50 * 730)  # $45,625
    assert p.dollars_per_month == pytest.approx(45_625)  # power included in the rental
    # 23,148.15 tok/s x 3600 x 730 = 60,833.3 M tokens/month -> $0.75000 per M: the break-even price
    assert p.tokens_per_month == pytest.approx(60_833.33e6, rel=1e-6)
    assert p.dollars_per_million == pytest.approx(0.75, rel=1e-6)
    assert p.margin_per_million == pytest.approx(-0.55, rel=1e-6)  # an API at $0.20/M is cheaper
    assert p.margin_fraction == pytest.approx(-2.75)


def test_worked_example_owned_with_energy_and_two_configurations_ranked():
    owned = OperatingPoint(name="h100 owned @ 400 W", goodput_tokens_per_s=2800, watts_per_replica=400,
                           idle_watts_per_gpu=100, gpu_dollars_per_hour=1.0078, dollars_per_kwh=0.10, pue=1.3,
                           energy_included=False)  # fmt: skip
    demand = Demand(tokens_per_s=parse_demand("1e9/day"), peak=2.0, headroom=0.0, api_price=1.00)
    p = plan(owned, demand)
    # mean 11,574.07 tok/s, peak 23,148.15 -> ceil(23,148.15 / 2800) = 9 GPUs (8.27), 2 nodes
    assert (p.replicas, p.gpus, p.nodes) == (9, 9, 2)
    u = 11_574.074 / (9 * 2800)  # 0.45929
    assert p.utilisation == pytest.approx(u, rel=1e-6)
    watts = 9 * (100 + 300 * u)  # 2,140.1 W
    assert p.watts == pytest.approx(watts, rel=1e-6)
    kwh = watts * 730 / 1000 * 1.3  # 2,030.9 kWh
    assert p.kwh_per_month == pytest.approx(kwh, rel=1e-6)
    assert p.energy_dollars_per_month == pytest.approx(kwh * 0.10, rel=1e-6)  # $203.09
    assert p.gpu_dollars_per_month == pytest.approx(9 * 1.0078 * 730)  # $6,621.25
    total = 9 * 1.0078 * 730 + kwh * 0.10  # $6,824.34
    assert p.dollars_per_month == pytest.approx(total, rel=1e-6)
    tokens_m = 11_574.074 * 3600 * 730 / 1e6  # 30,416.7 M
    assert p.dollars_per_million == pytest.approx(total / tokens_m, rel=1e-6)  # $0.2244 per M
    assert p.margin_per_million == pytest.approx(1.00 - total / tokens_m, rel=1e-6)

    rental = h100_rental()
    order = ranked([rental, owned], demand)
    assert [o.point.name for o in order] == ["h100 owned @ 400 W", "h100 @ 700 W"]
    # the rental: ceil(23,148.15 / 3000) = 8 GPUs x $2.50 x 730 = $14,600 -> $0.4800 per M
    assert order[1].gpus == 8 and order[1].dollars_per_million == pytest.approx(14_600 / tokens_m, rel=1e-6)


def test_demand_units():
    assert parse_demand("86400/day") == pytest.approx(1.0)
    assert parse_demand("3.6k/h") == pytest.approx(1.0)
    assert parse_demand("2M/s") == pytest.approx(2e6)
    for bad in ("2e9", "lots/day", "5/fortnight", "-3/s"):
        with pytest.raises(ValueError):
            parse_demand(bad)


def cap_result(path, name, tps_by_cap, watts_by_cap):
    summaries = [{"cap_w": c, "figures": {"output_tokens_per_s": {"mean": t}, "watts": {"mean": watts_by_cap[c]},
                                          "relative_throughput": {"mean": t / tps_by_cap[700]},
                                          "joules_per_output_token": {"mean": watts_by_cap[c] / t}}}
                 for c, t in tps_by_cap.items()]  # fmt: skip
    data = {"format": "wattload-sweep", "kind": "powercap", "model": name, "pricing": "h100-sxm-rental",
            "sysinfo": {"gpus": [{"name": name}]},
            "powercap": {"summaries": summaries, "sweet_spot": {"cap_w": 400}, "settings": {"rule": {}}}}  # fmt: skip
    path.write_text(__import__("json").dumps(data))
    return path


def test_plan_command_ranks_two_results_cheapest_first(tmp_path, capsys):
    from tui.cli import main

    a = cap_result(tmp_path / "a.json", "GPU-A", {700: 3000.0, 400: 2900.0}, {700: 500.0, 400: 400.0})
    b = cap_result(tmp_path / "b.json", "GPU-B", {700: 2000.0, 400: 1900.0}, {700: 500.0, 400: 400.0})
    out = tmp_path / "plans.json"
    assert main(["plan", str(b), str(a), "--demand", "2e9/day", "--peak", "2.5", "--headroom", "20%",
                 "--api-price", "0.20", "--json", str(out)]) == 0  # fmt: skip
    text = capsys.readouterr().out
    first, second = (ln for ln in text.splitlines() if ln.startswith(("1 ", "2 ")))
    assert "GPU-A capped at 400 W" in first and "GPU-B" in second
    plans = __import__("json").loads(out.read_text())
    # GPU-A at its 400 W sweet spot: ceil(57,870.4 / (2900 x 0.8)) = 25 GPUs x $2.50 x 730 h = $45,625/month
    assert plans[0]["gpus"] == 25 and plans[0]["dollars_per_month"] == pytest.approx(45_625)
    assert plans[1]["gpus"] == 39  # ceil(57,870.4 / 1520) = 39
    assert "break-even API price: $0.750 per M output tokens" in text


def test_plan_of_a_file_that_is_not_a_result_is_one_line(tmp_path, capsys):
    from tui.cli import main

    bad = tmp_path / "x.json"
    bad.write_text("[1, 2]")
    assert main(["plan", str(bad), "--demand", "1e6/h"]) == 2
    assert capsys.readouterr().err.count("\n") == 1

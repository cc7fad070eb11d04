"""`wattload sweep` on the command line: a real sweep of the built-in simulator, and one-line errors."""

import csv
import json
import re
from pathlib import Path

import pytest

from engine.reports.sweep import STEP_COLUMNS
from engine.workload.profile import available_profiles
from tui.cli import main

DATA = Path(__file__).parent / "data" / "workloads"


@pytest.mark.slow
@pytest.mark.own_core  # finds a knee: a simulator starved by the parallel tier's many processes blurs it
def test_sweep_of_the_simulator_prints_the_ceiling_and_writes_json_and_csv(tmp_path, capsys):
    out_json, out_csv = tmp_path / "s.json", tmp_path / "s.csv"
    # KV for two requests of about 32 + 128 tokens (not three): the ceiling is at concurrency 2.
    # A closed loop at exactly the capacity idles each freed slot for a client round trip; on a loaded 2-core
    # machine that can cost ~10%, which queued requests past the knee recover: hence a 15% threshold here.
    argv = ["sweep", "--sim", "--sim-set", "speed=10", "--sim-set", "kv_capacity_tokens=400"]
    argv += ["--profile", str(DATA / "sweep_tiny.toml"), "--workers", "1", "--refresh", "10", "--seed", "7"]
    argv += ["--threshold", "0.15", "--json", str(out_json), "--csv", str(out_csv)]
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "ceiling search: sweep_tiny" in captured.out
    assert "sweep_tiny: capacity 2 concurrent" in captured.out
    assert re.search(r"lengths: input 32 -> 3\d\.\d \([+-]\d\.\d%\), output 128 -> 128\.0 \(\+0\.0%\)", captured.out)
    assert "step 1: concurrency 1" in captured.err  # progress lines on stderr
    assert "pricing h100-sxm-rental (matches the detected Simulated H100" in captured.err  # as run picks it

    report = json.loads(out_json.read_text())
    assert report["kind"] == "sweep" and report["seed"] == 7
    assert report["profile"]["name"] == "sweep_tiny" and len(report["profile"]["sha256"]) == 64
    assert report["profile"]["profile"]["system_prompt"] == "Be brief."
    assert report["sysinfo"]["gpus"][0]["name"].startswith("Simulated")
    assert report["pricing"] == "h100-sxm-rental"
    assert report["settings"]["threshold"] == 0.15 and report["settings"]["start"] == 1
    outcome = report["result"]["outcome"]
    assert outcome["capacity"] == 2
    assert [s["concurrency"] for s in outcome["steps"]] == [1, 2, 4]
    for s in outcome["steps"]:  # one span for every figure of a step: watts = J/token x tok/s, spend likewise
        assert s["watts"] == pytest.approx(s["joules_per_output_token"] * s["output_tokens_per_s"], rel=1e-9), s
        spend_per_s = s["dollars_per_million_output"] * s["output_tokens_per_s"] / 1e6
        tokens_per_s = s["output_tokens_per_s"] + s["input_tokens_per_s"]
        assert s["dollars_per_million_total"] == pytest.approx(spend_per_s / tokens_per_s * 1e6, rel=1e-9), s
    assert report["result"]["calibration"]["converged"]
    lengths = report["result"]["lengths"]
    assert abs(lengths["input_error_pct"]) <= 2.0 and lengths["output_error_pct"] == 0.0

    with out_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == STEP_COLUMNS
    assert [int(r["concurrency"]) for r in rows] == [1, 2, 4]
    # no reasoning in this profile: the first answer token is the first token (TTFO is never earlier than TTFT)
    assert all(float(r["ttfo_p50_ms"]) >= float(r["ttft_p50_ms"]) > 0 for r in rows), rows
    # at 4 the server can start only 2: the other 2 wait for a first token, so the step is past the admission
    # limit, and its TTFT p99 is censored ("≥ the oldest wait"), not the survivors' figure
    assert [r["verdict"] for r in rows][-1] == "queued"
    assert int(rows[-1]["waiting_first_token"]) >= 2 and rows[-1]["ttft_p99_censored"] == "True"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["sweep"], "give the endpoint URL"),
        (["sweep", "--sim", "--profile", "nope"], "unknown workload profile 'nope'; available: "),
        (["sweep", "--sim", "--profile", str(DATA / "bad_min_over_max.toml")], "bad_min_over_max.toml:5: input"),
        (["sweep", "--sim", "--profile", str(DATA / "bad_dataset_json.toml")], "bad_dataset_json.jsonl:3: not valid"),
        (["sweep", "--sim", "--start", "8", "--max", "4"], "--start (8) is above --max (4)"),
        (["sweep", "--sim", "--threshold", "2"], "invalid sweep setting threshold"),
        (["sweep", "--sim", "--resume"], "--resume applies to matrix profiles only"),
        (["sweep", "--sim", "--sim-set", "speed"], "--sim-set wants KEY=VALUE"),
        (["sweep", "--sim", "--sim-set", "speed=-1"], "--sim-set speed"),
        (["sweep", "--sim", "--heatmap", "colour"], "unknown heatmap 'colour'"),
        (["sweep", "http://127.0.0.1:9", "--sim-set", "speed=2"], "--sim-set needs --sim"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(argv, expected, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_unknown_profile_lists_every_builtin(capsys):
    main(["sweep", "--sim", "--profile", "nope"])
    err = capsys.readouterr().err
    assert all(name in err for name in available_profiles())


def test_an_unreachable_server_is_one_line(capsys):
    assert main(["sweep", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "cannot connect" in err and err.count("\n") == 1

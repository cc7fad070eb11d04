"""The token matrix end to end: every cell found (or reported as exceeding the context), resumable, table + files.

A 4x4 profile with tiny lengths keeps it fast; it runs the same code as profiles/workloads/matrix.toml. The
simulator's context window (48 tokens) is smaller than ten of the cells need, which must not stop the matrix.
"""

import csv
import hashlib
import json
import threading
from pathlib import Path

import pytest

from engine.cli.sweep import settings_from_args
from engine.config import RunConfig
from engine.pricing import DEFAULT_PRICING, load_pricing
from engine.reports.sweep import CELL_COLUMNS
from engine.sim.model import SimConfig
from engine.sweep.matrix import MatrixError, load_state, run_matrix, state_path_for
from engine.sweep.session import SweepTarget
from engine.workload.profile import load_profile
from tui.cli import build_parser, main

pytestmark = pytest.mark.slow

PROFILE = Path(__file__).parent / "data" / "workloads" / "matrix_tiny.toml"
SIM = SimConfig(speed=10, max_model_len=48)


def fits(i, o):
    return i + o <= SIM.max_model_len and i < SIM.max_model_len


# Not `alone`: nothing here compares timings. With --max 2 every runnable cell's capacity is 1 or 2 whatever the
# box's load, and the lengths are the server's usage (calibrated), so it runs in the parallel suite.
def test_matrix_runs_every_cell_resumes_and_writes_table_json_and_csv(sim_process, tmp_path, capsys):
    out_json, out_csv = tmp_path / "matrix.json", tmp_path / "matrix.csv"
    argv = ["sweep", sim_process.url, "--profile", str(PROFILE), "--gpu", "sim", "--workers", "1", "--refresh", "10"]
    argv += ["--json", str(out_json), "--csv", str(out_csv)]
    loaded = load_profile(str(PROFILE))
    grid = [(i, o) for i in loaded.profile.matrix.inputs for o in loaded.profile.matrix.outputs]
    runnable = [c for c in grid if fits(*c)]
    assert len(grid) == 16 and len(runnable) == 6

    # 1. The matrix is interrupted once three cells have run (as Ctrl-C would): finished cells are kept.
    settings = settings_from_args(build_parser().parse_args(argv), loaded)
    config = RunConfig(base_url=sim_process.url, model=SIM.model, workers=1, tick_hz=10)
    target = SweepTarget(config, gpu="sim", sim_url=sim_process.url, pricing=load_pricing(DEFAULT_PRICING))
    stop = threading.Event()
    ran: list[str] = []

    def on_progress(p):
        if p.finished is not None and p.finished.status == "ok":
            ran.append(p.finished.key)
            if len(ran) == 3:
                stop.set()

    first = run_matrix(
        target, loaded, settings, state_path=state_path_for(out_json), on_progress=on_progress, stop_flag=stop
    )
    assert [c.status for c in first].count("ok") == 3
    assert [c.status for c in first].count("exceeds context") == 10
    saved = load_state(state_path_for(out_json), json.loads(state_path_for(out_json).read_text())["fingerprint"])
    assert set(saved.cells) == {c.key for c in first}

    # 2. The command line resumes: it skips the 13 finished cells and runs the last three.
    assert main([*argv, "--resume"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("already done") == 13
    assert "cell 16/16" in captured.err

    report = json.loads(out_json.read_text())
    assert report["kind"] == "matrix" and not report["interrupted"]
    cells = {(c["input_tokens"], c["output_tokens"]): c for c in report["cells"]}
    assert set(cells) == set(grid)
    for (i, o), cell in cells.items():
        result = cell["result"]
        if not fits(i, o):
            assert result["status"] == "exceeds context"
            assert "maximum context length is 48" in result["message"]
            continue
        assert result["status"] == "ok", result["message"]
        outcome = result["outcome"]
        assert outcome["capacity"] in (1, 2)
        assert outcome["capacity_step"]["output_tokens_per_s"] > 0
        assert outcome["capacity_step"]["ttft_p99_ms"] > 0
        assert outcome["capacity_step"]["joules_per_output_token"] > 0
        assert outcome["capacity_step"]["dollars_per_million_output"] > 0
        assert result["lengths"]["actual_input"] == i and result["lengths"]["actual_output"] == o

    # Reproducibility: the profile as loaded with its hash, the seed, the system.
    assert report["profile"]["sha256"] == hashlib.sha256(PROFILE.read_bytes()).hexdigest()
    assert report["profile"]["profile"]["matrix"]["inputs"] == [16, 32, 48, 64]
    assert report["seed"] == 0
    assert report["sysinfo"]["telemetry_source"] == "sim"
    assert report["settings"]["max"] == 2 and report["settings"]["window_s"] == 0.4  # from the profile's [sweep]
    assert "api_key" not in report["run_settings"]

    with out_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == CELL_COLUMNS and len(rows) == 16
    assert sum(r["status"] == "exceeds context" for r in rows) == 10

    assert "token matrix: ceiling per cell" in captured.out
    assert "heatmap: output tok/s at capacity" in captured.out
    assert "heatmap: J per output token" in captured.out
    assert "exceeds context" in captured.out


def test_resume_refuses_a_state_from_other_settings(sim_process, tmp_path):
    loaded = load_profile(str(PROFILE))
    argv = ["sweep", sim_process.url, "--profile", str(PROFILE)]
    settings = settings_from_args(build_parser().parse_args(argv), loaded)
    state = tmp_path / "m.state.json"
    target = SweepTarget(RunConfig(base_url=sim_process.url, model=SIM.model, workers=1))
    stop = threading.Event()
    stop.set()  # nothing runs; an empty state is still written on the first finished cell only
    run_matrix(target, loaded, settings, state_path=state, stop_flag=stop)
    assert not state.exists()
    state.write_text(json.dumps({"format": "wattload-matrix-state", "version": 1, "fingerprint": "x", "cells": {}}))
    with pytest.raises(MatrixError, match="made with another profile"):
        run_matrix(target, loaded, settings, state_path=state, resume=True)
    state.write_text("{not json")
    with pytest.raises(MatrixError, match="not a wattload matrix state file"):
        run_matrix(target, loaded, settings, state_path=state, resume=True)

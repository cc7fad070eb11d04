"""`demo` and `sweep` get what `run` gets, through the one session assembly (engine/session): --input-tokens
calibrated on the server by default (--no-calibrate skips it), and the pricing profile of the detected GPU.

Real loopback HTTP against the simulator; the demo's session is built (not started) exactly as the command
builds it, with its startup notes collected instead of drawn in the dashboard's status line.
"""

from __future__ import annotations

from engine_helpers import SIM_MODEL, sim_server

from engine.sim.model import SimConfig
from tui.cli import build_parser
from tui.commands.demo import open_demo_session

SIM = SimConfig(speed=20.0, seed=4)  # conftest.py sim_url


def demo_args(*extra: str):
    return build_parser().parse_args(["demo", "--workers", "1", *extra])


def test_the_demo_calibrates_its_input_tokens_and_prices_the_simulated_gpu(sim_url):
    notes: list[str] = []
    controller = open_demo_session(demo_args("--input-tokens", "128"), sim_url, SIM_MODEL, notes.append)
    try:
        assert any(n.startswith("input length calibrated on the server: target 128 tokens") for n in notes), notes
        assert any(n.startswith("pricing h100-sxm-rental (matches the detected Simulated H100") for n in notes), notes
        assert controller.config.input_tokens == 128 and controller.config.workload == "synthetic"
    finally:
        controller.close()


def test_the_demo_without_calibration_sends_words(sim_url):
    notes: list[str] = []
    controller = open_demo_session(demo_args("--no-calibrate", "--pricing", "default"), sim_url, SIM_MODEL,
                                   notes.append)
    try:
        assert not any("calibrated" in n for n in notes) and not any(n.startswith("pricing ") for n in notes)
    finally:
        controller.close()


def test_a_flaky_server_leaves_the_demo_uncalibrated_with_one_note():
    """Every probe meets a 500: calibration is a refinement, so the session is built anyway and says why."""
    with sim_server(speed=20.0, error_rate=1.0) as flaky:
        notes: list[str] = []
        controller = open_demo_session(demo_args(), flaky, SIM_MODEL, notes.append)
        controller.close()
    assert [n for n in notes if "calibrat" in n] == [
        next(n for n in notes if n.startswith("input lengths not calibrated (calibration probe failed: HTTP 500"))
    ]

"""The pricing default follows the detected GPU, and a profile for another GPU is called out."""

import json

import pytest
from engine_helpers import sim_server

from engine.pricing import list_pricing, load_pricing
from engine.pricing_match import gpu_family, mismatch, pricing_for_gpu
from tui.cli import main


@pytest.mark.parametrize(
    ("name", "profile"),
    [
        ("NVIDIA H200", "h200-rental"),
        ("NVIDIA H100 80GB HBM3", "h100-sxm-rental"),
        ("Simulated H100 80GB HBM3", "h100-sxm-rental"),
        ("NVIDIA A100-SXM4-80GB", "a100-80gb-rental"),
        ("NVIDIA L40S", "l40s-rental"),
        ("NVIDIA GeForce RTX 4090", None),
    ],
)
def test_the_detected_gpu_picks_its_builtin_profile(name, profile):
    assert pricing_for_gpu(name) == profile
    if profile is not None:
        assert profile in list_pricing()
        assert gpu_family(load_pricing(profile).gpu) == gpu_family(name)  # the profile prices that very GPU


def test_a_profile_for_another_gpu_is_a_one_line_warning():
    warning = mismatch("H100 SXM 80GB", "NVIDIA H200")
    assert warning is not None and "H100 SXM 80GB" in warning and "NVIDIA H200" in warning and "\n" not in warning
    assert mismatch("H200 SXM 141GB", "NVIDIA H200") is None
    assert mismatch("H100 SXM 80GB", "NVIDIA GeForce RTX 4090") is None  # nothing known to compare


@pytest.fixture(scope="module")
def h200_sim():
    with sim_server(speed=20.0, gpu_name="NVIDIA H200") as url:
        yield url


def test_run_prices_by_the_detected_gpu_and_warns_on_a_mismatch(h200_sim, tmp_path, capsys):
    argv = ["run", h200_sim, "--headless", "--workers", "1", "-c", "2", "-n", "4", "--max-tokens", "4",
            "--gpu", "sim", "--no-calibrate"]
    out = tmp_path / "h200.json"
    code = main([*argv, "--json", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "pricing h200-rental (matches the detected NVIDIA H200" in printed.err
    report = json.loads(out.read_text())
    assert report["pricing"] == "h200-rental" and report["result"]["cost"]["profile"] == "h200-rental"
    assert "h200-rental" in printed.out  # the summary's cost line names it

    code = main([*argv, "--pricing", "h100-sxm-rental"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "the pricing profile is for H100 SXM 80GB, but the GPU is NVIDIA H200" in printed.err

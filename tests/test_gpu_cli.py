"""`wattload gpu` and `wattload gpu restore`, through the real CLI entry point."""

import ctypes
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_gpu_powercap import CHILD_TIMEOUT_S, fake_limit_mw, start_capped_child

from engine.gpu import fake as fk
from engine.gpu.fake import FakeNvml, fake_h100
from engine.gpu.statefile import PowerCapState, SavedLimit, write_state
from tui.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_fake_nvml_state(monkeypatch):
    monkeypatch.delenv(fk.ENV_STATE, raising=False)  # the rest of the environment: conftest.py isolated_env


def _nvml_library_present() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


@pytest.mark.skipif(_nvml_library_present(), reason="this machine has an NVIDIA driver")
def test_gpu_without_nvml_prints_one_line_and_exits_0():
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    proc = subprocess.run(
        [sys.executable, "-m", "tui.cli", "gpu"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "no GPU telemetry: NVML library not found\n", "")


def test_gpu_with_nvml_missing_in_process(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(init_error=fk.NVML_ERROR_LIBRARY_NOT_FOUND))
    assert main(["gpu"]) == 0
    assert capsys.readouterr().out == "no GPU telemetry: NVML library not found\n"


def test_gpu_lists_gpus_limits_and_constraints(monkeypatch, capsys, tmp_path):
    gpu_file = tmp_path / "fake.json"
    fake = FakeNvml([fake_h100(0, limit_mw=500_000, clock_events=0x4), fake_h100(1)], state_path=gpu_file)
    fake.save()
    monkeypatch.setenv(fk.ENV_STATE, str(gpu_file))
    assert main(["gpu", "--gpu", "fake", "--gpus", "0"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "GPU telemetry: fake, 1 GPU (NVIDIA H100 80GB HBM3)"
    assert out[1] == "  driver 580.00.00, CUDA 13.0, NVML 13.580.00.00"
    assert out[2] == f"GPU 0  NVIDIA H100 80GB HBM3  {fake.gpus[0].uuid}"
    assert out[3] == "  power limit 500 W (enforced 500 W, default 700 W, settable 200 W to 700 W)"
    assert out[4].startswith("  power 120 W (instant 118 W), energy counter 5000 J, SM 345 MHz")
    assert out[5] == "  clock events: power cap"
    assert not any(line.startswith("GPU 1") for line in out)


def test_gpu_json(monkeypatch, capsys):
    assert main(["gpu", "--gpu", "fake", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["telemetry_source"] == "fake" and info["cuda_driver_version"] == "13.0"
    assert info["gpus"][0]["max_limit_w"] == 700.0 and info["gpus"][0]["persistence_mode"] is True


def test_gpu_list_mentions_caps_left_by_a_killed_run(monkeypatch, capsys, tmp_path):
    write_state(
        tmp_path / "state" / "powercap.json", PowerCapState(source="fake", gpus=[SavedLimit(index=0, limit_w=700)])
    )
    assert main(["gpu", "--backend", "fake"]) == 0
    assert "run `wattload gpu restore`" in capsys.readouterr().out.splitlines()[-1]


def test_restore_after_kill_9_from_the_state_file(monkeypatch, capsys, tmp_path):
    proc, gpu_file, state_file = start_capped_child(tmp_path, "sleep")
    proc.send_signal(signal.SIGKILL)  # no handler, no atexit: only the state file is left
    proc.communicate(timeout=CHILD_TIMEOUT_S)
    assert fake_limit_mw(gpu_file) == 300_000 and state_file.exists()

    monkeypatch.setenv(fk.ENV_STATE, str(gpu_file))  # "the same GPU", as the fake's saved state
    assert main(["gpu", "restore", "--state-file", str(state_file)]) == 0
    assert capsys.readouterr().out == "GPU 0 power cap restored to 700 W, enforced 700 W\n"
    assert fake_limit_mw(gpu_file) == 700_000 and not state_file.exists()


def test_restore_with_nothing_saved(capsys, tmp_path):
    assert main(["gpu", "restore"]) == 0
    assert capsys.readouterr().out.startswith("nothing to restore: no saved power limits in ")


def test_restore_with_a_corrupt_state_file_is_one_line_exit_2(capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"gpus": [{"index": -1, "limit_w": 300}]}')
    assert main(["gpu", "restore", "--state-file", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a wattload power-cap state file" in err and str(bad) in err


def test_restore_that_fails_keeps_the_state_and_exits_1(monkeypatch, capsys, tmp_path):
    gpu_file = tmp_path / "fake.json"
    fake = FakeNvml([fake_h100(0, limit_mw=300_000, set_error=fk.NVML_ERROR_NO_PERMISSION)], state_path=gpu_file)
    fake.save()
    monkeypatch.setenv(fk.ENV_STATE, str(gpu_file))
    state_file = tmp_path / "state" / "powercap.json"
    write_state(
        state_file, PowerCapState(source="fake", gpus=[SavedLimit(index=0, uuid=fake.gpus[0].uuid, limit_w=700)])
    )
    assert main(["gpu", "restore"]) == 1
    err = capsys.readouterr().err
    assert "setting a power cap needs root or CAP_SYS_ADMIN" in err
    assert state_file.exists()


def test_restore_without_any_backend_is_one_line_exit_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml(init_error=fk.NVML_ERROR_LIBRARY_NOT_FOUND))
    write_state(tmp_path / "state" / "powercap.json", PowerCapState(gpus=[SavedLimit(index=0, limit_w=700)]))
    assert main(["gpu", "restore"]) == 2
    assert capsys.readouterr().err == "wattload: cannot restore power caps: no GPU telemetry: NVML library not found\n"

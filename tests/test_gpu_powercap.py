"""Power caps over the fake NVML: clamping, readback, permission errors, and restore on every exit path."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from engine_helpers import wait_for

from engine.gpu import fake as fk
from engine.gpu.base import PowerCapError
from engine.gpu.fake import FakeNvml, fake_h100
from engine.gpu.nvml import open_nvml
from engine.gpu.powercap import PowerCapManager
from engine.gpu.statefile import PowerCapState, SavedLimit, read_state, write_state
from engine.records import EventKind

REPO = Path(__file__).resolve().parents[1]
CHILD_TIMEOUT_S = 30


@pytest.fixture
def fake():
    return FakeNvml([fake_h100(0), fake_h100(1)])


@pytest.fixture
def state(tmp_path):
    return tmp_path / "state" / "powercap.json"


@pytest.fixture
def caps(fake, state):
    backend, message = open_nvml(fake, source="fake")
    assert backend is not None, message
    manager = PowerCapManager(backend, [0, 1], state_file=state)
    yield manager
    manager.close()


def test_set_applies_to_all_selected_gpus_in_watts_and_records_events(caps, fake):
    events = caps.set(450)
    assert [(e.kind, e.gpu_index, e.value, e.readback) for e in events] == [
        (EventKind.POWER_CAP, 0, 450.0, 450.0),
        (EventKind.POWER_CAP, 1, 450.0, 450.0),
    ]
    assert [g.limit_mw for g in fake.gpus] == [450_000, 450_000]  # NVML got milliwatts
    assert events[0].message == "GPU 0 power cap 450 W, enforced 450 W"
    assert caps.changed and caps.originals == {0: 700.0, 1: 700.0}


def test_clamps_to_constraints_and_says_so(caps, fake):
    [low] = caps.set(150, gpu=0)
    assert (low.value, low.readback) == (200.0, 200.0)
    assert "clamped" in low.message and "below the 200 W minimum" in low.message
    [high] = caps.step(+800, gpu=0)
    assert (high.value, high.readback) == (700.0, 700.0)
    assert "above the 700 W maximum" in high.message
    assert fake.gpus[0].set_calls == [200_000, 700_000]


def test_step_moves_each_gpu_from_its_current_limit(caps, fake):
    caps.set(500, gpu=1)
    events = caps.step(-50)
    assert [(e.gpu_index, e.value) for e in events] == [(0, 650.0), (1, 450.0)]
    assert [g.limit_mw for g in fake.gpus] == [650_000, 450_000]


def test_no_change_when_already_there(caps, fake):
    [event] = caps.step(+25, gpu=0)  # already at the 700 W maximum
    assert event.message.startswith("GPU 0 power cap stays at 700 W")
    assert fake.gpus[0].set_calls == [] and not caps.changed


def test_readback_mismatch_is_reported(caps, fake):
    fake.gpus[0].enforce_cap_mw = 300_000  # another limit (e.g. a host-level one) is in force
    [event] = caps.set(450, gpu=0)
    assert (event.value, event.readback) == (450.0, 300.0)
    assert event.message == "GPU 0 power cap 450 W, but the GPU enforces 300 W (another limit is in force)"


def test_permission_error_is_one_clear_line_and_nothing_is_left_behind(caps, fake, state):
    fake.gpus[0].set_error = fk.NVML_ERROR_NO_PERMISSION
    with pytest.raises(PowerCapError) as info:
        caps.set(400, gpu=0)
    assert str(info.value) == "setting a power cap needs root or CAP_SYS_ADMIN"
    assert not caps.changed and not state.exists()
    assert caps.set(400, gpu=1)[0].readback == 400.0  # the app goes on; other GPUs still work


def test_unknown_gpu_is_refused(caps):
    with pytest.raises(PowerCapError, match="GPU 5 is not selected"):
        caps.set(400, gpu=5)


def test_state_file_holds_the_originals_before_the_first_change(caps, fake, state):
    seen = []
    fake.on_set = lambda index, mw: seen.append(read_state(state))
    caps.set(400, gpu=0)
    saved = seen[0]
    assert saved is not None and saved.source == "fake"
    assert [(g.index, g.uuid, g.limit_w) for g in saved.gpus] == [(0, fake.gpus[0].uuid, 700.0)]
    caps.set(300, gpu=0)  # a second change keeps the first original
    assert [g.limit_w for g in read_state(state).gpus] == [700.0]


def test_restore_all_puts_limits_back_and_removes_the_state_file(caps, fake, state):
    caps.set(300)
    events = caps.restore_all()
    assert [(e.kind, e.gpu_index, e.value, e.readback) for e in events] == [
        (EventKind.POWER_CAP, 0, 700.0, 700.0),
        (EventKind.POWER_CAP, 1, 700.0, 700.0),
    ]
    assert events[0].message == "GPU 0 power cap restored to 700 W, enforced 700 W"
    assert [g.limit_mw for g in fake.gpus] == [700_000, 700_000]
    assert not caps.changed and not state.exists()


def test_restore_on_an_exception_through_with(fake, state):
    backend, _ = open_nvml(fake, source="fake")
    with pytest.raises(RuntimeError), PowerCapManager(backend, [0], state_file=state) as caps:
        caps.set(250)
        raise RuntimeError("the run crashed")
    assert fake.gpus[0].limit_mw == 700_000 and not state.exists()


def test_keep_leaves_the_caps_and_forgets_the_originals(caps, fake, state):
    caps.set(350, gpu=0)
    caps.keep()
    assert not caps.changed and not state.exists()
    assert caps.close() == []
    assert fake.gpus[0].limit_mw == 350_000


def test_a_failed_restore_keeps_the_state_for_gpu_restore(caps, fake, state):
    caps.set(350, gpu=0)
    fake.gpus[0].set_error = fk.NVML_ERROR_NO_PERMISSION
    [event] = caps.restore_all()
    assert event.kind == EventKind.ERROR and "wattload gpu restore" in event.message
    assert caps.changed and [g.limit_w for g in read_state(state).gpus] == [700.0]


def test_limits_left_by_a_killed_run_are_the_originals(fake, state):
    fake.gpus[0].limit_mw = 400_000  # a killed run left GPU 0 capped
    write_state(state, PowerCapState(source="fake", gpus=[SavedLimit(index=0, uuid=fake.gpus[0].uuid, limit_w=650)]))
    backend, _ = open_nvml(fake, source="fake")
    caps = PowerCapManager(backend, [0, 1], state_file=state)
    assert "earlier run" in caps.warning
    caps.set(300)
    assert caps.originals == {0: 650.0, 1: 700.0}
    caps.close()
    assert [g.limit_mw for g in fake.gpus] == [650_000, 700_000]
    assert not state.exists()


def test_a_corrupt_state_file_is_reported_not_fatal(fake, state):
    state.parent.mkdir(parents=True)
    state.write_text("{not json")
    backend, _ = open_nvml(fake, source="fake")
    caps = PowerCapManager(backend, [0], state_file=state)
    assert caps.warning.startswith("ignoring a corrupt power-cap state file")
    caps.set(300)
    caps.close()
    assert fake.gpus[0].limit_mw == 700_000


def test_default_state_file_honours_wattload_state_dir(monkeypatch, tmp_path, fake):
    monkeypatch.setenv("WATTLOAD_STATE_DIR", str(tmp_path / "st"))
    backend, _ = open_nvml(fake, source="fake")
    caps = PowerCapManager(backend, [0])
    assert caps.state_file == tmp_path / "st" / "powercap.json"
    caps.set(300)
    assert caps.state_file.exists()
    caps.close()
    assert not caps.state_file.exists()


# -- exit paths in a real child process (the fake GPU's state is a file, so it outlives the child) -------------

CHILD = textwrap.dedent(
    """
    import pathlib, signal, sys, time
    from engine.gpu.fake import FakeNvml
    from engine.gpu.nvml import open_nvml
    from engine.gpu.powercap import PowerCapManager

    gpu_file, state_file, mode = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
    if mode == "chain":
        def previous(signum, frame):
            pathlib.Path(sys.argv[4]).write_text("previous handler ran")
            sys.exit(3)
        signal.signal(signal.SIGTERM, previous)
    backend, _ = open_nvml(FakeNvml.load(gpu_file), source="fake")
    caps = PowerCapManager(backend, [0], state_file=state_file)
    caps.set(300)
    if mode == "exit":
        sys.exit(0)  # no explicit restore: atexit must do it
    print("capped", flush=True)
    time.sleep(float(sys.argv[-1]))
    """
)


def start_capped_child(tmp_path: Path, mode: str, *extra: str) -> tuple[subprocess.Popen, Path, Path]:
    """A child process that caps the fake GPU to 300 W; returns once the cap is on (bounded wait)."""
    gpu_file, state_file = tmp_path / "fake_gpu.json", tmp_path / "powercap.json"
    FakeNvml.load(gpu_file)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    args = [str(gpu_file), str(state_file), mode, *extra, str(CHILD_TIMEOUT_S)]
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if mode == "exit":
        return proc, gpu_file, state_file

    def capped() -> bool:
        return fake_limit_mw(gpu_file) == 300_000 and state_file.exists()

    with contextlib.suppress(AssertionError):  # timed out: said below, with the child's stderr
        wait_for(lambda: capped() or proc.poll() is not None, CHILD_TIMEOUT_S, "the child to cap the fake GPU")
    if capped() and proc.poll() is None:
        return proc, gpu_file, state_file
    proc.kill()
    _, err = proc.communicate(timeout=CHILD_TIMEOUT_S)
    pytest.fail(f"child never capped the fake GPU: {err[-2000:]}")


def fake_limit_mw(gpu_file: Path) -> int:
    return json.loads(gpu_file.read_text())["gpus"][0]["limit_mw"]


def test_atexit_restores_on_a_normal_exit(tmp_path):
    proc, gpu_file, state_file = start_capped_child(tmp_path, "exit")
    _, err = proc.communicate(timeout=CHILD_TIMEOUT_S)
    assert proc.returncode == 0, err
    assert FakeNvml.load(gpu_file).gpus[0].set_calls == [300_000, 700_000]
    assert fake_limit_mw(gpu_file) == 700_000 and not state_file.exists()


def test_sigterm_restores_then_dies_by_the_signal(tmp_path):
    proc, gpu_file, state_file = start_capped_child(tmp_path, "sleep")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=CHILD_TIMEOUT_S)
    assert proc.returncode == -signal.SIGTERM  # the default action still happened after the restore
    assert fake_limit_mw(gpu_file) == 700_000 and not state_file.exists()


def test_sigterm_restores_and_chains_the_previous_handler(tmp_path):
    marker = tmp_path / "marker"
    proc, gpu_file, state_file = start_capped_child(tmp_path, "chain", str(marker))
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=CHILD_TIMEOUT_S)
    assert proc.returncode == 3
    assert marker.read_text() == "previous handler ran"
    assert fake_limit_mw(gpu_file) == 700_000 and not state_file.exists()


def test_one_gpu_failing_does_not_hide_the_change_to_the_other(caps, fake):
    fake.gpus[1].set_error = fk.NVML_ERROR_NO_PERMISSION
    ok, failed = caps.step(-100)
    assert (ok.kind, ok.gpu_index, ok.readback) == (EventKind.POWER_CAP, 0, 600.0)
    assert (failed.kind, failed.gpu_index) == (EventKind.ERROR, 1)
    assert failed.message == "GPU 1: setting a power cap needs root or CAP_SYS_ADMIN"
    assert caps.originals == {0: 700.0}

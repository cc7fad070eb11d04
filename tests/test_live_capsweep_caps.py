"""The `w` key's caps (tui/live_capsweep.py default_caps), from the first GPU's limits: no server needed, so the
live sweep test in test_tui_live.py can hold a narrow range of three caps and still the 8-cap rule is checked."""

from tui_canned import session_snapshot

from engine.snapshot import GpuStats
from tui.live_capsweep import default_caps


def with_limits(min_w: float, max_w: float):
    snap = session_snapshot(1)
    gpu = snap.gpu.gpus[0].model_copy(update={"min_limit_w": min_w, "max_limit_w": max_w})
    return snap.model_copy(update={"gpu": snap.gpu.model_copy(update={"gpus": (gpu,)})})


def test_eight_caps_from_the_maximum_down_to_forty_percent_rounded_to_25_w():
    assert default_caps(with_limits(200, 700)) == [700, 650, 575, 525, 450, 400, 350, 275]


def test_a_minimum_above_forty_percent_is_the_floor_and_equal_roundings_merge():
    assert default_caps(with_limits(650, 700)) == [700, 675, 650]


def test_no_gpu_limits_means_no_sweep():
    assert default_caps(session_snapshot(1, gpu=False)) == []
    assert default_caps(session_snapshot(1).model_copy(update={"gpu": GpuStats()})) == []

"""System metadata: what a measurement was taken on; collecting it never raises."""

import platform

from engine import __version__
from engine.gpu.fake import FakeNvml, fake_h100
from engine.gpu.nvml import open_nvml
from engine.sysinfo import SystemInfo, collect_sysinfo


def test_sysinfo_from_the_fake_nvml(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    fake = FakeNvml([fake_h100(0, limit_mw=450_000, persistence=0), fake_h100(1)], driver_version="580.159.04")
    backend, _ = open_nvml(fake, source="fake")
    info = collect_sysinfo(backend)
    assert (info.driver_version, info.cuda_driver_version, info.nvml_version) == ("580.159.04", "13.0", "13.580.159.04")
    assert info.telemetry_source == "fake" and info.wattload_version == __version__
    assert info.python == platform.python_version() and info.hostname and info.os
    g0, g1 = info.gpus
    assert (g0.index, g0.uuid, g0.power_limit_w, g0.default_limit_w, g0.min_limit_w, g0.max_limit_w) == (
        0,
        fake.gpus[0].uuid,
        450.0,
        700.0,
        200.0,
        700.0,
    )
    assert g0.persistence_mode is False and g1.persistence_mode is True
    assert SystemInfo.model_validate_json(info.model_dump_json()) == info  # round-trips for recordings


def test_sysinfo_without_a_backend():
    info = collect_sysinfo(None)
    assert info.gpus == [] and info.driver_version is None and info.telemetry_source is None


def test_sysinfo_never_raises_on_a_broken_backend(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    backend, _ = open_nvml(FakeNvml(), source="fake")

    def broken(*args):
        raise RuntimeError("GPU fell off the bus")

    backend.driver_info = broken
    backend.power_limits = broken
    backend.persistence_mode = broken
    info = collect_sysinfo(backend)
    assert info.driver_version is None
    assert [(g.index, g.power_limit_w, g.persistence_mode) for g in info.gpus] == [(0, None, None)]

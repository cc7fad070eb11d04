"""The NVML backend over the fake NVML module: field mapping, n/a handling, GPU selection, missing driver."""

import ctypes

import pytest

from engine.gpu import fake as fk
from engine.gpu import open_backend
from engine.gpu.base import select_gpus
from engine.gpu.fake import FakeNvml, fake_h100
from engine.gpu.nvml import NvmlBackend, clock_event_labels, open_nvml

MIB = 1024 * 1024


def _open(fake, gpus=None) -> NvmlBackend:
    backend, message = open_nvml(fake, gpus=gpus, source="fake")
    assert backend is not None, message
    return backend


def test_sample_maps_every_field_with_units_converted():
    fake = FakeNvml(
        [
            fake_h100(
                0,
                power_mw=645_123,
                instant_mw=651_500,
                energy_mj=123_456_789,
                sm_clock_mhz=1755,
                mem_clock_mhz=2619,
                temperature_c=67,
                util_gpu=98,
                util_mem=41,
                mem_used_bytes=40_000 * MIB,
                limit_mw=650_000,
                default_mw=700_000,
                min_mw=200_000,
                max_mw=700_000,
                clock_events=0x4,
            )
        ]
    )
    backend = _open(fake)
    [s] = backend.read([0])
    assert (s.gpu_index, s.power_w, s.power_instant_w, s.energy_mj) == (0, 645.123, 651.5, 123_456_789)
    assert (s.sm_clock_mhz, s.mem_clock_mhz, s.temperature_c) == (1755, 2619, 67)
    assert (s.util_gpu_pct, s.util_mem_pct, s.mem_used_mib, s.mem_total_mib) == (98, 41, 40_000, 81_559)
    assert (s.power_limit_w, s.enforced_limit_w, s.default_limit_w) == (650.0, 650.0, 700.0)
    assert (s.min_limit_w, s.max_limit_w) == (200.0, 700.0)
    assert s.throttle_reasons == 0x4 and s.power_cap_binding is True
    assert s.t_ns > 0


def test_power_cap_binding_false_when_only_idle_bit_set():
    [s] = _open(FakeNvml([fake_h100(0, clock_events=0x1)])).read([0])
    assert s.throttle_reasons == 0x1 and s.power_cap_binding is False


class CountingFake(FakeNvml):
    """Counts calls per NVML function, to prove an unsupported query is not asked again."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.calls: dict[str, int] = {}

    def __getattribute__(self, name):
        attr = object.__getattribute__(self, name)
        if not name.startswith("nvmlDevice"):
            return attr
        calls = object.__getattribute__(self, "calls")

        def counted(*args):
            calls[name] = calls.get(name, 0) + 1
            return attr(*args)

        return counted


def test_unsupported_fields_are_none_and_asked_only_once():
    gone = [
        "nvmlDeviceGetTotalEnergyConsumption",
        "nvmlDeviceGetTemperature",
        "nvmlDeviceGetUtilizationRates",
        "nvmlDeviceGetCurrentClocksEventReasons",
        "nvmlDeviceGetCurrentClocksThrottleReasons",
        "nvmlDeviceGetPowerManagementLimitConstraints",
        "nvmlDeviceGetEnforcedPowerLimit",
    ]
    fake = CountingFake([fake_h100(0, instant_mw=None, unsupported=gone)])
    backend = _open(fake)
    for _ in range(3):
        [s] = backend.read([0])
    assert s.energy_mj is None and s.temperature_c is None and s.util_gpu_pct is None
    assert s.throttle_reasons is None and s.power_cap_binding is None
    assert s.min_limit_w is None and s.max_limit_w is None and s.enforced_limit_w is None
    assert s.power_instant_w is None
    assert s.power_w == 120.0  # what is supported still reads
    assert fake.calls["nvmlDeviceGetTemperature"] == 1
    assert fake.calls["nvmlDeviceGetTotalEnergyConsumption"] == 1
    assert fake.calls["nvmlDeviceGetFieldValues"] == 1  # instant power: field answered NOT_SUPPORTED once
    assert fake.calls["nvmlDeviceGetPowerUsage"] == 3


def test_transient_errors_read_as_none_and_are_asked_again():
    class LostPower(CountingFake):
        def nvmlDeviceGetPowerUsage(self, h):
            raise fk.NVMLError(15)  # GPU_IS_LOST: not "unsupported", so the next sample asks again

    fake = LostPower()
    backend = _open(fake)
    samples = [backend.read([0])[0] for _ in range(2)]
    assert [s.power_w for s in samples] == [None, None]
    assert samples[-1].energy_mj == 5_000_000
    assert fake.calls["nvmlDeviceGetPowerUsage"] == 2


def test_older_throttle_reasons_call_is_used_when_clock_events_call_is_missing():
    fake = FakeNvml([fake_h100(0, clock_events=0x4, unsupported=["nvmlDeviceGetCurrentClocksEventReasons"])])
    [s] = _open(fake).read([0])
    assert s.throttle_reasons == 0x4 and s.power_cap_binding is True


def test_byte_strings_from_older_pynvml_are_decoded():
    class BytesFake(FakeNvml):
        def nvmlDeviceGetName(self, h):
            return b"NVIDIA A100-SXM4-80GB"

    backend = _open(BytesFake())
    assert backend.gpus()[0].name == "NVIDIA A100-SXM4-80GB"


def test_clock_event_labels():
    assert clock_event_labels(0x5) == ["idle", "power cap"]
    assert clock_event_labels(0) == []
    assert clock_event_labels(None) == []
    assert clock_event_labels(0x4 | 0x10000) == ["power cap", "0x10000"]


def test_select_gpus_by_index_uuid_prefix_and_cuda_visible_devices(monkeypatch):
    fake = FakeNvml([fake_h100(i) for i in range(3)])
    assert [g.index for g in _open(fake, "2,0").gpus()] == [2, 0]
    assert [g.index for g in _open(fake, "GPU-f00d0001").gpus()] == [1]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert [g.index for g in _open(fake).gpus()] == [1]
    assert [g.index for g in _open(fake, "all").gpus()] == [0, 1, 2]  # restore must reach every GPU
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-f00d0002-0000-4000-8000-000000000000,0")
    assert [g.index for g in _open(fake).gpus()] == [2, 0]


def test_bad_selection_gives_one_line_and_no_backend(monkeypatch):
    fake = FakeNvml([fake_h100(i) for i in range(2)])
    backend, message = open_nvml(fake, gpus="7")
    assert backend is None
    assert message == "no GPU telemetry: --gpus: no GPU matches '7' (GPUs: 0,1)"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    backend, message = open_nvml(fake)
    assert backend is None and message.startswith("no GPU telemetry: no GPU selected")
    assert fake.initialised == 0  # every failed open shut NVML down again


def test_ambiguous_uuid_prefix_matches_nothing():
    gpus = _open(FakeNvml([fake_h100(i) for i in range(2)]), "all").gpus()
    with pytest.raises(ValueError, match="no GPU matches 'GPU-f00d'"):
        select_gpus(gpus, "GPU-f00d", env={})


@pytest.mark.parametrize(
    ("code", "line"),
    [
        (fk.NVML_ERROR_LIBRARY_NOT_FOUND, "no GPU telemetry: NVML library not found"),
        (9, "no GPU telemetry: NVIDIA driver not loaded"),
    ],
)
def test_missing_library_or_driver_gives_one_line(code, line):
    assert open_nvml(FakeNvml(init_error=code)) == (None, line)


def test_no_gpus_at_all():
    assert open_nvml(FakeNvml([])) == (None, "no GPU telemetry: no NVIDIA GPU found")


def _nvml_library_present() -> bool:
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


@pytest.mark.skipif(_nvml_library_present(), reason="this machine has an NVIDIA driver")
def test_real_pynvml_without_driver_gives_one_line():
    assert open_backend("auto") == (None, "no GPU telemetry: NVML library not found")


def test_open_backend_kinds_that_give_no_backend():
    assert open_backend("none") == (None, "no GPU telemetry: disabled")
    assert open_backend("sim") == (None, "no GPU telemetry: the sim backend needs the server's URL")
    backend, message = open_backend("dcgm")
    assert backend is None and message.startswith("no GPU telemetry: unknown backend 'dcgm'")


def test_open_backend_fake_uses_the_nvml_code_path(monkeypatch):
    monkeypatch.delenv(fk.ENV_STATE, raising=False)
    backend, message = open_backend("fake")
    assert isinstance(backend, NvmlBackend)
    assert message == "GPU telemetry: fake, 1 GPU (NVIDIA H100 80GB HBM3)"
    backend.close()


def test_driver_info_and_persistence_mode():
    backend = _open(FakeNvml(driver_version="580.159.04", cuda_version=12080))
    info = backend.driver_info()
    assert (info.driver_version, info.cuda_driver_version, info.nvml_version) == ("580.159.04", "12.8", "13.580.159.04")
    assert backend.persistence_mode(0) is True


def test_power_limits_read_back_enforced_separately():
    backend = _open(FakeNvml([fake_h100(0, limit_mw=450_000, enforce_cap_mw=300_000)]))
    limits = backend.power_limits(0)
    assert (limits.current_w, limits.enforced_w, limits.default_w, limits.min_w, limits.max_w) == (
        450.0,
        300.0,
        700.0,
        200.0,
        700.0,
    )

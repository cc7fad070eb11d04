"""The NVML backend: every reading and every power-limit change goes through one injected ``pynvml``-like module.

Tests inject ``engine.gpu.fake.FakeNvml`` instead of ``pynvml``, so this file's code path is exactly what they
exercise. Every query is wrapped: an ``NVMLError`` (NOT_SUPPORTED, NO_PERMISSION, GPU_IS_LOST, ...) becomes
``None`` (shown as n/a), never an exception; a query that answered NOT_SUPPORTED once is not asked again, so a
sample stays cheap. Static facts (name, UUID, constraints, default limit) are read once at open.

Cost (H100, tests/bench/nvml_call_cost.py): one sample of one GPU takes ~3 ms, almost all of it the energy counter
read (median 2.8 ms, p99 15 ms); every other query takes 1-150 µs. So a sample's stamp is the midpoint of the
energy call, and 10 Hz over 8 GPUs stays under a third of one thread (ctypes releases the GIL meanwhile).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from engine.gpu.base import (
    NO_TELEMETRY,
    DriverInfo,
    GpuInfo,
    GpuSelectionError,
    PowerCapError,
    PowerLimits,
    describe,
    select_gpus,
)
from engine.records import TelemetrySample

MIB = 1024 * 1024

# NVML return codes (stable across NVML versions; copied so a module without them still maps cleanly).
_NOT_SUPPORTED = 3
_NO_PERMISSION = 4
_INVALID_ARGUMENT = 2
_DRIVER_NOT_LOADED = 9
_LIBRARY_NOT_FOUND = 12
_FUNCTION_NOT_FOUND = 13
_GPU_IS_LOST = 15
_SW_POWER_CAP_BIT = 0x4  # nvmlClocksEventReasonSwPowerCap

_INIT_MESSAGES = {
    _LIBRARY_NOT_FOUND: "NVML library not found",
    _DRIVER_NOT_LOADED: "NVIDIA driver not loaded",
    _NO_PERMISSION: "no permission to open NVML",
    _GPU_IS_LOST: "a GPU has fallen off the bus",
}

# Clock-event (throttle) reason bits -> short labels (nvmlClocksEventReason*).
CLOCK_EVENT_REASONS: dict[int, str] = {
    0x1: "idle",
    0x2: "app clocks",
    0x4: "power cap",
    0x8: "HW slowdown",
    0x10: "sync boost",
    0x20: "SW thermal",
    0x40: "HW thermal",
    0x80: "power brake",
    0x100: "display clocks",
}


def clock_event_labels(mask: int | None) -> list[str]:
    """Readable labels for a clock-event bitmask ("power cap" means the SW power cap is binding)."""
    if mask is None:
        return []
    labels = [label for bit, label in CLOCK_EVENT_REASONS.items() if mask & bit]
    unknown = mask & ~sum(CLOCK_EVENT_REASONS)
    if unknown:
        labels.append(f"0x{unknown:x}")
    return labels


def _error_code(exc: BaseException) -> int | None:
    return getattr(exc, "value", None)


def _to_str(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _field_value(field: Any) -> float | None:
    """Decode one nvmlFieldValue_t by its valueType; None when that field failed on this GPU."""
    if getattr(field, "nvmlReturn", 1) != 0:
        return None
    attr = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}.get(field.valueType)
    return None if attr is None else float(getattr(field.value, attr))


class NvmlBackend:
    """Telemetry and power limits of the selected GPUs through an NVML module (``pynvml`` or the fake)."""

    def __init__(self, nvml: Any, *, gpus: str | None = None, source: str = "nvml") -> None:
        """``nvml`` must be initialised by the caller (``open_nvml`` does it); raises GpuSelectionError."""
        self._nv = nvml
        self._source = source
        self._lock = threading.RLock()  # shared by the sampler and control threads; re-entrant for signal handlers
        self._unsupported: set[tuple[int, str]] = set()
        self._handles: dict[int, Any] = {}
        available: list[GpuInfo] = []
        for index in range(int(nvml.nvmlDeviceGetCount())):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            self._handles[index] = handle
            name = self._query(index, "name", nvml.nvmlDeviceGetName, handle)
            uuid = self._query(index, "uuid", nvml.nvmlDeviceGetUUID, handle)
            available.append(GpuInfo(index, _to_str(name) if name else f"GPU {index}", _to_str(uuid) if uuid else None))
        self.available = available  # every GPU NVML lists, selected or not
        self._gpus = select_gpus(available, gpus)
        self._static: dict[int, PowerLimits] = {g.index: self._read_static_limits(g.index) for g in self._gpus}
        self._fi_instant = getattr(nvml, "NVML_FI_DEV_POWER_INSTANT", 186)
        self._clock_sm = getattr(nvml, "NVML_CLOCK_SM", 1)
        self._clock_mem = getattr(nvml, "NVML_CLOCK_MEM", 2)
        self._temp_gpu = getattr(nvml, "NVML_TEMPERATURE_GPU", 0)

    # -- the GpuBackend protocol -------------------------------------------------------------------------------

    @property
    def source(self) -> str:
        return self._source

    def gpus(self) -> list[GpuInfo]:
        return list(self._gpus)

    def read(self, indices: Sequence[int]) -> list[TelemetrySample]:
        """One sample per GPU, all queries for all GPUs in one pass (one lock, no interleaving with a set)."""
        with self._lock:
            return [self._read_one(i) for i in indices if i in self._handles]

    def power_limits(self, index: int) -> PowerLimits:
        static = self._static.get(index) or self._read_static_limits(index)
        with self._lock:
            h = self._handles[index]
            current = self._milli(index, "limit", self._nv.nvmlDeviceGetPowerManagementLimit, h)
            enforced = self._milli(index, "enforced", self._nv.nvmlDeviceGetEnforcedPowerLimit, h)
        return PowerLimits(current, enforced, static.default_w, static.min_w, static.max_w)

    def set_power_limit(self, index: int, watts: float) -> None:
        """Set the limit in watts (NVML takes milliwatts). Raises PowerCapError with one line."""
        if index not in self._handles:
            raise PowerCapError(f"GPU {index} is not selected")
        milliwatts = round(watts * 1000)
        try:
            with self._lock:
                self._nv.nvmlDeviceSetPowerManagementLimit(self._handles[index], milliwatts)
        except Exception as exc:
            code = _error_code(exc)
            if code == _NO_PERMISSION:
                raise PowerCapError("setting a power cap needs root or CAP_SYS_ADMIN") from None
            if code == _NOT_SUPPORTED:
                raise PowerCapError(f"GPU {index} does not support setting a power limit") from None
            if code == _INVALID_ARGUMENT:
                raise PowerCapError(f"GPU {index} refused a power limit of {watts:.0f} W (out of range)") from None
            raise PowerCapError(f"setting the power limit of GPU {index} failed: {exc}".splitlines()[0]) from None

    def persistence_mode(self, index: int) -> bool | None:
        with self._lock:
            mode = self._query(index, "persistence", self._nv.nvmlDeviceGetPersistenceMode, self._handles[index])
        return None if mode is None else bool(mode)

    def driver_info(self) -> DriverInfo:
        nv = self._nv
        with self._lock:
            driver = self._query(-1, "driver", nv.nvmlSystemGetDriverVersion)
            cuda = self._query(-1, "cuda", nv.nvmlSystemGetCudaDriverVersion)
            version = self._query(-1, "nvml", nv.nvmlSystemGetNVMLVersion)
        cuda_s = f"{int(cuda) // 1000}.{int(cuda) % 1000 // 10}" if isinstance(cuda, int) else None
        return DriverInfo(_to_str(driver) if driver else None, cuda_s, _to_str(version) if version else None)

    def close(self) -> None:
        try:
            self._nv.nvmlShutdown()
        except Exception:  # shutting down twice, or a lost GPU: nothing left to release
            pass

    # -- internals ---------------------------------------------------------------------------------------------

    def _query(self, index: int, key: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Call one NVML function; any NVML error -> None. NOT_SUPPORTED is remembered and never asked again."""
        if (index, key) in self._unsupported:
            return None
        try:
            return fn(*args)
        except Exception as exc:
            if _error_code(exc) in (_NOT_SUPPORTED, _FUNCTION_NOT_FOUND) or isinstance(exc, AttributeError):
                self._unsupported.add((index, key))
            return None

    def _milli(self, index: int, key: str, fn: Callable[..., Any], *args: Any) -> float | None:
        value = self._query(index, key, fn, *args)
        return None if value is None else value / 1000.0

    def _read_static_limits(self, index: int) -> PowerLimits:
        h = self._handles[index]
        nv = self._nv
        default = self._milli(index, "default", nv.nvmlDeviceGetPowerManagementDefaultLimit, h)
        constraints = self._query(index, "constraints", nv.nvmlDeviceGetPowerManagementLimitConstraints, h)
        lo, hi = (c / 1000.0 for c in constraints) if constraints else (None, None)
        return PowerLimits(default_w=default, min_w=lo, max_w=hi)

    def _clock_events(self, index: int, handle: Any) -> int | None:
        """Clock-event reasons (the newer name), else the older throttle-reasons call of the same bitmask."""
        for key, name in (
            ("events", "nvmlDeviceGetCurrentClocksEventReasons"),
            ("throttle", "nvmlDeviceGetCurrentClocksThrottleReasons"),
        ):
            fn = getattr(self._nv, name, None)
            if fn is None:
                self._unsupported.add((index, key))
                continue
            mask = self._query(index, key, fn, handle)
            if mask is not None:
                return int(mask)
        return None

    def _instant_power(self, index: int, handle: Any) -> float | None:
        values = self._query(index, "instant", self._nv.nvmlDeviceGetFieldValues, handle, [self._fi_instant])
        if not values:
            return None
        milliwatts = _field_value(values[0])
        if milliwatts is None:
            self._unsupported.add((index, "instant"))
            return None
        return milliwatts / 1000.0

    def _read_one(self, index: int) -> TelemetrySample:
        nv, h = self._nv, self._handles[index]
        static = self._static.get(index, PowerLimits())
        # Stamp the energy counter tightly: Δenergy/Δt is only as true as the time each reading was taken at.
        t0 = time.perf_counter_ns()
        energy = self._query(index, "energy", nv.nvmlDeviceGetTotalEnergyConsumption, h)
        t1 = time.perf_counter_ns()
        power = self._milli(index, "power", nv.nvmlDeviceGetPowerUsage, h)
        util = self._query(index, "util", nv.nvmlDeviceGetUtilizationRates, h)
        mem = self._query(index, "memory", nv.nvmlDeviceGetMemoryInfo, h)
        events = self._clock_events(index, h)
        return TelemetrySample(
            t_ns=(t0 + t1) // 2,
            gpu_index=index,
            power_w=power,
            power_instant_w=self._instant_power(index, h),
            energy_mj=None if energy is None else int(energy),
            sm_clock_mhz=self._query(index, "sm_clock", nv.nvmlDeviceGetClockInfo, h, self._clock_sm),
            mem_clock_mhz=self._query(index, "mem_clock", nv.nvmlDeviceGetClockInfo, h, self._clock_mem),
            temperature_c=self._query(index, "temperature", nv.nvmlDeviceGetTemperature, h, self._temp_gpu),
            util_gpu_pct=None if util is None else int(util.gpu),
            util_mem_pct=None if util is None else int(util.memory),
            mem_used_mib=None if mem is None else int(mem.used) // MIB,
            mem_total_mib=None if mem is None else int(mem.total) // MIB,
            power_limit_w=self._milli(index, "limit", nv.nvmlDeviceGetPowerManagementLimit, h),
            enforced_limit_w=self._milli(index, "enforced", nv.nvmlDeviceGetEnforcedPowerLimit, h),
            default_limit_w=static.default_w,
            min_limit_w=static.min_w,
            max_limit_w=static.max_w,
            throttle_reasons=events,
            power_cap_binding=None if events is None else bool(events & _SW_POWER_CAP_BIT),
        )


def open_nvml(nvml: Any = None, *, gpus: str | None = None, source: str = "nvml") -> tuple[NvmlBackend | None, str]:
    """Initialise NVML (``pynvml`` unless a module is injected) and select GPUs; never raises."""
    if nvml is None:
        try:
            import pynvml
        except ImportError:
            return None, f"{NO_TELEMETRY}: nvidia-ml-py is not installed"
        nvml = pynvml
    try:
        nvml.nvmlInit()
    except Exception as exc:
        reason = _INIT_MESSAGES.get(_error_code(exc) or -1) or f"NVML failed to start: {exc}".splitlines()[0]
        return None, f"{NO_TELEMETRY}: {reason}"
    try:
        backend = NvmlBackend(nvml, gpus=gpus, source=source)
    except GpuSelectionError as exc:
        _shutdown(nvml)
        return None, f"{NO_TELEMETRY}: {exc}"
    except Exception as exc:  # enumeration failed (GPU lost mid-way, ...): report, do not crash the run
        _shutdown(nvml)
        return None, f"{NO_TELEMETRY}: NVML could not list the GPUs: {exc}".splitlines()[0]
    if not backend.gpus():
        backend.close()
        why = "no NVIDIA GPU found" if not backend.available else "no GPU selected (see --gpus / CUDA_VISIBLE_DEVICES)"
        return None, f"{NO_TELEMETRY}: {why}"
    return backend, describe(backend)


def _shutdown(nvml: Any) -> None:
    try:
        nvml.nvmlShutdown()
    except Exception:
        pass

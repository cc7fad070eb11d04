"""An in-memory stand-in for the ``pynvml`` module, for tests and demos only (the hardware boundary).

It offers the same function names, return shapes and ``NVMLError`` codes as ``pynvml`` for every call wattload
makes, so ``NvmlBackend`` runs its real code path over it. Tests steer it: advance the energy counter, reset it,
mark functions NOT_SUPPORTED, refuse a limit with NO_PERMISSION, or enforce less than was asked (readback
mismatch). With a ``state_path`` the GPUs' state is saved after every limit change, so a child process's caps
outlive the process, as a real GPU's do (that is what the SIGTERM and kill -9 tests rely on).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pynvml import NVMLError  # the real exception class (nvidia-ml-py is a dependency): callers catch this type

ENV_STATE = "WATTLOAD_FAKE_NVML"

NVML_SUCCESS = 0
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_VALUE_TYPE_UNSIGNED_INT = 1


@dataclass
class FakeGpu:
    """One fake GPU's state; units as NVML reports them (mW, mJ, bytes)."""

    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = "GPU-f00d0000-0000-4000-8000-000000000000"
    power_mw: int = 120_000
    instant_mw: int | None = 118_000
    energy_mj: int = 5_000_000
    sm_clock_mhz: int = 345
    mem_clock_mhz: int = 2619
    temperature_c: int = 34
    util_gpu: int = 0
    util_mem: int = 0
    mem_used_bytes: int = 512 * 1024 * 1024
    mem_total_bytes: int = 81_559 * 1024 * 1024
    limit_mw: int = 700_000
    default_mw: int = 700_000
    min_mw: int = 200_000
    max_mw: int = 700_000
    enforce_cap_mw: int | None = None  # another limit in force: enforced = min(limit, this) (readback mismatch)
    clock_events: int = 0x1  # idle
    persistence: int = 1
    unsupported: list[str] = field(default_factory=list)  # NVML function names that raise NOT_SUPPORTED
    set_error: int | None = None  # an NVML error code that nvmlDeviceSetPowerManagementLimit raises
    set_calls: list[int] = field(default_factory=list)  # every limit requested, in mW


def fake_h100(index: int = 0, **overrides: Any) -> FakeGpu:
    """A fake H100 SXM with a distinct UUID per index."""
    return FakeGpu(uuid=f"GPU-f00d{index:04d}-0000-4000-8000-000000000000", **overrides)


@dataclass
class _Value:
    uiVal: int = 0
    dVal: float = 0.0
    ulVal: int = 0
    ullVal: int = 0
    sllVal: int = 0
    siVal: int = 0
    usVal: int = 0


@dataclass
class _FieldValue:
    fieldId: int
    nvmlReturn: int
    valueType: int = NVML_VALUE_TYPE_UNSIGNED_INT
    value: _Value = field(default_factory=_Value)


@dataclass
class _Memory:
    total: int
    free: int
    used: int


@dataclass
class _Utilization:
    gpu: int
    memory: int


@dataclass(frozen=True)
class _Handle:
    index: int


class FakeNvml:
    """Duck-types the parts of ``pynvml`` that ``NvmlBackend`` calls."""

    NVMLError = NVMLError
    NVML_FI_DEV_POWER_INSTANT = 186
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0
    nvmlClocksEventReasonSwPowerCap = 0x4

    def __init__(
        self,
        gpus: list[FakeGpu] | None = None,
        *,
        state_path: Path | None = None,
        init_error: int | None = None,
        driver_version: str = "580.00.00",
        cuda_version: int = 13000,
    ) -> None:
        self.gpus: list[FakeGpu] = gpus if gpus is not None else [fake_h100(0)]
        self.state_path = state_path
        self.init_error = init_error
        self.driver_version = driver_version
        self.cuda_version = cuda_version
        self.initialised = 0
        self.on_set: Callable[[int, int], None] | None = None  # test hook, called before a limit is applied
        self._lock = threading.RLock()  # re-entrant: a signal handler that restores caps may interrupt a holder

    # -- steering (tests) -------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path) -> FakeNvml:
        """The fake whose GPU state was saved at ``path`` (a missing file gives one default H100, saved there)."""
        if path.exists():
            raw = json.loads(path.read_text())
            return cls([FakeGpu(**g) for g in raw["gpus"]], state_path=path)
        fake = cls(state_path=path)
        fake.save()
        return fake

    @classmethod
    def from_env(cls) -> FakeNvml:
        """``open_backend("fake")``: the state file named by WATTLOAD_FAKE_NVML, else one in-memory H100."""
        path = os.environ.get(ENV_STATE)
        return cls.load(Path(path)) if path else cls()

    def save(self) -> None:
        if self.state_path is None:
            return
        with self._lock:
            tmp = self.state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"gpus": [asdict(g) for g in self.gpus]}))
            os.replace(tmp, self.state_path)

    def advance(self, index: int, seconds: float, watts: float) -> None:
        """Let GPU ``index`` draw ``watts`` for ``seconds``: the counter grows and the power readings follow."""
        gpu = self.gpus[index]
        gpu.energy_mj += round(watts * seconds * 1000)
        gpu.power_mw = round(watts * 1000)
        if gpu.instant_mw is not None:
            gpu.instant_mw = round(watts * 1000)

    def reset_energy(self, index: int, to_mj: int = 0) -> None:
        """A driver reload: the energy counter starts again from (about) zero."""
        self.gpus[index].energy_mj = to_mj

    # -- the pynvml surface -----------------------------------------------------------------------------------

    def _gpu(self, handle: _Handle, fn: str) -> FakeGpu:
        gpu = self.gpus[handle.index]
        if fn in gpu.unsupported:
            raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
        return gpu

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise NVMLError(self.init_error)
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self.initialised = max(0, self.initialised - 1)

    def nvmlSystemGetDriverVersion(self) -> str:
        return self.driver_version

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        return self.cuda_version

    def nvmlSystemGetNVMLVersion(self) -> str:
        return f"13.{self.driver_version}"

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        if not 0 <= index < len(self.gpus):
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return _Handle(index)

    def nvmlDeviceGetName(self, h: _Handle) -> str:
        return self._gpu(h, "nvmlDeviceGetName").name

    def nvmlDeviceGetUUID(self, h: _Handle) -> str:
        return self._gpu(h, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetPersistenceMode(self, h: _Handle) -> int:
        return self._gpu(h, "nvmlDeviceGetPersistenceMode").persistence

    def nvmlDeviceGetPowerUsage(self, h: _Handle) -> int:
        return self._gpu(h, "nvmlDeviceGetPowerUsage").power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, h: _Handle) -> int:
        return self._gpu(h, "nvmlDeviceGetTotalEnergyConsumption").energy_mj

    def nvmlDeviceGetFieldValues(self, h: _Handle, field_ids: list[int]) -> list[_FieldValue]:
        gpu = self._gpu(h, "nvmlDeviceGetFieldValues")
        out = []
        for fid in field_ids:
            if fid == self.NVML_FI_DEV_POWER_INSTANT and gpu.instant_mw is not None:
                out.append(_FieldValue(fid, NVML_SUCCESS, value=_Value(uiVal=gpu.instant_mw)))
            else:
                out.append(_FieldValue(fid, NVML_ERROR_NOT_SUPPORTED))
        return out

    def nvmlDeviceGetClockInfo(self, h: _Handle, clock: int) -> int:
        gpu = self._gpu(h, "nvmlDeviceGetClockInfo")
        return gpu.sm_clock_mhz if clock == self.NVML_CLOCK_SM else gpu.mem_clock_mhz

    def nvmlDeviceGetTemperature(self, h: _Handle, sensor: int) -> int:
        return self._gpu(h, "nvmlDeviceGetTemperature").temperature_c

    def nvmlDeviceGetUtilizationRates(self, h: _Handle) -> _Utilization:
        gpu = self._gpu(h, "nvmlDeviceGetUtilizationRates")
        return _Utilization(gpu.util_gpu, gpu.util_mem)

    def nvmlDeviceGetMemoryInfo(self, h: _Handle) -> _Memory:
        gpu = self._gpu(h, "nvmlDeviceGetMemoryInfo")
        return _Memory(gpu.mem_total_bytes, gpu.mem_total_bytes - gpu.mem_used_bytes, gpu.mem_used_bytes)

    def nvmlDeviceGetPowerManagementLimit(self, h: _Handle) -> int:
        return self._gpu(h, "nvmlDeviceGetPowerManagementLimit").limit_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, h: _Handle) -> int:
        gpu = self._gpu(h, "nvmlDeviceGetEnforcedPowerLimit")
        return gpu.limit_mw if gpu.enforce_cap_mw is None else min(gpu.limit_mw, gpu.enforce_cap_mw)

    def nvmlDeviceGetPowerManagementDefaultLimit(self, h: _Handle) -> int:
        return self._gpu(h, "nvmlDeviceGetPowerManagementDefaultLimit").default_mw

    def nvmlDeviceGetPowerManagementLimitConstraints(self, h: _Handle) -> list[int]:
        gpu = self._gpu(h, "nvmlDeviceGetPowerManagementLimitConstraints")
        return [gpu.min_mw, gpu.max_mw]

    def nvmlDeviceGetCurrentClocksEventReasons(self, h: _Handle) -> int:
        return self._gpu(h, "nvmlDeviceGetCurrentClocksEventReasons").clock_events

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h: _Handle) -> int:
        return self._gpu(h, "nvmlDeviceGetCurrentClocksThrottleReasons").clock_events

    def nvmlDeviceSetPowerManagementLimit(self, h: _Handle, limit_mw: int) -> None:
        gpu = self._gpu(h, "nvmlDeviceSetPowerManagementLimit")
        if gpu.set_error is not None:
            raise NVMLError(gpu.set_error)
        if not gpu.min_mw <= limit_mw <= gpu.max_mw:
            raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if self.on_set is not None:
            self.on_set(h.index, limit_mw)
        gpu.limit_mw = int(limit_mw)
        gpu.set_calls.append(int(limit_mw))
        self.save()

"""What machine and GPUs a measurement was taken on, for recordings and reports.

Figures like joules per token mean little without the GPU model, driver and power limit they were measured at,
so this is collected once at the start of a session. ``collect_sysinfo`` never raises: anything it cannot learn
is left empty.
"""

from __future__ import annotations

import functools
import platform
import socket
import sys
from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

from engine import __version__
from engine.gpu.base import GpuBackend

T = TypeVar("T")


class GpuSystemInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    index: int
    name: str = ""
    uuid: str | None = None
    power_limit_w: float | None = None
    enforced_limit_w: float | None = None
    default_limit_w: float | None = None
    min_limit_w: float | None = None
    max_limit_w: float | None = None
    persistence_mode: bool | None = None


class SystemInfo(BaseModel):
    """The host, the software versions and the selected GPUs at the start of a session."""

    model_config = ConfigDict(extra="forbid")

    hostname: str = ""
    os: str = ""
    python: str = ""
    wattload_version: str = __version__
    telemetry_source: str | None = None  # "nvml", "sim", "fake" or None
    driver_version: str | None = None
    cuda_driver_version: str | None = None
    nvml_version: str | None = None
    gpus: list[GpuSystemInfo] = Field(default_factory=list)


def _safe(fn: Callable[[], T], default: T) -> T:
    try:
        return fn()
    except Exception:
        return default


def _gpu_info(backend: GpuBackend) -> list[GpuSystemInfo]:
    out = []
    for gpu in backend.gpus():
        info = GpuSystemInfo(index=gpu.index, name=gpu.name, uuid=gpu.uuid)
        try:
            limits = backend.power_limits(gpu.index)
            info = info.model_copy(
                update={
                    "power_limit_w": limits.current_w,
                    "enforced_limit_w": limits.enforced_w,
                    "default_limit_w": limits.default_w,
                    "min_limit_w": limits.min_w,
                    "max_limit_w": limits.max_w,
                }
            )
        except Exception:
            pass
        info.persistence_mode = _safe(functools.partial(backend.persistence_mode, gpu.index), None)
        out.append(info)
    return out


def collect_sysinfo(backend: GpuBackend | None) -> SystemInfo:
    """Everything that can be learnt about this host and ``backend``'s GPUs; never raises."""
    info = SystemInfo(
        hostname=str(_safe(socket.gethostname, "")),
        os=str(_safe(platform.platform, sys.platform)),
        python=platform.python_version(),
    )
    if backend is None:
        return info
    try:
        driver = backend.driver_info()
        info.driver_version = driver.driver_version
        info.cuda_driver_version = driver.cuda_driver_version
        info.nvml_version = driver.nvml_version
    except Exception:
        pass
    info.telemetry_source = _safe(lambda: backend.source, "") or None
    info.gpus = _safe(lambda: _gpu_info(backend), [])
    return info

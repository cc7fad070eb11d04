"""The simulated server's GPU over HTTP: ``GET {root}/sim/gpu`` and ``POST {root}/sim/gpu/power_limit``.

The built-in simulated server models one GPU (power, an energy counter, clocks, a power limit). This backend
makes it look like NVML to the rest of wattload, so the demo exercises the same sampler, energy accounting and
power-cap manager as a real GPU. Short timeouts: a sim that stops answering costs a skipped sample, never a hang.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import httpx
from pydantic import BaseModel, ConfigDict, ValidationError

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

TIMEOUT = httpx.Timeout(1.0, connect=0.5)
_SW_POWER_CAP_BIT = 0x4


class SimGpuReading(BaseModel):
    """The JSON the sim server returns for its GPU (fields it leaves out are n/a)."""

    model_config = ConfigDict(extra="ignore")

    name: str = "simulated GPU"
    uuid: str | None = None
    power_w: float | None = None
    power_instant_w: float | None = None
    energy_mj: int | None = None
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None
    temperature_c: int | None = None
    util_gpu_pct: int | None = None
    util_mem_pct: int | None = None
    mem_used_mib: int | None = None
    mem_total_mib: int | None = None
    power_limit_w: float | None = None
    enforced_limit_w: float | None = None
    default_limit_w: float | None = None
    min_limit_w: float | None = None
    max_limit_w: float | None = None
    power_cap_binding: bool | None = None

    def sample(self, t_ns: int, index: int = 0) -> TelemetrySample:
        binding = self.power_cap_binding
        return TelemetrySample(
            t_ns=t_ns,
            gpu_index=index,
            **self.model_dump(exclude={"name", "uuid"}),
            throttle_reasons=None if binding is None else (_SW_POWER_CAP_BIT if binding else 0),
        )

    def limits(self) -> PowerLimits:
        return PowerLimits(
            self.power_limit_w, self.enforced_limit_w, self.default_limit_w, self.min_limit_w, self.max_limit_w
        )


def server_root(url: str) -> str:
    """The server root from a base URL: ``http://h:p/v1`` -> ``http://h:p``."""
    root = url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


class SimBackend:
    """One simulated GPU (index 0) behind the sim server's HTTP API."""

    source = "sim"

    def __init__(self, url: str, *, timeout: httpx.Timeout = TIMEOUT) -> None:
        """Raises httpx errors or ValidationError when the server does not answer like the sim."""
        self.url = server_root(url)
        self._client = httpx.Client(base_url=self.url, timeout=timeout, trust_env=False)
        self._lock = threading.RLock()  # re-entrant: a signal handler that restores caps may interrupt a holder
        self.last_error: str | None = None
        first = self._get()
        self._info = GpuInfo(0, first.name, first.uuid)
        self._last = first

    def _get(self) -> SimGpuReading:
        with self._lock:
            reply = self._client.get("/sim/gpu")
        reply.raise_for_status()
        return SimGpuReading.model_validate_json(reply.content)

    def gpus(self) -> list[GpuInfo]:
        return [self._info]

    def read(self, indices: Sequence[int]) -> list[TelemetrySample]:
        """A sample for GPU 0 if asked; an empty batch when the sim did not answer this time (never raises)."""
        if 0 not in indices:
            return []
        t0 = time.perf_counter_ns()
        try:
            reading = self._get()
        except (httpx.HTTPError, ValidationError) as exc:
            self.last_error = f"sim GPU: {type(exc).__name__}: {exc}".splitlines()[0]
            return []
        t1 = time.perf_counter_ns()
        self._last = reading
        return [reading.sample((t0 + t1) // 2)]

    def power_limits(self, index: int) -> PowerLimits:
        try:
            self._last = self._get()
        except (httpx.HTTPError, ValidationError):
            pass  # the last reading is the best we know
        return self._last.limits()

    def set_power_limit(self, index: int, watts: float) -> None:
        if index != 0:
            raise PowerCapError(f"GPU {index} is not selected")
        try:
            with self._lock:
                reply = self._client.post("/sim/gpu/power_limit", json={"watts": float(watts)})
        except httpx.HTTPError as exc:
            raise PowerCapError(f"sim server did not take the power limit: {type(exc).__name__}") from None
        if reply.status_code >= 400:
            detail = reply.text.strip().splitlines()[0][:120] if reply.text.strip() else f"HTTP {reply.status_code}"
            raise PowerCapError(f"sim server refused a power limit of {watts:.0f} W: {detail}")
        try:
            self._last = SimGpuReading.model_validate_json(reply.content)
        except ValidationError:
            pass

    def persistence_mode(self, index: int) -> bool | None:
        return None

    def driver_info(self) -> DriverInfo:
        return DriverInfo(driver_version="simulated")

    def close(self) -> None:
        self._client.close()


def open_sim(url: str, *, gpus: str | None = None) -> tuple[SimBackend | None, str]:
    """Connect to the sim server's GPU; never raises."""
    try:
        backend = SimBackend(url)
    except httpx.HTTPStatusError as exc:
        return None, f"{NO_TELEMETRY}: {server_root(url)}/sim/gpu answered HTTP {exc.response.status_code}"
    except httpx.HTTPError as exc:
        return None, f"{NO_TELEMETRY}: sim server at {server_root(url)} did not answer ({type(exc).__name__})"
    except ValidationError:
        return None, f"{NO_TELEMETRY}: {server_root(url)}/sim/gpu did not return a sim GPU reading"
    try:
        if not select_gpus(backend.gpus(), gpus, env={}):
            backend.close()
            return None, f"{NO_TELEMETRY}: no GPU selected"
    except GpuSelectionError as exc:
        backend.close()
        return None, f"{NO_TELEMETRY}: {exc}"
    return backend, describe(backend)

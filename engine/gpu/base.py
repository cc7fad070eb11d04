"""One interface for every GPU telemetry source (NVML, the fake NVML, the simulated server's GPU).

The controller only sees ``GpuBackend``: it reads batches of ``TelemetrySample`` and sets power limits in watts.
``open_backend`` turns "no driver", "no library" or "no such GPU" into ``(None, "no GPU telemetry: ...")`` so
that everything else keeps working without a GPU. This module imports neither pydantic nor httpx, so the NVML
benchmark can run on a bare device image.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from engine.records import TelemetrySample

BackendKind = Literal["auto", "nvml", "sim", "fake", "none"]
BACKEND_KINDS: tuple[str, ...] = ("auto", "nvml", "sim", "fake", "none")

NO_TELEMETRY = "no GPU telemetry"


class PowerCapError(Exception):
    """Setting a power limit failed; ``str(exc)`` is one line the UI can show as is."""


class GpuSelectionError(ValueError):
    """``--gpus`` or ``CUDA_VISIBLE_DEVICES`` names no GPU that exists (one line)."""


@dataclass(frozen=True, slots=True)
class GpuInfo:
    """A selected GPU: its NVML index (what nvidia-smi shows), name and UUID."""

    index: int
    name: str
    uuid: str | None = None


@dataclass(frozen=True, slots=True)
class PowerLimits:
    """Power limits of one GPU in watts; ``None`` = not reported by this GPU."""

    current_w: float | None = None  # the requested (management) limit
    enforced_w: float | None = None  # what the GPU enforces (may be lower: another limit can be in force)
    default_w: float | None = None
    min_w: float | None = None
    max_w: float | None = None


@dataclass(frozen=True, slots=True)
class DriverInfo:
    driver_version: str | None = None
    cuda_driver_version: str | None = None  # e.g. "13.0"
    nvml_version: str | None = None


@runtime_checkable
class GpuBackend(Protocol):
    """What the sampler, the power-cap manager and ``wattload gpu`` need from a GPU source.

    ``read`` never raises: a field the GPU does not support is ``None``; a source that did not answer this time
    yields no sample for that GPU. ``set_power_limit`` raises ``PowerCapError`` with one line.
    """

    @property
    def source(self) -> str: ...  # "nvml", "sim" or "fake"
    def gpus(self) -> list[GpuInfo]: ...  # the selected GPUs, in selection order
    def read(self, indices: Sequence[int]) -> list[TelemetrySample]: ...
    def power_limits(self, index: int) -> PowerLimits: ...
    def set_power_limit(self, index: int, watts: float) -> None: ...
    def persistence_mode(self, index: int) -> bool | None: ...
    def driver_info(self) -> DriverInfo: ...
    def close(self) -> None: ...


def parse_gpu_spec(spec: str) -> list[str]:
    """Split "0,1" or "GPU-8d1e..,1" into stripped tokens (empty tokens dropped)."""
    return [tok.strip() for tok in spec.split(",") if tok.strip()]


def select_gpus(available: Sequence[GpuInfo], spec: str | None, env: Mapping[str, str] | None = None) -> list[GpuInfo]:
    """Pick GPUs by index or UUID (a unique UUID prefix is enough, as CUDA allows).

    ``spec="all"`` selects every GPU whatever ``CUDA_VISIBLE_DEVICES`` says (``wattload gpu restore`` uses it).
    Without ``spec``, ``CUDA_VISIBLE_DEVICES`` is honoured (its indices are taken as NVML indices, which match
    CUDA's when ``CUDA_DEVICE_ORDER=PCI_BUS_ID``); an empty value or "-1" selects no GPU. Raises
    ``GpuSelectionError`` with one line when a token matches nothing.
    """
    env = os.environ if env is None else env
    origin = "--gpus"
    if spec is not None and spec.strip().lower() == "all":
        return list(available)
    if spec is None:
        cvd = env.get("CUDA_VISIBLE_DEVICES")
        if cvd is None:
            return list(available)
        spec, origin = cvd, "CUDA_VISIBLE_DEVICES"
        if cvd.strip() in ("", "-1"):
            return []
    chosen: list[GpuInfo] = []
    for token in parse_gpu_spec(spec):
        match = _match_token(available, token)
        if match is None:
            have = ",".join(str(g.index) for g in available) or "none"
            raise GpuSelectionError(f"{origin}: no GPU matches {token!r} (GPUs: {have})")
        if match not in chosen:
            chosen.append(match)
    return chosen


def _match_token(available: Sequence[GpuInfo], token: str) -> GpuInfo | None:
    if token.isdigit():
        return next((g for g in available if g.index == int(token)), None)
    hits = [g for g in available if g.uuid and g.uuid.lower().startswith(token.lower())]
    return hits[0] if len(hits) == 1 else None


def describe(backend: GpuBackend) -> str:
    """One line for the event log: where telemetry comes from and for which GPUs."""
    gpus = backend.gpus()
    names = sorted({g.name for g in gpus})
    plural = "GPU" if len(gpus) == 1 else "GPUs"
    return f"GPU telemetry: {backend.source}, {len(gpus)} {plural} ({', '.join(names) or 'none'})"

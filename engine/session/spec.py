"""What a session is made of, as data: the one thing every front end (run, demo, replay --drive, sweep) fills in.

A command translates its arguments into a ``SessionSpec`` and hands it to ``engine.session.build``; nothing else
about assembling a session (probing, profile calibration, the GPU source, the recorder) lives in a command.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.config import RunConfig
from engine.gpu.base import BackendKind
from engine.load.ray_spec import RaySpec
from engine.pricing import PricingProfile
from engine.telemetry.spec import TelemetrySpec
from engine.workload.profile import LoadedProfile

Probe = Literal["full", "resolve", "none"]


def gpu_source_for(gpu: BackendKind | None, sim_url: str | None) -> BackendKind:
    """The telemetry source a session uses: the one asked for, else the simulator's GPU with --sim, else auto."""
    if gpu is not None:
        return gpu
    return "sim" if sim_url else "auto"


def telemetry_url_for(gpu: BackendKind | None, sim_url: str | None, base_url: str) -> str | None:
    """Where the simulated GPU is read from: the simulator we started, else the endpoint itself under --gpu sim."""
    return sim_url or (base_url if gpu_source_for(gpu, sim_url) == "sim" else None)


class RecordingSpec(BaseModel):
    """How ``start_recording`` (``--record``, the r key) writes files for this session."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    directory: str = "recordings"
    """Where a recording goes when no path is given."""
    record_tokens: bool = False
    """Also store every token's arrival time (replay can then show ITL)."""
    workload: dict[str, Any] | None = None
    """The workload description stored in the file; None = the profile's (if any)."""


class TraceSpec(BaseModel):
    """``--trace``: a production trace replayed on its own clock (``engine/session/trace_setup.py``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    speed: float = Field(default=1.0, gt=0)
    """Trace time is divided by this (2 = twice as fast); the rate keys change it live."""
    window_s: tuple[float, float] | None = None
    """Replay only rows with start <= t < end (trace seconds; end may be inf)."""


class SessionSpec(BaseModel):
    """One session, before anything is opened. ``config.base_url`` is the URL as the user gave it (server root or
    its /v1 base) and ``config.model`` the model asked for ("" = the one the server lists); probing replaces both
    with the server's answers."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    config: RunConfig
    """The run's settings (load shape, lengths, stop condition, key)."""
    probe: Probe = "full"
    """full: resolve the API base and model, then one test request; resolve: only the first; none: as given."""
    profile: LoadedProfile | None = None
    """A workload profile: applied to the config and its input lengths calibrated on the server."""
    calibrate: bool = False
    """Without a profile or trace: calibrate ``config.input_tokens`` on the server like a one-shape profile (a chat
    template alone adds ~20% to a 128-token prompt). A server fault during its probes leaves the session
    uncalibrated with one note; a probe the server refuses is fatal, as for a profile."""
    trace: TraceSpec | None = None
    """A trace to replay instead of a profile (it sets the load shape: open loop on its clock)."""
    gpu: BackendKind | None = None
    """The GPU telemetry source; None = the simulator's GPU when ``sim_url`` is set, else auto (NVML)."""
    gpus: str | None = None
    """GPU indices or UUIDs (None = all)."""
    sim_url: str | None = None
    """The built-in simulator this session loads, whose simulated GPU is the telemetry for ``gpu="sim"``."""
    pricing: PricingProfile | None = None
    """The cost model (None = no cost figures)."""
    recording: RecordingSpec | None = RecordingSpec()
    """How recordings are written; None = this session cannot record."""
    telemetry: TelemetrySpec | None = None
    """Server metrics and remote GPUs over Prometheus; a remote GPU source replaces ``gpu``."""
    ray: RaySpec | None = None
    """``--ray``: the workers run as Ray actors on this cluster (None = local worker processes)."""

    @property
    def gpu_source(self) -> BackendKind:
        """The telemetry source actually used (the one rule every command shares: ``gpu_source_for``)."""
        return gpu_source_for(self.gpu, self.sim_url)

    def telemetry_url(self, base_url: str) -> str | None:
        """Where the simulated GPU is read from (``telemetry_url_for``)."""
        return telemetry_url_for(self.gpu, self.sim_url, base_url)

"""Turning a trace file into what the controller takes: a rate-mode config on the trace's clock and its factory.

The one entry point for ``--trace`` (headless and TUI alike): detect the format, make one validating pass (the
fingerprint, and every bad row as one line before any request is sent), calibrate the words->tokens ratio on the
server at the trace's mean input length so every row's length is hit through the same model as profiles, and
set the run to rate mode where the rate is the trace speed (1.0 = as recorded; the hotkeys scale it live) and the
request count is the rows to replay, so the run ends with the trace.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from pydantic import BaseModel, ConfigDict

from engine.config import RunConfig
from engine.session.calibrate import calibrate_profile
from engine.snapshot import LoadMode
from engine.workload.calibration import CalibrationResult, TokenModel
from engine.workload.distributions import Fixed
from engine.workload.profile import LoadedProfile, WorkloadProfile
from engine.workload.traces import DataFingerprint, TraceError, TraceWindow, open_trace, scan_trace
from engine.workload.traces.detect import TraceStart
from engine.workload.traces.requests import TraceFactory


class TracePlan(BaseModel):
    """What ``--trace`` resolved to (printed, stored in results and recordings)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fingerprint: DataFingerprint
    skipped: str = ""
    """One line: what was left out and why ("" when nothing was)."""
    speed: float
    calibration: CalibrationResult | None = None
    max_context: int | None = None


def server_context(config: RunConfig, timeout_s: float = 10.0) -> int | None:
    """The model's context window from ``/models`` (vLLM and the simulator give ``max_model_len``); None when
    the server does not say (rows too long for it then fail as the server's 400s)."""
    headers = {}
    if config.api_key is not None and config.api_key.get_secret_value():
        headers["Authorization"] = f"Bearer {config.api_key.get_secret_value()}"
    try:
        with httpx.Client(timeout=timeout_s, trust_env=False) as http:
            data = http.get(f"{config.base_url}/models", headers=headers).json()
    except (httpx.HTTPError, ValueError):
        return None
    for entry in data.get("data", []) if isinstance(data, dict) else []:
        if isinstance(entry, dict) and entry.get("id") == config.model:
            value = entry.get("max_model_len")
            if isinstance(value, int) and not isinstance(value, bool) and value > 1:
                return value
    return None


def prepare_trace(
    config: RunConfig,
    path: str,
    *,
    speed: float = 1.0,
    window: TraceWindow | None = None,
    calibrate: bool = True,
    max_context: int | None = None,
) -> tuple[TraceFactory, RunConfig, TracePlan]:
    """Blocking (probes the server); raises TraceError for the file, ProbeError for the server, both one line."""
    source = open_trace(path)
    window = window or TraceWindow()
    context = max_context if max_context is not None else server_context(config)
    starts: list[TraceStart] = []
    fingerprint, skips = scan_trace(source, window, context, found=starts.append)
    if fingerprint.rows == 0:
        raise TraceError(f"{path}: no rows to replay" + (f" ({skips.summary()})" if skips.total else " in the window"))
    mean_in = max(1, round(fingerprint.input.mean))
    mean_out = max(1, round(fingerprint.output.mean))
    profile = WorkloadProfile(name=f"trace-{source.format}", api=config.api, input=Fixed(value=mean_in),
                              output=Fixed(value=mean_out))  # fmt: skip
    loaded = LoadedProfile(profile=profile, path=Path(fingerprint.path), sha256=fingerprint.sha256)
    calibration: CalibrationResult | None = None
    token_model = None
    if calibrate:
        factory, calibration = asyncio.run(calibrate_profile(config, loaded, config.seed))
        token_model = factory.token_model
    trace_factory = TraceFactory(source, token_model or TokenModel(), config.api, config.seed, window, context,
                                 starts[0] if starts else None)  # fmt: skip
    label = f"trace {source.format} {fingerprint.path.rsplit('/', 1)[-1]}"
    if speed != 1.0:
        label += f" ×{speed:g}"
    limit = fingerprint.rows if config.max_requests is None else min(config.max_requests, fingerprint.rows)
    config = config.model_copy(
        update={
            "mode": LoadMode.RATE,
            "rate": speed,
            "max_requests": limit,
            "workload": label,
            "input_tokens": mean_in,
            "max_tokens": mean_out,
            "ignore_eos": True,
        }
    )
    plan = TracePlan(fingerprint=fingerprint, skipped=skips.summary(), speed=speed, calibration=calibration,
                     max_context=context)  # fmt: skip
    return trace_factory, config, plan

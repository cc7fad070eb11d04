"""Turning a workload profile into what the controller takes: a run config and a calibrated request factory.

The one entry point every command uses (``run --profile``, ``sweep``, the matrix), so a profile means the same
requests everywhere: ``apply_profile`` copies the profile's API shape into the config, ``calibrated_factory``
probes the server and returns the factory to pass as ``Controller(..., request_factory=...)``.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

from engine.config import RunConfig
from engine.session.calibrate import calibrate_profile
from engine.workload.calibration import CalibrationResult
from engine.workload.distributions import Fixed
from engine.workload.lengths import targets_of
from engine.workload.profile import LoadedProfile, WorkloadProfile
from engine.workload.prompts import ProfileRequestFactory
from engine.workload.session_shape import SessionShape
from engine.workload.sessions import SessionFactory


def apply_profile(config: RunConfig, loaded: LoadedProfile) -> RunConfig:
    """The config with the profile's API, ignore_eos, name, (mean) lengths and seed (when it has one); load fields
    are left alone. Flags given on the command line are already in the profile (``engine.cli.common.with_flags``)."""
    p = loaded.profile
    target_in, target_out = targets_of(loaded)
    return config.model_copy(
        update={
            "api": p.api,
            "ignore_eos": p.ignore_eos,
            "workload": p.name,
            "input_tokens": max(1, round(target_in or config.input_tokens)),
            "max_tokens": max(1, round(target_out)),
            **({"seed": p.seed} if p.seed is not None else {}),
        }
    )


def command_line_profile(config: RunConfig) -> LoadedProfile:
    """``--input-tokens N --max-tokens M`` as a profile, so plain flags get the same calibrated prompts as
    ``--profile`` (a chat template alone adds ~20% to a 128-token prompt on a real server)."""
    profile = WorkloadProfile(
        name=config.workload or "synthetic",
        api=config.api,
        input=Fixed(value=config.input_tokens),
        output=Fixed(value=config.max_tokens),
        ignore_eos=config.ignore_eos,
    )
    digest = hashlib.sha256(profile.model_dump_json().encode()).hexdigest()
    return LoadedProfile(profile=profile, path=Path("<command line>"), sha256=digest)


def calibrated_factory(
    config: RunConfig, loaded: LoadedProfile, seed: int | None = None
) -> tuple[ProfileRequestFactory | SessionFactory, CalibrationResult | None]:
    """Calibrate input lengths on the server (a few one-token probes) and return the profile's request factory.

    Blocking; call it before ``Controller.start()``. Raises ``engine.session.calibrate.ExceedsContext`` when the
    profile's prompts do not fit the server and ``ProbeError`` when the server fails the probes (both one line).
    """
    factory, result = asyncio.run(calibrate_profile(config, loaded, config.seed if seed is None else seed))
    if loaded.conversations:  # ShareGPT sessions: the dataset's conversations, the server's answers between
        return SessionFactory(factory, loaded.profile.session or SessionShape(), loaded.conversations), result
    if loaded.profile.session is not None:  # turn 1 is calibrated like any request; later turns share the ratio
        return SessionFactory(factory, loaded.profile.session), result
    return factory, result

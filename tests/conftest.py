"""Fixtures the whole suite shares: a clean environment for every test, and the simulated server in one name per
meaning.

- ``start_sim``: a factory; each call starts a simulator on a thread of this process (the module's ``SIM``
  settings, overridden by the call's keywords) and returns the ``SimServer``; all stop after the test.
- ``sim_url``: the /v1 base URL of one simulator on a thread, shared by a module, configured by the module's ``SIM``.
- ``sim_process``: the simulator in its own process (as ``wattload demo`` runs it), shared by a module, configured
  by the module's ``SIM``: for tests whose client must not share the simulator's CPU and GIL, or that need its pid.
- ``synthetic_recording``: a factory of read-only synthetic recordings (tests/synthetic_recording.py), each spec
  written once per test session.

A module says how its simulator runs with ``SIM = SimConfig(...)``; without one it is the default (real speed).
Tests that change a shared simulator's settings (``/sim/config``) put them back.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from synthetic_recording import SyntheticSpec, write_synthetic

from engine.sim.model import SimConfig
from engine.sim.process import SimProcess, start_sim_process
from engine.sim.server import SimServer


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: two test processes per core. About half of a test's time here is spent waiting on real servers,
    subprocesses and terminals (measured on 2 cores: 264 s of 548 s test-seconds idle), so one process per core
    left the cores idle half the time; the timing-sensitive tests are in the ``own_core`` and ``alone`` tiers anyway."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 2 * cores


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No developer key, colour setting, GPU selection or defaults file (~/.config/wattload/config.toml) leaks
    into a test, and power-cap bookkeeping goes to the test's own directory (never ~/.local/state)."""
    for name in ("OPENAI_API_KEY", "WATTLOAD_API_KEY", "NO_COLOR", "CUDA_VISIBLE_DEVICES", "WATTLOAD_RECEIVE_STAMPS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WATTLOAD_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


def module_sim(request: pytest.FixtureRequest, **overrides: Any) -> SimConfig:
    """The requesting module's ``SIM`` settings (default: SimConfig()), with ``overrides`` applied."""
    base: SimConfig = getattr(request.module, "SIM", None) or SimConfig()
    if not overrides:
        return base
    return SimConfig(**{**base.model_dump(exclude_unset=True), **overrides})


@pytest.fixture
def start_sim(request: pytest.FixtureRequest) -> Iterator[Callable[..., SimServer]]:
    servers: list[SimServer] = []

    def start(**overrides: Any) -> SimServer:
        server = SimServer(module_sim(request, **overrides))
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def sim_url(request: pytest.FixtureRequest) -> Iterator[str]:
    with SimServer(module_sim(request)) as server:
        yield server.url


@pytest.fixture(scope="module")
def sim_process(request: pytest.FixtureRequest) -> Iterator[SimProcess]:
    with start_sim_process(module_sim(request)) as server:
        yield server


@pytest.fixture(scope="session")
def synthetic_recording(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``synthetic_recording(spec, name)``: the path of that synthetic session, written on first use. Tests only
    read it (copy it first to damage or extend it)."""
    written: dict[str, Path] = {}

    def get(spec: SyntheticSpec | None = None, name: str = "session.wattload.sqlite") -> Path:
        spec = spec or SyntheticSpec()
        key = f"{spec!r}/{name}"
        if key not in written:
            path = tmp_path_factory.mktemp("rec") / name
            write_synthetic(path, spec)
            written[key] = path
        return written[key]

    return get

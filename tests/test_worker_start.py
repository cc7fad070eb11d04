"""Worker processes start from a forkserver that imported the worker code once (engine/load/worker_pool.py).

Forked from a server started with the first session of a process, a worker must still see the environment of its
own session (as a spawned one would), and must run on the simulator like a spawned one."""

from __future__ import annotations

import sys

import pytest
from engine_helpers import run_to_end

from engine.config import RunConfig
from engine.endpoint.stamped_socket import ENV, kernel_gives_stamps
from engine.load.controller import Controller
from engine.load.worker_pool import worker_context
from engine.sim.model import SimConfig


def started_with(sim_url: str) -> str:
    """What the worker said it streams with (its Ready line), after a one-request run."""
    config = RunConfig(base_url=sim_url, model=SimConfig().model, workers=1, concurrency=1, max_requests=1,
                       max_tokens=4, http_client="lean")  # fmt: skip
    controller = Controller(config)
    run_to_end(controller, timeout_s=60)
    assert controller.completed == 1
    return ", ".join(controller.worker_loops)


@pytest.mark.skipif(sys.platform != "linux", reason="workers start from a forkserver on Linux only")
def test_a_worker_sees_the_environment_of_its_session_not_the_forkservers(sim_url, monkeypatch):
    if not kernel_gives_stamps():
        pytest.skip("this kernel gives no receive stamps: the worker says read-time stamps whatever the variable")
    assert worker_context().get_start_method() == "forkserver"
    monkeypatch.setenv(ENV, "kernel")
    first = started_with(sim_url)  # starts the forkserver (if no earlier test in this process did)
    monkeypatch.setenv(ENV, "read")
    second = started_with(sim_url)
    assert "kernel receive stamps" in first, first
    assert "read-time stamps" in second, second  # the variable set after the server started reached the worker

"""The sim GPU backend against the real built-in simulated server on 127.0.0.1."""

import socket
import time

import pytest
from engine_helpers import wait_for

from engine.gpu import open_backend
from engine.gpu.energy import EnergyAccount
from engine.gpu.powercap import PowerCapManager
from engine.gpu.sampler import TelemetrySampler
from engine.gpu.sim import SimBackend, server_root
from engine.gpu.statefile import PowerCapState, SavedLimit, read_state, write_state
from engine.records import EventKind
from tui.cli import main

WAIT_S = 10.0  # sim_url (conftest.py): the simulator at its defaults; its /v1 base, as a user would pass it


@pytest.fixture
def backend(sim_url):
    backend, message = open_backend("sim", sim_url=sim_url)
    assert isinstance(backend, SimBackend), message
    yield backend
    backend.set_power_limit(0, backend.power_limits(0).default_w or 700.0)  # leave the shared sim as found
    backend.close()


def test_server_root_strips_v1():
    assert server_root("http://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000"
    assert server_root("http://127.0.0.1:8000") == "http://127.0.0.1:8000"


def test_sim_reading_maps_to_a_telemetry_sample(backend):
    [gpu] = backend.gpus()
    assert gpu.index == 0 and gpu.uuid and gpu.name
    first = backend.read([0])[0]
    assert first.power_w is not None and first.power_instant_w is not None
    assert first.min_limit_w < first.max_limit_w and first.power_limit_w == first.enforced_limit_w
    assert first.power_cap_binding is False and first.throttle_reasons == 0  # idle: the cap cannot bind
    assert first.mem_total_mib and first.sm_clock_mhz
    later = wait_for(lambda: (r := backend.read([0])[0]).energy_mj != first.energy_mj and r, WAIT_S,
                     "the energy counter to move")  # fmt: skip
    assert later.energy_mj > first.energy_mj and later.t_ns > first.t_ns
    assert backend.read([1]) == []  # the sim has one GPU


def test_power_cap_round_trip_through_the_sim(backend, tmp_path):
    state = tmp_path / "powercap.json"
    caps = PowerCapManager(backend, [0], state_file=state)
    [event] = caps.set(150)  # below the sim's minimum: clamped before it is sent
    assert (event.kind, event.value, event.readback) == (EventKind.POWER_CAP, 200.0, 200.0)
    assert "clamped" in event.message
    saved = read_state(state)
    assert saved.source == "sim" and saved.sim_url == backend.url and saved.gpus[0].limit_w == 700.0
    assert backend.read([0])[0].power_limit_w == 200.0
    [restored] = caps.close()
    assert restored.readback == 700.0 and not state.exists()


def test_gpu_restore_reaches_the_sim_through_the_state_file(backend, tmp_path, capsys):
    state = tmp_path / "powercap.json"
    caps = PowerCapManager(backend, [0], state_file=state)
    caps.set(400)
    caps.keep()  # pretend the run died: write the state back by hand as it was before the change
    caps.close()
    write_state(
        state,
        PowerCapState(
            source="sim", sim_url=backend.url, gpus=[SavedLimit(index=0, uuid=backend.gpus()[0].uuid, limit_w=700)]
        ),
    )
    assert main(["gpu", "restore", "--state-file", str(state)]) == 0
    assert capsys.readouterr().out == "GPU 0 power cap restored to 700 W, enforced 700 W\n"
    assert backend.power_limits(0).current_w == 700.0


def test_wattload_gpu_sim_lists_the_sim_gpu(sim_url, capsys):
    assert main(["gpu", "--sim", sim_url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("GPU telemetry: sim, 1 GPU")
    assert out[1] == "  driver simulated"
    assert out[3] == "  power limit 700 W (enforced 700 W, default 700 W, settable 200 W to 700 W)"


def test_sampler_and_energy_account_over_the_sim(backend):
    account = EnergyAccount(names={0: backend.gpus()[0].name}, source="sim")
    sampler = TelemetrySampler(backend, [0], hz=50.0, on_samples=lambda batch: [account.add(s) for s in batch])
    sampler.start()

    def with_energy():
        stats = account.stats(
            time.perf_counter_ns(),
            window_s=1.0,
            window_output_tokens=0,
            window_total_tokens=0,
            total_output_tokens=0,
            total_total_tokens=0,
            steady=True,
        )
        return stats if stats.total.energy_j else None

    try:
        stats = wait_for(with_energy, WAIT_S, "energy from the sampled counter", interval_s=0.05)
    finally:
        sampler.stop()
    assert stats is not None and stats.available and stats.source == "sim" and stats.energy_source == "counter"
    assert stats.total.energy_j > 0 and stats.gpus[0].watts > 0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sim_not_answering_is_one_line():
    port = _closed_port()
    assert open_backend("sim", sim_url=f"http://127.0.0.1:{port}/v1") == (
        None,
        f"no GPU telemetry: sim server at http://127.0.0.1:{port} did not answer (ConnectError)",
    )


def test_a_server_without_the_sim_gpu_is_one_line(sim_url):
    backend, message = open_backend("sim", sim_url=server_root(sim_url) + "/elsewhere")
    assert backend is None and message.endswith("/elsewhere/sim/gpu answered HTTP 404")

"""The simulated GPU over HTTP: reading shape, power limit control, cap slowdown, exact energy accounting."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from engine.sim import SimConfig, SimServer
from engine.sim.model import step_cost

# Watts and energy are integrated over wall time: a CPU-starved simulator under xdist drifts past the tolerance, so
# those tests are `alone`; the reading's shape and the limit's validation do not depend on timing.
ALONE = pytest.mark.alone

MODEL = "sim-llama-3.1-8b"
GPU_FIELDS = {
    "name": str, "uuid": str, "power_w": float, "power_instant_w": float, "energy_mj": int, "sm_clock_mhz": int,
    "mem_clock_mhz": int, "temperature_c": int, "util_gpu_pct": int, "util_mem_pct": int, "mem_used_mib": int,
    "mem_total_mib": int, "power_limit_w": float, "enforced_limit_w": float, "default_limit_w": float,
    "min_limit_w": float, "max_limit_w": float, "power_cap_binding": bool,
}  # fmt: skip


def root_and_config(server: SimServer) -> tuple[str, SimConfig]:
    """A started simulator (conftest.py start_sim) as the server root and its settings."""
    return server.url.removesuffix("/v1"), server.config


@pytest.fixture
async def http():
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        yield session


async def gpu(http: aiohttp.ClientSession, root: str) -> dict:
    async with http.get(root + "/sim/gpu") as resp:
        assert resp.status == 200
        return await resp.json()


async def timed_gpu(http: aiohttp.ClientSession, root: str) -> tuple[int, dict, int]:
    """A reading bracketed by perf_counter_ns before the request and after the answer (same clock as the server)."""
    t0 = time.perf_counter_ns()
    reading = await gpu(http, root)
    return t0, reading, time.perf_counter_ns()


async def set_cap(http: aiohttp.ClientSession, root: str, watts: object) -> tuple[int, dict]:
    async with http.post(root + "/sim/gpu/power_limit", json={"watts": watts}) as resp:
        return resp.status, await resp.json()


async def generate(http: aiohttp.ClientSession, root: str, max_tokens: int) -> str:
    """One streamed request read to the end; returns its response id."""
    body = {"model": MODEL, "prompt": [1] * 16, "max_tokens": max_tokens, "ignore_eos": True, "stream": True}
    async with http.post(root + "/v1/completions", json=body) as resp:
        assert resp.status == 200
        first = await resp.content.readline()
        await resp.read()
    return first.split(b'"id":"', 1)[1].split(b'"', 1)[0].decode()


async def mean_itl_s(http: aiohttp.ClientSession, root: str, response_id: str) -> float:
    async with http.get(f"{root}/sim/stamps/{response_id}") as resp:
        stamps = (await resp.json())["chunk_write_ns"]
    return (stamps[-1] - stamps[0]) / (len(stamps) - 1) / 1e9


def assert_energy_bracketed(a: tuple[int, dict, int], b: tuple[int, dict, int], watts: float) -> None:
    """At constant power, the counter's increase lies between watts x (inner span) and watts x (outer span)."""
    (a0, ra, a1), (b0, rb, b1) = a, b
    delta_mj = rb["energy_mj"] - ra["energy_mj"]
    assert watts * (b0 - a1) / 1e6 - 1 <= delta_mj <= watts * (b1 - a0) / 1e6 + 1


async def test_gpu_reading_has_the_agreed_shape(start_sim, http):
    root, _ = root_and_config(start_sim())
    reading = await gpu(http, root)
    assert set(reading) == set(GPU_FIELDS)
    for name, kind in GPU_FIELDS.items():
        assert isinstance(reading[name], kind), name
    assert reading["uuid"] == "GPU-00000000-sim0-0000-0000-000000000000"
    assert reading["power_instant_w"] == 120.0 and not reading["power_cap_binding"]
    assert (reading["min_limit_w"], reading["default_limit_w"], reading["max_limit_w"]) == (200.0, 700.0, 700.0)


async def test_power_limit_clamps_and_rejects_bad_bodies(start_sim, http):
    root, _ = root_and_config(start_sim())
    status, reading = await set_cap(http, root, 50)
    assert status == 200 and reading["power_limit_w"] == reading["enforced_limit_w"] == 200.0
    assert (await set_cap(http, root, 5000))[1]["enforced_limit_w"] == 700.0
    assert (await set_cap(http, root, 350.5))[1]["power_limit_w"] == 350.5
    for bad in ("many", True, None):
        assert (await set_cap(http, root, bad))[0] == 400
    async with http.post(root + "/sim/gpu/power_limit", data=b"not json") as resp:
        assert resp.status == 400
    assert (await gpu(http, root))["power_limit_w"] == 350.5


@ALONE
async def test_idle_energy_is_idle_watts_times_time(start_sim, http):
    root, cfg = root_and_config(start_sim())
    first = await timed_gpu(http, root)
    await asyncio.sleep(0.3)
    second = await timed_gpu(http, root)
    assert_energy_bracketed(first, second, cfg.idle_w)


@ALONE
async def test_cap_below_demand_lengthens_decode_steps(start_sim, http):
    # decode_half_batch=1: even one sequence demands ~475 W, so a 200 W cap binds hard
    root, cfg = root_and_config(start_sim(speed=2.0, decode_half_batch=1.0))
    free_itl = await mean_itl_s(http, root, await generate(http, root, 40))
    await set_cap(http, root, 200)
    capped_itl = await mean_itl_s(http, root, await generate(http, root, 40))
    stretch = step_cost(cfg, 1, 0, 200).stretch  # 1.85: decode_demand_w(cfg, 1) is 475 W
    assert capped_itl > 1.35 * free_itl
    async with http.get(root + "/metrics") as resp:
        metrics = await resp.text()
    reported = float(next(ln for ln in metrics.splitlines() if ln.startswith("sim:last_step_cap_stretch")).split()[-1])
    assert reported == pytest.approx(stretch)


@ALONE
async def test_power_tracks_the_cap_and_energy_is_its_exact_integral(start_sim, http):
    root, cfg = root_and_config(start_sim(decode_half_batch=1.0))
    await set_cap(http, root, 200)
    load = [asyncio.create_task(generate(http, root, 250)) for _ in range(2)]
    try:
        await asyncio.sleep(1.1)  # the 1 s average now covers load only
        first = await timed_gpu(http, root)
        reading = first[1]
        assert reading["power_instant_w"] == 200.0 and reading["power_cap_binding"]
        assert reading["power_w"] == pytest.approx(200.0, rel=0.02)
        assert reading["sm_clock_mhz"] < cfg.boost_clock_mhz and reading["util_gpu_pct"] >= 95
        await asyncio.sleep(0.4)
        second = await timed_gpu(http, root)
        assert_energy_bracketed(first, second, 200.0)
    finally:
        for task in load:
            task.cancel()
        await asyncio.gather(*load, return_exceptions=True)


@ALONE
async def test_energy_counter_is_monotonic_under_changing_load(start_sim, http):
    root, cfg = root_and_config(start_sim(speed=20.0))
    readings = []
    for wave in (1, 8, 0, 32):
        load = [asyncio.create_task(generate(http, root, 60)) for _ in range(wave)]
        for _ in range(8):
            readings.append(await gpu(http, root))
            await asyncio.sleep(0.005)
        await asyncio.gather(*load)
    energies = [r["energy_mj"] for r in readings]
    assert energies == sorted(energies)
    assert max(r["power_instant_w"] for r in readings) > cfg.idle_w  # the load did show up

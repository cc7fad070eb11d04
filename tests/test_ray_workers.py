"""--ray on a real Ray cluster of two raylets on this machine (one CPU each), so the two worker actors land on two
nodes: the same load as local worker processes, the one seeded schedule, a lost actor counted and survived, and no
actor left behind. One cluster serves the whole module (starting it is most of the time these tests take)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading

import httpx
import pytest
from engine_helpers import CollectingSink, config, run_to_end, wait_for

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'wattload[ray]')")

from engine.load.controller import Controller  # noqa: E402
from engine.load.ray_spec import RaySpec  # noqa: E402
from engine.load.schedule import PoissonArrivals, worker_seed  # noqa: E402
from engine.metrics.histogram import bucket_index  # noqa: E402
from engine.records import EventKind  # noqa: E402
from engine.sim.model import SimConfig  # noqa: E402
from engine.sim.process import start_sim_process  # noqa: E402
from engine.snapshot import LoadMode, RunState  # noqa: E402

pytestmark = pytest.mark.alone  # one shared cluster, and a kill in the middle of a run: serially, cores to itself

# Two long decode steps per 2-token answer (~0.4 s): a 2% bucket is ~8 ms, and a starved simulator's late wake-ups
# (a few ms each on a busy box) add up over two steps only. It runs in its own process: neither run's controller
# threads share its interpreter.
SLOW = SimConfig(decode_base_ms=200.0, seed=3)
FAST = SimConfig(speed=50.0, seed=3)


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    ray.init(address=c.address, namespace="wattload", log_to_driver=False, include_dashboard=False)
    try:
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


@pytest.fixture(scope="module")
def slow_sim():
    with start_sim_process(SLOW) as sim:
        warm_up(sim.url)
        yield sim.url


def warm_up(url: str) -> None:
    """A few answers before anything is compared: the first requests of a fresh simulator are slower (its first
    code paths), and only the first of the compared runs would pay for them."""
    body = {"model": SLOW.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "stream": True}

    def one() -> None:
        with httpx.stream("POST", f"{url}/chat/completions", json=body, timeout=30.0, trust_env=False) as reply:
            reply.raise_for_status()
            for _ in reply.iter_bytes():
                pass

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60.0)


def finished(url: str) -> float:
    """Requests the simulator has finished (its vLLM-style counter)."""
    text = httpx.get(url.removesuffix("/v1") + "/metrics", timeout=5.0, trust_env=False).text
    match = re.search(r"^vllm:request_success_total(?:\{[^}]*\})? ([0-9.e+]+)$", text, re.M)
    assert match, "no request counter in the simulator's /metrics"
    return float(match.group(1))


def our_actors() -> list[str]:
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith("wattload-")]


def assert_no_actor_left() -> None:
    wait_for(lambda: not our_actors(), 10.0, "the worker actors to be gone")
    tables = ray.util.placement_group_table().values()
    assert all(pg["state"] == "REMOVED" for pg in tables if pg["name"].startswith("wattload-"))


def run(url: str, ray_spec: RaySpec | None, **fields) -> tuple[Controller, CollectingSink]:
    sink = CollectingSink()
    c = Controller(config(url, workers=2, **fields), sinks=[sink], stop_grace_s=2.0, ray=ray_spec)
    run_to_end(c, timeout_s=180.0)
    return c, sink


def test_ray_workers_on_two_nodes_send_what_local_processes_send(cluster, slow_sim):
    local, local_sink = run(slow_sim, None, concurrency=4, max_requests=16, max_tokens=2)
    on_ray, ray_sink = run(slow_sim, RaySpec(address="local"), concurrency=4, max_requests=16, max_tokens=2)
    assert_no_actor_left()
    assert on_ray.state is RunState.STOPPED and on_ray.worker_lost == 0
    assert len(ray_sink.records) == len(local_sink.records) == 16
    assert all(r.ok for r in ray_sink.records) and {r.worker for r in ray_sink.records} == {0, 1}
    health = on_ray.worker_health
    assert health is not None and len({h.node for h in health}) == 2  # really two raylets
    assert all(h.same_clock and h.clock_offset_ms == 0 and h.records == 8 for h in health)
    assert local.worker_health is None
    a, b = local.latest.total, on_ray.latest.total
    assert a.requests == b.requests == 16 and a.output_tokens == b.output_tokens == 32
    for figure in ("e2e", "ttft"):
        p50_local, p50_ray = getattr(a, figure).p50, getattr(b, figure).p50  # ms
        assert abs(bucket_index(p50_local / 1e3) - bucket_index(p50_ray / 1e3)) <= 1, (figure, p50_local, p50_ray)
    starts = [e.message for e in ray_sink.events if e.kind is EventKind.START]
    assert starts and "on Ray (2 nodes" in starts[0]


def test_rate_mode_on_ray_keeps_the_one_seeded_schedule(cluster):
    with start_sim_process(FAST) as sim:
        c, sink = run(sim.url, RaySpec(address="local"), mode=LoadMode.RATE, rate=20.0, max_requests=20, seed=7)
    assert_no_actor_left()
    sent = sorted(r.t_scheduled_ns for r in sink.records)
    arrivals = PoissonArrivals(20.0, worker_seed(7, 0), c.t0_ns)
    assert sent == [arrivals.next_due_ns() for _ in range(20)]  # what one machine would send, dealt to two
    assert {r.worker for r in sink.records} == {0, 1}


def test_a_lost_actor_is_counted_and_the_run_goes_on(cluster, slow_sim):
    sink = CollectingSink()
    c = Controller(config(slow_sim, workers=2, concurrency=4, duration_s=4.0, max_tokens=2), sinks=[sink],
                   stop_grace_s=2.0, ray=RaySpec(address="local"))
    c.start()
    try:
        wait_for(lambda: c.completed >= 4, 120.0, "the first records")  # actors start slowly on a busy box
        c.set_concurrency(6)  # a live change reaches both actors at once: 3 + 3 open
        wait_for(lambda: c.latest.in_flight == 6, 3.0, "the new target on both workers")
        victim = ray.get_actor(c._pool.actor_names[1], namespace="wattload")
        ray.kill(victim, no_restart=True)
        wait_for(lambda: c.worker_lost > 0, 10.0, "the loss to be noticed")
        # the survivor takes the whole target: six requests open on worker 0
        wait_for(lambda: c.latest.in_flight == 6, 5.0, "the target to be rebalanced")
        assert c.wait(30.0)
    finally:
        c.close()
    assert_no_actor_left()
    assert c.state is RunState.STOPPED and c.stop_reason.startswith("duration reached")
    assert 1 <= c.worker_lost <= 3  # its share was 3 open requests at its last report
    lost = [e.message for e in sink.events if e.kind is EventKind.ERROR and "lost" in e.message]
    assert lost and "worker_lost" in lost[0] and "goes on with 1 worker" in lost[0]
    health = {h.worker: h for h in c.worker_health or []}
    assert health[1].state == "lost" and health[1].lost_requests == c.worker_lost and health[0].state == "done"
    lost_at = next(e.t_ns for e in sink.events if e.kind is EventKind.ERROR and "lost" in e.message)
    assert any(r.worker == 0 and r.t_start_ns > lost_at for r in sink.records)  # the survivor went on


def test_on_worker_loss_stop_ends_the_run(cluster, slow_sim):
    c = Controller(config(slow_sim, workers=2, concurrency=2, duration_s=30.0, max_tokens=2), stop_grace_s=0.5,
                   ray=RaySpec(address="local", on_worker_loss="stop"))
    c.start()
    try:
        wait_for(lambda: c.completed >= 1, 120.0, "the first record")
        ray.kill(ray.get_actor(c._pool.actor_names[0], namespace="wattload"), no_restart=True)
        assert c.wait(15.0)
    finally:
        c.close()
    assert_no_actor_left()
    assert c.state is RunState.FAILED and "--on-worker-loss stop" in c.stop_reason


def test_sigterm_stops_every_actor_and_the_report_has_the_workers(cluster, slow_sim, tmp_path):
    out = tmp_path / "run.json"
    env = {**os.environ, "RAY_ADDRESS": cluster.address}
    before = finished(slow_sim)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "run", slow_sim, "--headless", "--ray", "auto", "--workers", "2", "-d",
         "60s", "-c", "4", "--max-tokens", "4", "--no-calibrate", "--gpu", "none", "--json", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        wait_for(lambda: finished(slow_sim) >= before + 4 or proc.poll() is not None, 150.0, "a few requests")
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["interrupted"] and report["stop_signal"] == "SIGTERM" and report["worker_lost"] == 0
    assert report["result"]["total"]["requests"] > 0
    workers = report["workers"]
    assert [w["state"] for w in workers] == ["done", "done"] and len({w["node"] for w in workers}) == 2
    assert all(w["same_clock"] and w["clock_uncertainty_ms"] == 0 and w["records"] > 0 for w in workers)
    assert "worker      w0" in stdout and "Ray: 2 nodes" in stderr
    assert_no_actor_left()

"""--ray on a real Ray cluster of two raylets on this machine (one CPU each), so the two worker actors land on two
nodes: the same load as local worker processes on the one seeded schedule, a lost actor counted and survived (on the
dashboard too), a lost actor's trace rows sent by the other, and no actor left behind. One cluster and one simulator
serve the whole module: starting the cluster (~8 s) and each run's actors (~2-3 s, fresh Python processes importing
Ray and wattload) is most of the time these tests take, so each run proves as much as it can."""

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
from bench.worker_threads import niceness
from engine_helpers import CollectingSink, config, run_to_end, wait_for
from tui_canned import until

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'wattload[ray]')")

from engine.load.controller import Controller  # noqa: E402
from engine.load.ray_spec import RaySpec  # noqa: E402
from engine.load.schedule import PoissonArrivals, worker_seed  # noqa: E402
from engine.metrics.histogram import bucket_index  # noqa: E402
from engine.records import EventKind  # noqa: E402
from engine.session.trace_setup import prepare_trace  # noqa: E402
from engine.sim.model import SimConfig  # noqa: E402
from engine.sim.process import start_sim_process  # noqa: E402
from engine.snapshot import LoadMode, RunState  # noqa: E402
from engine.workload.traces import open_trace  # noqa: E402
from tui.app import live_app  # noqa: E402
from tui.screens.workers_view import WorkersScreen  # noqa: E402
from tui.widgets.load import LoadPanel  # noqa: E402

# One shared two-node cluster (8 s to start): the `own_core` tier runs two tests at a time, and this group keeps the
# module's tests on one test process, so the cluster starts once.
pytestmark = [pytest.mark.own_core, pytest.mark.xdist_group("ray_cluster")]

# Two long decode steps per 2-token answer (~0.4 s): a 2% bucket is ~8 ms, and a starved simulator's late wake-ups
# (a few ms each on a busy box) add up over two steps only. It runs in its own process: neither run's controller
# threads share its interpreter.
SLOW = SimConfig(decode_base_ms=200.0, seed=3)


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


def kill(c: Controller, worker: int) -> None:
    ray.kill(ray.get_actor(c._pool.actor_names[worker], namespace="wattload"), no_restart=True)


def kill_mid_run(c: Controller, worker: int, after_records: int, end_within_s: float) -> None:
    """Start ``c``, kill one of its actors once ``after_records`` came back, and let the run end."""
    c.start()
    try:
        wait_for(lambda: c.completed >= after_records, 120.0, "the first records")  # actors start slowly
        kill(c, worker)
        assert c.wait(end_within_s)
    finally:
        c.close()
    assert_no_actor_left()


def run(url: str, ray_spec: RaySpec | None, **fields) -> tuple[Controller, CollectingSink]:
    sink = CollectingSink()
    c = Controller(config(url, workers=2, **fields), sinks=[sink], stop_grace_s=2.0, ray=ray_spec)
    run_to_end(c, timeout_s=180.0)
    return c, sink


def test_ray_workers_on_two_nodes_send_what_local_processes_send(cluster, slow_sim):
    # closed loop: every request starts right after one ends, in step with the simulator's decode steps, so the
    # two runs' latencies compare within a bucket (open loop, each arrival meets the steps at its own phase)
    local, local_sink = run(slow_sim, None, concurrency=4, max_requests=12, max_tokens=2)
    on_ray, ray_sink = run(slow_sim, RaySpec(address="local"), concurrency=4, max_requests=12, max_tokens=2)
    assert_no_actor_left()
    assert on_ray.state is RunState.STOPPED and on_ray.worker_lost == 0
    assert len(ray_sink.records) == len(local_sink.records) == 12
    assert all(r.ok for r in ray_sink.records) and {r.worker for r in ray_sink.records} == {0, 1}
    health = on_ray.worker_health
    assert health is not None and len({h.node for h in health}) == 2  # really two raylets
    assert all(h.same_clock and h.clock_offset_ms == 0 and h.records == 6 for h in health)
    assert local.worker_health is None and local.latest.workers is None  # a plain run's snapshot has no workers
    a, b = local.latest.total, on_ray.latest.total
    assert a.requests == b.requests == 12 and a.output_tokens == b.output_tokens == 24
    for figure in ("e2e", "ttft"):
        p50_local, p50_ray = getattr(a, figure).p50, getattr(b, figure).p50  # ms
        assert abs(bucket_index(p50_local / 1e3) - bucket_index(p50_ray / 1e3)) <= 1, (figure, p50_local, p50_ray)
    starts = [e.message for e in ray_sink.events if e.kind is EventKind.START]
    assert starts and "on Ray (2 nodes" in starts[0]


def load_text(app) -> str:
    return str(app.screen.query_one(LoadPanel).render())


async def test_the_seeded_schedule_a_live_change_and_a_lost_actor_on_the_dashboard(cluster, slow_sim):
    """Open loop first (the one seeded schedule, dealt to two), then closed loop (a live change reaching both
    actors at once), then one actor killed: counted, the target rebalanced, the run going on, the dashboard showing
    it."""
    sink = CollectingSink()
    c = Controller(config(slow_sim, workers=2, mode=LoadMode.RATE, rate=20.0, seed=7, duration_s=60.0, max_tokens=2),
                   sinks=[sink], stop_grace_s=2.0, ray=RaySpec(address="local"))
    c.start()
    app = live_app(c, refresh_hz=20)
    try:
        async with app.run_test(size=(120, 36)) as pilot:
            await until(pilot, lambda: c.completed >= 6, 120.0, "the first records")  # actors start slowly
            await until(pilot, lambda: "workers    2 on 2 nodes" in load_text(app), 5.0, "the workers on the dashboard")
            # every thread of each actor, its worker loop too, at this process's niceness (Ray's default is 15)
            pids = [pid for pid in c.worker_pids if pid is not None]
            assert len(pids) == 2 and all(set(niceness(pid)) == {os.nice(0)} for pid in pids), [
                niceness(pid) for pid in pids
            ]
            c.set_concurrency(6)  # a live change reaches both actors at once: 3 + 3 open
            await until(pilot, lambda: c.latest.in_flight == 6, 3.0, "the new target on both workers")
            kill(c, 1)
            await until(pilot, lambda: c.worker_lost > 0, 10.0, "the loss to be noticed")
            # the survivor takes the whole target: six requests open on worker 0
            await until(pilot, lambda: c.latest.in_flight == 6, 5.0, "the target to be rebalanced")
            await until(pilot, lambda: "1/2 · 1 lost" in load_text(app), 5.0, "the loss on the dashboard")
            await pilot.press("n")
            await until(pilot, lambda: isinstance(app.screen, WorkersScreen) and "w1" in app.screen.text, 5.0, "n")
            lines = app.screen.text.splitlines()
            assert lines[0].startswith(f"2 workers on 2 nodes, 1 running, 1 lost ({c.worker_lost} requests")
            w0, w1 = (next(line for line in lines if line.startswith(f"w{i} ")) for i in (0, 1))
            assert " running " in w0 and "clock shared" in w0 and " lost " in w1 and "requests lost" in w1
            await pilot.press("escape")
            lost_at = next(e.t_ns for e in sink.events if e.kind is EventKind.ERROR and "lost" in e.message)
            await until(pilot, lambda: any(r.worker == 0 and r.t_start_ns > lost_at for r in sink.records), 10.0,
                        "the survivor's requests after the loss")
            c.stop()
            await until(pilot, lambda: c.wait(0), 30.0, "the run to end")
    finally:
        c.close()
    assert_no_actor_left()
    arrivals = PoissonArrivals(20.0, worker_seed(7, 0), c.t0_ns)
    schedule = [arrivals.next_due_ns() for _ in range(400)]  # 20 s of it: longer than the open-loop part
    sent = {r.t_scheduled_ns: r.worker for r in sink.records if r.t_scheduled_ns in set(schedule)}  # open loop
    # what one machine would send, up to the change (a worker that gets the change later than the other may
    # still send an arrival or two due after it: the switch to closed loop takes effect on receipt)...
    upto = next(i for i, t in enumerate(schedule) if t not in sent)
    assert upto >= 6 and len(sent) == len(set(sent))
    assert {sent[t] for t in schedule[:upto]} == {0, 1}  # ...dealt to two
    assert c.state is RunState.STOPPED and c.stop_reason == "stopped by the operator"
    assert 1 <= c.worker_lost <= 3  # its share was 3 open requests at its last report
    lost = [e.message for e in sink.events if e.kind is EventKind.ERROR and "lost" in e.message]
    assert lost and "worker_lost" in lost[0] and "goes on with 1 worker" in lost[0]
    health = {h.worker: h for h in c.worker_health or []}
    assert health[1].state == "lost" and health[1].lost_requests == c.worker_lost and health[0].state == "done"
    # the controller wrote the lost actor's last report (nothing open: its requests are counted lost), so the
    # window's edge stops waiting for it and its in-flight requests leave Snapshot.in_flight; the survivor's own
    # last report says so too
    finals = [p for p in sink.progress if p.final]
    assert sorted(p.worker for p in finals) == [0, 1] and next(p for p in finals if p.worker == 1).in_flight == 0


def test_a_lost_actors_trace_rows_are_sent_by_the_other(cluster, slow_sim, tmp_path):
    trace = tmp_path / "trace.jsonl"
    rows_n, spacing_ms = 32, 50  # 1.6 s of trace at speed 1: the kill (after ~0.5 s) comes well before its end
    trace.write_text("".join(json.dumps({"timestamp": k * spacing_ms, "input_length": 20, "output_length": 2,
                                         "hash_ids": [k]}) + "\n" for k in range(rows_n)))
    factory, cfg, _ = prepare_trace(config(slow_sim, workers=2), str(trace), calibrate=False)
    sink = CollectingSink()
    c = Controller(cfg, request_factory=factory, sinks=[sink], stop_grace_s=2.0, ray=RaySpec(address="local"))
    kill_mid_run(c, 1, after_records=2, end_within_s=60.0)
    assert c.state is RunState.STOPPED and c.stop_reason == f"request count reached ({rows_n})"
    lost = next(e for e in sink.events if e.kind is EventKind.ERROR and "lost" in e.message)
    handed = re.search(r"take over its trace rows not started at its last report \((\d+) started\)", lost.message)
    # the rows it had started by its last report: those whose records came back and those counted as worker_lost
    assert handed and int(handed.group(1)) == sum(r.worker == 1 for r in sink.records) + c.worker_lost
    # every row once: in the records (each at its own due time, or at the handover for those that came due while
    # the loss went unnoticed) or counted as worker_lost (open at the lost worker's last report), none twice
    assert len(sink.records) + c.worker_lost == rows_n and c.unsent_after_loss == 0
    due = [round(row.t_s * 1e9) for row in open_trace(trace).rows()]  # ns after t0: each row's due time

    def row_of(r) -> int | None:  # the row a record was sent for, when it went out at the row's own due time
        k = round((r.t_scheduled_ns - c.t0_ns) / 1e6 / spacing_ms)
        return k if 0 <= k < rows_n and abs(r.t_scheduled_ns - c.t0_ns - due[k]) < 1_000 else None

    on_time = [row_of(r) for r in sink.records if row_of(r) is not None]
    late = {r.t_scheduled_ns for r in sink.records if row_of(r) is None}
    assert len(on_time) == len(set(on_time))  # no row twice
    assert len(late) <= 1 and all(t > lost.t_ns for t in late)  # the rest: at the one handover instant
    # worker 0 sent rows first dealt to worker 1 (odd rows) that were due after the loss
    taken = [r for r in sink.records if r.worker == 0 and (k := row_of(r)) is not None and k % 2 == 1
             and r.t_scheduled_ns > lost.t_ns]
    assert taken and all(r.ok for r in sink.records)


def test_on_worker_loss_stop_ends_the_run(cluster, slow_sim):
    c = Controller(config(slow_sim, workers=2, concurrency=2, duration_s=30.0, max_tokens=2), stop_grace_s=0.5,
                   ray=RaySpec(address="local", on_worker_loss="stop"))
    kill_mid_run(c, 0, after_records=1, end_within_s=15.0)
    assert c.state is RunState.FAILED and "--on-worker-loss stop" in c.stop_reason


def test_sigterm_stops_every_actor_and_the_report_has_the_workers(cluster, slow_sim, tmp_path):
    out = tmp_path / "run.json"
    env = {**os.environ, "RAY_ADDRESS": cluster.address}
    before = finished(slow_sim)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tui.cli", "run", slow_sim, "--headless", "--ray", "auto", "--workers", "2", "-d",
         "60s", "-c", "4", "--max-tokens", "2", "--no-calibrate", "--gpu", "none", "--json", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        wait_for(lambda: finished(slow_sim) >= before + 2 or proc.poll() is not None, 150.0, "a few requests")
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

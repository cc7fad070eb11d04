"""Remote GPU telemetry: DCGM exporters (built with prometheus_client) and a fake Prometheus query API."""

import time

import pytest
from prom_servers import exporter, prom_answer, prom_error, raw_server
from prometheus_client import CollectorRegistry, Counter, Gauge

from engine.gpu.base import PowerCapError
from engine.gpu.energy import EnergyAccount
from engine.gpu.remote import DCGM_NAMES_REGEX, open_dcgm, open_prometheus_gpus
from engine.gpu.session import GpuSession
from engine.telemetry.prom_query import widen

LABELS = ["gpu", "UUID", "device", "modelName", "Hostname"]


def dcgm_registry(host: str, gpus: int = 2):
    reg = CollectorRegistry()
    power = Gauge("DCGM_FI_DEV_POWER_USAGE", "W", LABELS, registry=reg)
    energy = Counter("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "mJ", LABELS, registry=reg)
    temp = Gauge("DCGM_FI_DEV_GPU_TEMP", "C", LABELS, registry=reg)
    used = Gauge("DCGM_FI_DEV_FB_USED", "MiB", LABELS, registry=reg)
    free = Gauge("DCGM_FI_DEV_FB_FREE", "MiB", LABELS, registry=reg)
    handles = []
    for i in range(gpus):
        lab = (str(i), f"GPU-{host}-{i}", f"nvidia{i}", "NVIDIA H100 80GB HBM3", host)
        power.labels(*lab).set(300 + i)
        energy.labels(*lab).inc(1_000_000)
        temp.labels(*lab).set(50)
        used.labels(*lab).set(1000)
        free.labels(*lab).set(80000)
        handles.append((power.labels(*lab), energy.labels(*lab)))
    return reg, handles


def wait_for_samples(backend, indices, want, timeout_s=15.0):
    got = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len(got) < want:
        got += backend.read(indices)
        time.sleep(0.05)
    return got


def test_two_dcgm_hosts_are_four_gpus_with_energy_from_the_counter():
    reg1, h1 = dcgm_registry("node-1")
    reg2, _ = dcgm_registry("node-2")
    with exporter(reg1) as url1, exporter(reg2) as url2:
        backend, message = open_dcgm([url1, url2], interval_s=0.1)
        assert backend is not None, message
        try:
            names = [g.name for g in backend.gpus()]
            assert names == [f"NVIDIA H100 80GB HBM3 @node-{h}:{g}" for h in (1, 2) for g in (0, 1)]
            assert "4 GPUs" in message and "2 hosts" in message
            first = backend.read([0, 1, 2, 3])
            assert {s.gpu_index for s in first} == {0, 1, 2, 3}
            s0 = next(s for s in first if s.gpu_index == 0)
            assert (s0.power_w, s0.energy_mj, s0.temperature_c, s0.mem_total_mib) == (300.0, 1_000_000, 50, 81000)
            assert backend.read([0]) == []  # nothing new until the exporter's values change
            h1[0][1].inc(250_000)  # node-1 GPU 0 used 250 J more
            [later] = wait_for_samples(backend, [0], 1)
            assert later.energy_mj == 1_250_000 and later.t_ns > s0.t_ns
            account = EnergyAccount(names={0: "g"}, source="dcgm")
            account.add(s0)
            account.add(later)
            stats = account.stats(later.t_ns, window_s=10.0, window_output_tokens=0, window_total_tokens=0,
                                  total_output_tokens=0, total_total_tokens=0, steady=True)
            assert stats.total.energy_j == pytest.approx(250.0)
            with pytest.raises(PowerCapError, match="cannot be set remotely"):
                backend.set_power_limit(0, 400)
        finally:
            backend.close()


def test_the_cap_keys_say_caps_cannot_be_set_remotely():
    reg, _ = dcgm_registry("node-1", gpus=1)
    with exporter(reg) as url:
        backend, _ = open_dcgm([url])
        assert backend is not None
        session = GpuSession.open(backend, gpus=None, sim_url=None, on_samples=lambda s: None)
        try:
            message, events = session.step_power_cap(25)
            assert "cannot be set remotely" in message and events == []
            assert not session.power_cap_changed
        finally:
            session.close()


def test_an_exporter_without_dcgm_series_is_one_line():
    reg = CollectorRegistry()
    Gauge("node_load1", "x", registry=reg).set(1)
    with exporter(reg) as url:
        backend, message = open_dcgm([url])
    assert backend is None and message == "no GPU telemetry: dcgm: no DCGM_FI_DEV_* series in the answer"


def test_the_simulators_dcgm_endpoint_is_a_gpu():
    from engine.sim.server import SimServer

    with SimServer() as sim:
        backend, message = open_dcgm([sim.url.removesuffix("/v1") + "/sim/dcgm/metrics"], interval_s=0.1)
        assert backend is not None, message
        try:
            [gpu] = backend.gpus()
            assert gpu.name.startswith("Simulated H100") and gpu.name.endswith("@wattload-sim:0")
            [s] = backend.read([0])
            assert s.power_w is not None and s.energy_mj is not None and s.power_limit_w == 700.0
        finally:
            backend.close()


def fake_prometheus(answer):
    queries = []

    def respond(path, query):
        if path != "/api/v1/query":
            return 404, "text/plain", b"not found", 0
        queries.append(query["query"][0])
        return 200, "application/json", answer(query["query"][0]), 0

    return queries, respond


def test_gpus_through_a_prometheus_query_are_summed_per_host_and_stamped_by_their_values():
    t_value = time.time() - 5.0  # Prometheus scraped these values 5 s ago

    def answer(q):
        series = []
        for host in ("node-1", "node-2"):
            labels = {"gpu": "0", "Hostname": host, "modelName": "H100", "instance": f"{host}:9400"}
            series.append(({**labels, "__name__": "DCGM_FI_DEV_POWER_USAGE"}, 500.0))
            series.append(({**labels, "__name__": "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"}, 9e6))
        return prom_answer(series, t_value)

    queries, respond = fake_prometheus(answer)
    with raw_server(respond) as prom:
        before = time.perf_counter_ns()
        backend, message = open_prometheus_gpus(prom, 'DCGM_FI_DEV_POWER_USAGE{Hostname=~"node-(1|2)"}')
        assert backend is not None, message
        try:
            assert [g.name for g in backend.gpus()] == ["H100 @node-1:0", "H100 @node-2:0"]
            samples = backend.read([0, 1])
        finally:
            backend.close()
    assert queries[0] == '{__name__=~"' + DCGM_NAMES_REGEX + '", Hostname=~"node-(1|2)"}'
    assert [s.power_w for s in samples] == [500.0, 500.0]
    # the values' own time, 5 s before the answer arrived, is where they go on our clock
    assert all(s.t_ns < before - 4 * 10**9 for s in samples)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (prom_answer([]), "the query matched no series"),
        (prom_error('parse error at char 5: unexpected "}"'), 'query failed: parse error at char 5: unexpected "}"'),
        (b"<html>proxy login</html>", "did not answer JSON"),
    ],
)
def test_prometheus_queries_that_match_nothing_or_fail_are_one_line(body, why):
    _, respond = fake_prometheus(lambda q: body)
    with raw_server(respond) as prom:
        backend, message = open_prometheus_gpus(prom, "DCGM_FI_DEV_POWER_USAGE")
    assert backend is None and message.endswith(why) and "\n" not in message


def test_widen_keeps_the_matchers_and_leaves_expressions_alone():
    assert widen('{job="vllm"}', "vllm:.+") == '{__name__=~"vllm:.+", job="vllm"}'
    assert widen("up", "x") == '{__name__=~"x"}'
    assert widen("sum(rate(x[1m]))", "y") == "sum(rate(x[1m]))"


def test_dcgm_blank_sentinels_and_impossible_values_read_as_na():
    body = (
        b"# TYPE DCGM_FI_DEV_GPU_TEMP gauge\n"
        b'DCGM_FI_DEV_GPU_TEMP{gpu="0",Hostname="h"} 2147483632\n'  # DCGM's int32 blank: not supported
        b"# TYPE DCGM_FI_DEV_POWER_USAGE gauge\n"
        b'DCGM_FI_DEV_POWER_USAGE{gpu="0",Hostname="h"} 140737488355328.0\n'  # fp64 blank
        b"# TYPE DCGM_FI_DEV_SM_CLOCK gauge\n"
        b'DCGM_FI_DEV_SM_CLOCK{gpu="0",Hostname="h"} 1980\n'
        b"# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter\n"
        b'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="0",Hostname="h"} 9223372036854775794\n'  # int64 blank
    )
    with raw_server(lambda path, q: (200, "text/plain", body, 0)) as root:
        backend, message = open_dcgm([root + "/metrics"])
        assert backend is not None, message
        try:
            [s] = backend.read([0])
        finally:
            backend.close()
    assert (s.temperature_c, s.power_w, s.energy_mj, s.sm_clock_mhz) == (None, None, None, 1980)


@pytest.mark.parametrize(("spec", "picked"), [
    ("node-2", ["node-2:0", "node-2:1"]),  # a host: all its GPUs
    ("node-1:1", ["node-1:1"]),  # host:gpu
    ("3,0", ["node-2:1", "node-1:0"]),  # indices in (host, GPU) order, in the order given
    ("GPU-node-2-0", ["node-2:0"]),  # a UUID
])
def test_gpus_selects_among_remote_gpus_by_index_host_label_or_uuid(monkeypatch, spec, picked):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # this machine's: it must not filter remote GPUs
    reg1, _ = dcgm_registry("node-1")
    reg2, _ = dcgm_registry("node-2")
    with exporter(reg1) as url1, exporter(reg2) as url2:
        backend, message = open_dcgm([url1, url2], interval_s=0.1, gpus=spec)
        assert backend is not None, message
        try:
            assert [g.name.split("@")[1] for g in backend.gpus()] == picked
            indices = [g.index for g in backend.gpus()]
            assert {s.gpu_index for s in backend.read(indices)} == set(indices)  # readings only for those
            assert f"{len(picked)} GPU" in message
        finally:
            backend.close()
        everything, _ = open_dcgm([url1, url2], interval_s=0.1)
        assert everything is not None
        try:
            assert len(everything.gpus()) == 4  # CUDA_VISIBLE_DEVICES=0 did not filter
        finally:
            everything.close()


def test_gpus_naming_no_remote_gpu_is_one_line():
    reg, _ = dcgm_registry("node-1")
    with exporter(reg) as url:
        backend, message = open_dcgm([url], interval_s=0.1, gpus="node-9")
    assert backend is None
    assert "\n" not in message and "no remote GPU matches 'node-9'" in message and "0=node-1:0" in message

"""Server metrics over real loopback HTTP: exporters built with prometheus_client in each engine's names."""

import time

import pytest
from prom_servers import exporter, raw_server
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from engine.telemetry.scrape import MetricsEndpoint, fetch_all_now
from engine.telemetry.server_account import ServerAccount
from engine.telemetry.server_source import origin_metrics_url, server_sources, to_server_sample

NS = 1_000_000_000


def scrape(url: str, timeout_s: float = 30.0):  # generous: these cases test content, not speed
    [result] = fetch_all_now([MetricsEndpoint(url)], timeout_s)
    return to_server_sample(result)


def vllm_registry():
    reg = CollectorRegistry()
    m = {
        "running": Gauge("vllm:num_requests_running", "r", ["model_name"], registry=reg).labels("m"),
        "waiting": Gauge("vllm:num_requests_waiting", "w", ["model_name"], registry=reg).labels("m"),
        "kv": Gauge("vllm:kv_cache_usage_perc", "kv", ["model_name"], registry=reg).labels("m"),
        "queries": Counter("vllm:prefix_cache_queries", "q", ["model_name"], registry=reg).labels("m"),
        "hits": Counter("vllm:prefix_cache_hits", "h", ["model_name"], registry=reg).labels("m"),
        "prompt": Counter("vllm:prompt_tokens", "p", ["model_name"], registry=reg).labels("m"),
        "gen": Counter("vllm:generation_tokens", "g", ["model_name"], registry=reg).labels("m"),
        "preempt": Counter("vllm:num_preemptions", "x", ["model_name"], registry=reg).labels("m"),
        "ttft": Histogram("vllm:time_to_first_token_seconds", "t", ["model_name"], registry=reg,
                          buckets=(0.1, 0.2, 0.4)).labels("m"),
    }
    return reg, m


def test_vllm_gauges_rates_and_ttft_percentiles_against_hand_computed_values():
    reg, m = vllm_registry()
    m["running"].set(7)
    m["waiting"].set(3)
    m["kv"].set(0.42)
    m["gen"].inc(1000)
    m["prompt"].inc(500)
    m["queries"].inc(100)
    for v in (0.05,) * 4:
        m["ttft"].observe(v)
    with exporter(reg) as url:
        first = scrape(url)
        m["gen"].inc(600)
        m["prompt"].inc(300)
        m["queries"].inc(200)
        m["hits"].inc(50)
        m["preempt"].inc(2)
        for v in (0.05,) * 10 + (0.15,) * 20 + (0.3,) * 10:  # 40 requests in the window
            m["ttft"].observe(v)
        second = scrape(url)
    assert first.engine == second.engine == "vllm"
    assert second.gauges == {"running": 7, "waiting": 3, "kv_usage": pytest.approx(0.42)}
    account = ServerAccount(window_s=10.0, t0_ns=first.t_ns)
    account.add([first, second])
    stats = account.stats(second.t_ns)
    span_s = (second.t_ns - first.t_ns) / NS
    assert stats.available and stats.engine == "vllm"
    assert (stats.running, stats.waiting) == (7, 3)
    assert stats.kv_usage_pct == pytest.approx(42.0)
    assert stats.generation_tokens_per_s == pytest.approx(600 / span_s)
    assert stats.prompt_tokens_per_s == pytest.approx(300 / span_s)
    assert stats.prefix_hit_rate_pct == pytest.approx(25.0)  # 50 hits of 200 queries in the window
    assert stats.preemptions == 2
    # window TTFT: 10 <= 0.1, 20 in (0.1, 0.2], 10 in (0.2, 0.4]. p50: rank 20 -> 0.1 + 0.1 * 10/20 = 150 ms
    assert stats.ttft.count == 40
    assert stats.ttft.p50 == pytest.approx(150.0)
    # p99: rank 39.6 in (0.2, 0.4] holding 30..40 -> 0.2 + 0.2 * 9.6/10 = 392 ms
    assert stats.ttft.p99 == pytest.approx(392.0)
    assert stats.ttft.mean == pytest.approx((10 * 50 + 20 * 150 + 10 * 300) / 40)


def test_a_counter_that_goes_backwards_is_a_restart_never_a_negative_rate():
    values = iter([1000.0, 1500.0, 200.0])
    body = lambda: f"# TYPE vllm:generation_tokens_total counter\nvllm:generation_tokens_total {next(values)}\n"  # noqa: E731
    with raw_server(lambda path, q: (200, "text/plain", body().encode(), 0)) as root:
        samples = [scrape(root + "/metrics") for _ in range(3)]
    account = ServerAccount(window_s=60.0, t0_ns=samples[0].t_ns)
    account.add(samples)
    stats = account.stats(samples[-1].t_ns)
    span_s = (samples[-1].t_ns - samples[0].t_ns) / NS
    assert stats.generation_tokens_per_s == pytest.approx((500 + 200) / span_s)
    assert stats.generation_tokens_per_s > 0


def _sglang():
    reg = CollectorRegistry()
    Gauge("sglang:num_running_reqs", "r", registry=reg).set(12)
    Gauge("sglang:num_queue_reqs", "q", registry=reg).set(4)
    Gauge("sglang:token_usage", "t", registry=reg).set(0.5)
    Gauge("sglang:cache_hit_rate", "c", registry=reg).set(0.3)
    Gauge("sglang:gen_throughput", "g", registry=reg).set(900)
    Counter("sglang:generation_tokens", "g", registry=reg).inc(10)
    return reg, {"running": 12, "waiting": 4, "kv_usage": 0.5, "prefix_hit_rate": 0.3, "gen_throughput": 900}


def _tgi():
    reg = CollectorRegistry()
    Gauge("tgi_queue_size", "q", registry=reg).set(5)
    Gauge("tgi_batch_current_size", "b", registry=reg).set(9)
    Histogram("tgi_request_generated_tokens", "g", registry=reg, buckets=(10, 100)).observe(64)
    Histogram("tgi_request_queue_duration", "q", registry=reg, buckets=(0.1, 1)).observe(0.05)
    Histogram("tgi_request_mean_time_per_token_duration", "t", registry=reg, buckets=(0.01, 0.1)).observe(0.02)
    return reg, {"running": 9, "waiting": 5}


def _llamacpp():
    reg = CollectorRegistry()
    Gauge("llamacpp:requests_processing", "p", registry=reg).set(2)
    Gauge("llamacpp:requests_deferred", "d", registry=reg).set(1)
    Counter("llamacpp:tokens_predicted", "t", registry=reg).inc(77)
    Counter("llamacpp:prompt_tokens", "t", registry=reg).inc(33)
    return reg, {"running": 2, "waiting": 1}


@pytest.mark.parametrize(("make", "engine"), [(_sglang, "sglang"), (_tgi, "tgi"), (_llamacpp, "llamacpp")])
def test_each_engine_is_recognised_by_its_names(make, engine):
    reg, gauges = make()
    with exporter(reg) as url:
        sample = scrape(url)
    assert sample.ok and sample.engine == engine
    assert dict(sample.gauges) == pytest.approx(gauges)
    if engine == "tgi":
        assert sample.counters["generation_tokens"] == 64  # the generated-tokens histogram's _sum
        assert set(sample.histograms) == {"queue", "tpot"}
    if engine == "llamacpp":
        assert sample.counters == {"generation_tokens": 77, "prompt_tokens": 33}


def test_an_unknown_engine_lists_the_families_it_found():
    reg = CollectorRegistry()
    Gauge("myserver_inflight", "x", registry=reg).set(1)
    Counter("myserver_tokens", "x", registry=reg).inc()
    with exporter(reg) as url:
        sample = scrape(url)
    account = ServerAccount(t0_ns=sample.t_ns)
    account.add([sample])
    stats = account.stats(sample.t_ns)
    assert sample.engine == "unknown"
    assert {"myserver_inflight", "myserver_tokens"} <= set(stats.endpoints[0].families)
    assert stats.running is None


@pytest.mark.parametrize(
    ("status", "ctype", "body", "why"),
    [
        (200, "text/html", b"<html><body>Sign in</body></html>", "HTML"),
        (200, "text/plain", b"\x00\xff garbage \x01 1 2 3\n", "not Prometheus"),
        (404, "text/plain", b"404 page not found", "HTTP 404"),
    ],
)
def test_bad_endpoints_give_one_line_and_no_figures(status, ctype, body, why):
    with raw_server(lambda path, q: (status, ctype, body, 0)) as root:
        sample = scrape(root + "/metrics")
    assert not sample.ok and why in sample.error and "\n" not in sample.error
    account = ServerAccount(t0_ns=sample.t_ns)
    account.add([sample])
    stats = account.stats(sample.t_ns)
    assert not stats.available and why in stats.message


def test_a_huge_body_is_refused_without_reading_it():
    big = b"# " + b"x" * (50 * 1024 * 1024)
    with raw_server(lambda path, q: (200, "text/plain", big, 0)) as root:
        sample = scrape(root + "/metrics")
    assert "limit" in sample.error


def test_a_slow_endpoint_times_out_and_the_panel_says_stale_since():
    reg, m = vllm_registry()
    m["running"].set(4)
    with exporter(reg) as url:
        good = scrape(url)
    with raw_server(lambda path, q: (200, "text/plain", b"vllm:num_requests_running 1\n", 2.0)) as root:
        [slow] = fetch_all_now([MetricsEndpoint(root + "/metrics")], timeout_s=0.2)
    bad = to_server_sample(slow)
    bad = type(bad)(good.t_ns + 6 * NS, good.source, error=bad.error)  # the same source, six seconds later
    account = ServerAccount(t0_ns=good.t_ns - 10 * NS)
    account.add([good, bad])
    stats = account.stats(good.t_ns + 6 * NS)
    assert "timed out" in bad.error
    assert not stats.available
    assert stats.endpoints[0].message.startswith("stale since t=10s: timed out")


def test_a_dead_endpoint_is_one_line():
    with raw_server(lambda path, q: (200, "text/plain", b"", 0)) as root:
        pass  # closed: nothing listens there any more
    sample = scrape(root + "/metrics", timeout_s=1.0)
    assert not sample.ok and sample.error == "ConnectError"


def test_auto_means_the_origins_metrics_and_credentials_never_show():
    assert origin_metrics_url("http://gpuhost:8000/v1") == "http://gpuhost:8000/metrics"
    [src] = server_sources("auto", "http://user:s3cret@gpuhost:8000/v1")
    assert "s3cret" not in src.name and src.name.startswith("http://gpuhost:8000/metrics")
    assert server_sources("none", "http://h/v1") == []


def test_the_simulator_serves_vllm_names_that_wattload_reads(tmp_path):
    import httpx

    from engine.sim.model import SimConfig
    from engine.sim.server import SimServer

    with SimServer(SimConfig(speed=20.0)) as sim:
        root = sim.url.removesuffix("/v1")
        before = scrape(root + "/metrics")
        for _ in range(3):
            body = {"model": sim.config.model, "prompt": "hello", "max_tokens": 8, "ignore_eos": True}
            assert httpx.post(sim.url + "/completions", json=body, timeout=30).status_code == 200
        after = scrape(root + "/metrics")
    assert after.engine == "vllm" and not after.warning
    assert after.counters["generation_tokens"] - before.counters.get("generation_tokens", 0) == 24
    assert after.histograms["ttft"].count == 3 and after.histograms["itl"].count == 21
    assert after.histograms["e2e"].count == 3 and after.histograms["queue"].count == 3
    assert {"running", "waiting", "kv_usage"} <= set(after.gauges)
    assert time.perf_counter_ns() >= after.t_ns


def test_a_slowly_scraped_source_is_not_stale_between_its_scrapes():
    from dataclasses import replace

    reg, _ = vllm_registry()
    with exporter(reg) as url:
        sample = replace(scrape(url), interval_s=10.0)
    account = ServerAccount(t0_ns=sample.t_ns)
    account.add([sample])
    assert account.stats(sample.t_ns + 20 * NS).available  # 20 s after a scrape every 10 s: fine
    assert not account.stats(sample.t_ns + 31 * NS).available  # three scrapes missed: stale


def test_impossible_gauges_are_dropped_with_a_warning():
    body = (b"# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running -3\n"
            b"# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc 7.5\n"
            b"# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting +Inf\n"
            b"# TYPE vllm:generation_tokens_total counter\nvllm:generation_tokens_total 10\n")
    with raw_server(lambda path, q: (200, "text/plain", body, 0)) as root:
        sample = scrape(root + "/metrics")
    assert sample.ok and sample.engine == "vllm"
    assert dict(sample.gauges) == {}  # -3 requests, a KV use of 750 %, and an infinite queue are not believed
    assert "vllm:num_requests_running: ignored values outside 0..1e+09" in sample.warning
    assert "vllm:kv_cache_usage_perc: ignored values outside 0..1" in sample.warning
    assert sample.counters == {"generation_tokens": 10}


def test_server_figures_through_a_prometheus_query_sum_the_replicas():
    from prom_servers import prom_answer

    from engine.telemetry.prom_query import SERVER_NAMES

    queries = []

    def answer(path, query):
        queries.append(query["query"][0])
        series = []
        for pod, running in (("vllm-0", 5.0), ("vllm-1", 7.0)):
            base = {"job": "vllm", "pod": pod, "model_name": "m"}
            series.append(({**base, "__name__": "vllm:num_requests_running"}, running))
            series.append(({**base, "__name__": "vllm:generation_tokens_total"}, 1000.0))
            for le, n in (("0.1", 3.0), ("0.5", 8.0), ("+Inf", 10.0)):
                series.append(({**base, "__name__": "vllm:time_to_first_token_seconds_bucket", "le": le}, n))
        return 200, "application/json", prom_answer(series), 0

    with raw_server(answer) as prom:
        [src] = server_sources(None, "http://lb:8000/v1", prometheus=prom, query='{job="vllm"}')
        [result] = fetch_all_now([src])
    sample = to_server_sample(result)
    assert queries == ['{__name__=~"' + SERVER_NAMES + '", job="vllm"}']
    assert sample.engine == "vllm" and sample.source == 'prometheus: {job="vllm"}'
    assert sample.gauges["running"] == 12  # both replicas
    assert sample.counters["generation_tokens"] == 2000
    ttft = sample.histograms["ttft"]  # merged bucket by bucket across the two pods
    assert ttft.bounds[:2] == (0.1, 0.5) and ttft.counts == (6.0, 16.0, 20.0)

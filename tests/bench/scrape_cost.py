"""What scraping Prometheus endpoints costs, and proof that it does not slow the load client (prints figures).

1. Scraper CPU: a metrics server (a subprocess pinned to the server CPU) serves a vLLM-sized /metrics (gauges,
   counters and vLLM's six latency histograms for two models) and a DCGM body for 8 GPUs; this process scrapes
   N copies of it every 0.1 s on the scraper thread, parsing each answer and normalising it into a
   ServerSample (the whole live path), for ``--seconds``. Printed: body size, CPU ms per scrape, and the share of
   one core per endpoint scraped once a second (the default interval).
2. Client capacity: ``client_capacity.py``'s engine run (one worker pinned to the client CPU, zero-cost fake
   server), alternately without and with 8 server-metrics sources scraped at ``--scrape-hz`` (default 1, the
   default interval) by the controller's process; the ratios of the tokens/s and of the tokens per worker
   CPU-second (the client's own capacity, whatever the shared server core manages), measured in the same run.

    .venv/bin/python tests/bench/scrape_cost.py [--seconds 6] [--endpoints 1,8] [--rounds 2] [--streams 256]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import client_capacity as cc

VLLM_MODELS = ("llama-3.1-8b", "llama-3.1-70b")


def vllm_body() -> bytes:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.exposition import generate_latest

    from engine.sim.metrics import ITL_BOUNDS, REQUEST_BOUNDS, TTFT_BOUNDS

    reg = CollectorRegistry()
    labels = ["model_name", "engine"]
    gauges = [Gauge(n, n, labels, registry=reg) for n in
              ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc")]
    counters = [Counter(n, n, labels, registry=reg) for n in
                ("vllm:prompt_tokens", "vllm:generation_tokens", "vllm:num_preemptions", "vllm:prefix_cache_queries",
                 "vllm:prefix_cache_hits", "vllm:request_success")]
    hists = [Histogram(n, n, labels, buckets=b, registry=reg) for n, b in (
        ("vllm:time_to_first_token_seconds", TTFT_BOUNDS), ("vllm:inter_token_latency_seconds", ITL_BOUNDS),
        ("vllm:e2e_request_latency_seconds", REQUEST_BOUNDS), ("vllm:request_queue_time_seconds", REQUEST_BOUNDS),
        ("vllm:request_prefill_time_seconds", REQUEST_BOUNDS), ("vllm:request_decode_time_seconds", REQUEST_BOUNDS))]
    for m in VLLM_MODELS:
        for g in gauges:
            g.labels(m, "0").set(3)
        for c in counters:
            c.labels(m, "0").inc(12345)
        for h in hists:
            for v in (0.01, 0.1, 1.0, 3.0):
                h.labels(m, "0").observe(v)
    return generate_latest(reg)


def dcgm_body(gpus: int = 8) -> bytes:
    fields = ("SM_CLOCK", "MEM_CLOCK", "GPU_TEMP", "POWER_USAGE", "TOTAL_ENERGY_CONSUMPTION", "GPU_UTIL",
              "MEM_COPY_UTIL", "FB_USED", "FB_FREE", "POWER_VIOLATION", "XID_ERRORS", "PCIE_REPLAY_COUNTER")
    lines = []
    for f in fields:
        lines += [f"# HELP DCGM_FI_DEV_{f} x", f"# TYPE DCGM_FI_DEV_{f} gauge"]
        for g in range(gpus):
            lines.append(f'DCGM_FI_DEV_{f}{{gpu="{g}",UUID="GPU-{g:08d}",device="nvidia{g}",modelName="NVIDIA H100 '
                         f'80GB HBM3",Hostname="node-1",DCGM_FI_DRIVER_VERSION="580.65"}} {1000 + g}')
    return ("\n".join(lines) + "\n").encode()


SERVE = r'''
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
bodies = {"/metrics": open(sys.argv[1], "rb").read(), "/dcgm": open(sys.argv[2], "rb").read()}
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = bodies.get(self.path, b"")
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[3])), H)
s.daemon_threads = True
s.handle_error = lambda *a: None  # clients that hang up at the end are not news
s.serve_forever()
'''


def start_metrics_server(tmp: Path, cpu: int) -> tuple[subprocess.Popen[bytes], str, int, int]:
    vllm, dcgm = tmp / "vllm.prom", tmp / "dcgm.prom"
    vllm.write_bytes(vllm_body())
    dcgm.write_bytes(dcgm_body())
    port = cc.free_port()
    cmd = [sys.executable, "-c", SERVE, str(vllm), str(dcgm), str(port)]
    proc = subprocess.Popen(["taskset", "-c", str(cpu), *cmd])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}", vllm.stat().st_size, dcgm.stat().st_size


def scraper_cpu(url: str, endpoints: int, seconds: float, interval_s: float = 0.1) -> tuple[float, int, int]:
    """(CPU seconds of this process per scrape, scrapes, failed scrapes) with ``endpoints`` sources."""
    from engine.telemetry.scrape import MetricsEndpoint, Scraper
    from engine.telemetry.server_source import to_server_sample

    results: list[bool] = []

    def take(r: object) -> None:
        results.append(to_server_sample(r).ok)  # type: ignore[arg-type]

    scraper = Scraper([MetricsEndpoint(url) for _ in range(endpoints)], take, interval_s)
    scraper.start()
    time.sleep(1.0)  # connections open, imports done
    n0, cpu0 = len(results), time.process_time()
    time.sleep(seconds)
    n1, cpu1 = len(results), time.process_time()
    scraper.stop()
    scrapes = n1 - n0
    return (cpu1 - cpu0) / max(1, scrapes), scrapes, results[n0:n1].count(False)


def _fake_server() -> Path:
    """The shared zero-cost server: next to the repository (a checkout) or two levels up (a worktree)."""
    here = Path(__file__).resolve().parents[2]
    for candidate in (cc.DEFAULT_FAKE, here.parents[1] / "shared" / "bench" / "fake_openai.py"):
        if candidate.exists():
            return candidate
    return cc.DEFAULT_FAKE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--endpoints", default="1,8")
    parser.add_argument("--rounds", type=int, default=2, help="off/on pairs for the client-capacity comparison")
    parser.add_argument("--streams", type=int, default=256)
    parser.add_argument("--scrape-hz", type=float, default=1.0, help="scrapes per second per source, part 2")
    parser.add_argument("--fake-server", type=Path, default=_fake_server())
    parser.add_argument("--servers", type=int, default=1, help="fake-server processes, part 2 (default 1)")
    parser.add_argument("--server-cpus", default=None, help="CPUs for the fake servers (default 0..S-1)")
    parser.add_argument("--client-cpu", type=int, default=None, help="CPU for the worker (default S)")
    parser.add_argument("--controller-cpu", type=int, default=None,
                        help="CPU for the controller and its scraper thread (default: the first server CPU)")
    parser.add_argument("--metrics-cpu", type=int, default=None,
                        help="CPU for the metrics server (default: the first server CPU)")
    args = parser.parse_args()
    cc.SERVER_CPUS = (tuple(int(c) for c in args.server_cpus.split(",")) if args.server_cpus
                      else tuple(range(args.servers)))
    cc.CLIENT_CPU = args.servers if args.client_cpu is None else args.client_cpu
    import tempfile

    os.sched_setaffinity(0, {cc.CLIENT_CPU})
    with tempfile.TemporaryDirectory() as tmp:
        metrics_cpu = cc.SERVER_CPUS[0] if args.metrics_cpu is None else args.metrics_cpu
        server, root, vllm_size, dcgm_size = start_metrics_server(Path(tmp), metrics_cpu)
        try:
            print(f"metrics server on CPU {metrics_cpu}, scraper on CPU {cc.CLIENT_CPU}; load average "
                  f"{os.getloadavg()[0]:.2f}")
            print(f"{'body':>22} {'bytes':>8} {'endpoints':>10} {'scrapes':>8} {'failed':>7} {'CPU ms/scrape':>14} "
                  f"{'core % per endpoint at 1 Hz':>28}")
            for path, label, size in (("/metrics", "vLLM, 2 models", vllm_size), ("/dcgm", "DCGM, 8 GPUs", dcgm_size)):
                for n in (int(x) for x in args.endpoints.split(",")):
                    per, scrapes, failed = scraper_cpu(root + path, n, args.seconds)
                    print(f"{label:>22} {size:>8,} {n:>10} {scrapes:>8} {failed:>7} {per * 1e3:>14.2f} "
                          f"{per * 100:>27.2f}%", flush=True)
            capacity(args, root)
        finally:
            server.terminate()
            server.wait(10)


def capacity(args: argparse.Namespace, metrics_root: str) -> None:
    """Engine tokens/s without and with 8 sources scraped at 10 Hz in the controller's process."""
    import engine.load.controller as controller_module
    from engine.telemetry.scrape import MetricsEndpoint
    from engine.telemetry.server_source import ServerMetrics

    plain = controller_module.Controller

    class Scraping(plain):  # type: ignore[misc,valid-type]
        def __init__(self, *a: object, **kw: object) -> None:
            sources = [MetricsEndpoint(metrics_root + "/metrics") for _ in range(8)]
            metrics = ServerMetrics(sources, interval_s=1.0 / args.scrape_hz)
            super().__init__(*a, server_metrics=metrics, **kw)  # type: ignore[arg-type]

    # By default the controller shares the fake server's core, as in client_capacity; on a bigger box give it its own.
    controller_cpu = cc.SERVER_CPUS[0] if args.controller_cpu is None else args.controller_cpu
    os.sched_setaffinity(0, {controller_cpu})
    fake = cc.FakeServers(args.fake_server, args.servers, cc.SERVER_CPUS, cc.TOKENS, False)
    print(f"\nclient capacity, {args.streams} streams, {args.seconds:g} s per point ({args.servers} fake server(s) on "
          f"CPU {','.join(map(str, cc.SERVER_CPUS))}, controller and scraper on CPU {controller_cpu}, worker on CPU "
          f"{cc.CLIENT_CPU})")
    print(f"{'round':>6} {'scraping':>11} {'engine tok/s':>13} {'worker CPU':>11} {'tok/CPU-s':>10} {'loop lag':>9}")
    figures: dict[bool, list[float]] = {False: [], True: []}
    per_cpu: dict[bool, list[float]] = {False: [], True: []}
    label = f"8 x {args.scrape_hz:g} Hz"
    try:
        for r in range(args.rounds):
            for scraping in (False, True):
                controller_module.Controller = Scraping if scraping else plain
                eng = cc.engine_run(fake, "auto", args.streams, args.seconds, False, False)
                figures[scraping].append(eng["tokens_per_s"])
                tpc = eng["tokens_per_s"] / eng["cpu_share"] if eng["cpu_share"] > 0 else float("nan")
                per_cpu[scraping].append(tpc)
                print(f"{r + 1:>6} {label if scraping else 'off':>11} {eng['tokens_per_s']:>13,.0f} "
                      f"{eng['cpu_share']:>10.0%} {tpc:>10,.0f} {eng['loop_lag_max']:>7.1f}ms", flush=True)
    finally:
        controller_module.Controller = plain
        fake.close()
    off, on = (sum(figures[k]) / len(figures[k]) for k in (False, True))
    c_off, c_on = (sum(per_cpu[k]) / len(per_cpu[k]) for k in (False, True))
    print(f"mean tokens/s: off {off:,.0f}, on {on:,.0f}, on/off = {on / off:.3f}; tokens per worker CPU-s: off "
          f"{c_off:,.0f}, on {c_on:,.0f}, on/off = {c_on / c_off:.3f} (load average {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()

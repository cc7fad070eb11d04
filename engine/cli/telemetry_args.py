"""The telemetry options `run` and `demo` share: server /metrics, remote GPUs (DCGM), and a Prometheus server.

They turn into an opened remote GPU backend (or None: the --gpu choice applies) and a ServerMetrics source.
A source that does not answer is one line on stderr and the run goes on without it; only contradictory options
are errors.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.cli.common import parse_duration
from engine.cli.exits import UserError

if TYPE_CHECKING:
    from engine.gpu.base import GpuBackend
    from engine.load.controller import Controller
    from engine.telemetry.server_source import ServerMetrics

DCGM_EXPORTER_PORT = 9400  # dcgm-exporter's default listen port


def add_telemetry_args(parser: argparse.ArgumentParser, *, demo: bool = False) -> None:
    group = parser.add_argument_group("server metrics and remote GPUs (Prometheus)")
    default = " (default in the demo: auto)" if demo else ""
    group.add_argument("--server-metrics", metavar="auto|URL,...", default="auto" if demo else None,
                       help="scrape the server's Prometheus metrics: auto = /metrics on the endpoint's origin, or "
                            f"URLs (several for replicas); none to turn off{default}")  # fmt: skip
    group.add_argument("--gpu-metrics", nargs="?", const="auto", metavar="URL,...",
                       help="GPU telemetry from DCGM exporters' /metrics (several hosts at once); without a URL: "
                            f"the simulator's DCGM endpoint, else port {DCGM_EXPORTER_PORT} on the endpoint's host")
    group.add_argument("--prometheus", metavar="URL", help="a Prometheus server to query (with the two below)")
    group.add_argument("--gpu-query", metavar="PROMQL",
                       help='GPU series to read through --prometheus, e.g. DCGM_FI_DEV_POWER_USAGE{Hostname=~"n1|n2"}')
    group.add_argument("--server-query", metavar="PROMQL",
                       help='server series to read through --prometheus, e.g. {job="vllm"}')
    group.add_argument("--scrape-interval", type=parse_duration, default=1.0, metavar="TIME",
                       help="how often to scrape or query (default 1s)")


@dataclass
class Telemetry:
    gpu: GpuBackend | None  # a remote backend to use instead of --gpu, when one was asked for and answered
    server: ServerMetrics | None

    def attach(self, controller: Controller) -> None:
        """A remote GPU source that stops (or starts again) answering becomes a warning in the event log."""
        from engine.gpu.remote import RemoteGpuBackend

        if isinstance(self.gpu, RemoteGpuBackend):
            from time import perf_counter_ns

            from engine.records import ControlEvent, EventKind

            self.gpu.on_problem = lambda line: controller.emit(
                ControlEvent(perf_counter_ns(), EventKind.WARNING, message=line)
            )


def check_telemetry_args(args: argparse.Namespace) -> None:
    """UserError (one line) for telemetry options that contradict each other; before anything is probed."""
    gpu_metrics = getattr(args, "gpu_metrics", None)
    prometheus = getattr(args, "prometheus", None)
    gpu_query = getattr(args, "gpu_query", None)
    server_query = getattr(args, "server_query", None)
    if prometheus and not (gpu_query or server_query):
        raise UserError("--prometheus needs --gpu-query and/or --server-query (what to read from it)")
    if (gpu_query or server_query) and not prometheus:
        raise UserError("--gpu-query and --server-query read through a Prometheus server: give --prometheus URL")
    if gpu_metrics and gpu_query:
        raise UserError("give --gpu-metrics (DCGM exporters) or --gpu-query (through Prometheus), not both")


def telemetry_from_args(args: argparse.Namespace, base_url: str, *, sim_root: str | None = None) -> Telemetry:
    """Open what the telemetry options ask for; UserError only for options that contradict each other."""
    check_telemetry_args(args)
    server_metrics = getattr(args, "server_metrics", None)
    gpu_metrics = getattr(args, "gpu_metrics", None)
    prometheus = getattr(args, "prometheus", None)
    gpu_query = getattr(args, "gpu_query", None)
    server_query = getattr(args, "server_query", None)
    interval = getattr(args, "scrape_interval", 1.0)
    gpu: GpuBackend | None = None
    if gpu_metrics or gpu_query:
        from engine.gpu.remote import open_dcgm, open_prometheus_gpus

        if gpu_query and prometheus:
            backend, message = open_prometheus_gpus(prometheus, gpu_query, interval_s=interval)
        else:
            backend, message = open_dcgm(_dcgm_urls(str(gpu_metrics), base_url, sim_root), interval_s=interval)
        if backend is None:
            print(f"wattload: {message}", file=sys.stderr)
        gpu = backend
    server = None
    if (server_metrics and server_metrics.strip().lower() not in ("none", "off")) or server_query:
        from engine.telemetry.server_source import ServerMetrics, server_sources

        sources = server_sources(server_metrics, base_url, prometheus=prometheus, query=server_query)
        server = ServerMetrics(sources, interval) if sources else None
    return Telemetry(gpu, server)


def _dcgm_urls(spec: str, base_url: str, sim_root: str | None) -> list[str]:
    urls = []
    for item in (s.strip() for s in spec.split(",")):
        if item.lower() == "auto":
            if sim_root:
                urls.append(sim_root.rstrip("/") + "/sim/dcgm/metrics")
            else:
                import httpx

                host = httpx.URL(base_url).host
                urls.append(f"http://{host}:{DCGM_EXPORTER_PORT}/metrics")
        elif item:
            urls.append(item)
    return urls

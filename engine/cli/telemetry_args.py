"""The telemetry options `run` and `demo` share (server /metrics, DCGM exporters, a Prometheus server), turned
into the SessionSpec's ``TelemetrySpec``. Only contradictory options are errors; a source that does not answer is
one line on stderr when the session opens, and the run goes on without it."""

from __future__ import annotations

import argparse

from engine.cli.common import parse_duration
from engine.cli.exits import UserError
from engine.telemetry.spec import DCGM_EXPORTER_PORT, TelemetrySpec


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


def telemetry_spec_from_args(args: argparse.Namespace) -> TelemetrySpec | None:
    """The options as a TelemetrySpec (None when none is given); UserError (one line) when they contradict."""
    spec = TelemetrySpec(
        server_metrics=getattr(args, "server_metrics", None),
        gpu_metrics=getattr(args, "gpu_metrics", None),
        prometheus=getattr(args, "prometheus", None),
        gpu_query=getattr(args, "gpu_query", None),
        server_query=getattr(args, "server_query", None),
        interval_s=getattr(args, "scrape_interval", 1.0),
    )
    problem = spec.problem()
    if problem is not None:
        raise UserError(problem)
    if not (spec.server_metrics or spec.gpu_metrics or spec.prometheus):
        return None
    return spec

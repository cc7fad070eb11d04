"""Telemetry read over Prometheus, as data (part of ``SessionSpec``), and opening it for one session.

``TelemetrySpec`` says what to scrape; ``open_telemetry`` turns it into a remote GPU backend (which replaces the
``--gpu`` choice) and a ``ServerMetrics`` source, once the endpoint's base URL is known. A source that does not
answer is one line through ``notify`` and the session goes on without it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter_ns
from typing import TYPE_CHECKING

import httpx
from pydantic import BaseModel, ConfigDict, Field

from engine.records import ControlEvent, EventKind

if TYPE_CHECKING:
    from engine.gpu.base import GpuBackend
    from engine.telemetry.server_source import ServerMetrics

DCGM_EXPORTER_PORT = 9400  # dcgm-exporter's default listen port


class TelemetrySpec(BaseModel):
    """What to read besides the client's own measurements; every field optional."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    server_metrics: str | None = None
    """"auto" (/metrics on the endpoint's origin), comma-separated URLs (replicas), or None/"none"."""
    gpu_metrics: str | None = None
    """DCGM exporters' /metrics URLs, comma-separated; "auto" = the simulator's, else port 9400 on the endpoint."""
    prometheus: str | None = None
    """A Prometheus server's root, for the two queries below."""
    gpu_query: str | None = None
    """GPU series through ``prometheus`` (a plain selector is widened to every DCGM field)."""
    server_query: str | None = None
    """Server series through ``prometheus`` (a plain selector is widened to every engine's names)."""
    interval_s: float = Field(default=1.0, gt=0)
    """How often each source is scraped or queried."""

    def problem(self) -> str | None:
        """One line when the options contradict each other, else None."""
        if self.prometheus and not (self.gpu_query or self.server_query):
            return "--prometheus needs --gpu-query and/or --server-query (what to read from it)"
        if (self.gpu_query or self.server_query) and not self.prometheus:
            return "--gpu-query and --server-query read through a Prometheus server: give --prometheus URL"
        if self.gpu_metrics and self.gpu_query:
            return "give --gpu-metrics (DCGM exporters) or --gpu-query (through Prometheus), not both"
        return None


@dataclass
class OpenedTelemetry:
    gpu: GpuBackend | None  # a remote backend to use instead of the --gpu choice, when asked for and answering
    server: ServerMetrics | None

    def attach(self, emit: Callable[[ControlEvent], None]) -> None:
        """A remote GPU source that stops (or starts again) answering becomes a warning event."""
        from engine.gpu.remote import RemoteGpuBackend

        if isinstance(self.gpu, RemoteGpuBackend):
            self.gpu.on_problem = lambda line: emit(ControlEvent(perf_counter_ns(), EventKind.WARNING, message=line))


def open_telemetry(spec: TelemetrySpec, base_url: str, *, sim_root: str | None = None, gpus: str | None = None,
                   notify: Callable[[str], None] = lambda _line: None) -> OpenedTelemetry:  # fmt: skip
    """Open the sources ``spec`` names for the endpoint at ``base_url``; never raises for a source that fails.
    ``gpus`` (``--gpus``) selects among the remote GPUs as it does among local ones."""
    gpu: GpuBackend | None = None
    if spec.gpu_metrics or spec.gpu_query:
        from engine.gpu.remote import open_dcgm, open_prometheus_gpus

        if spec.gpu_query and spec.prometheus:
            backend, message = open_prometheus_gpus(spec.prometheus, spec.gpu_query, interval_s=spec.interval_s,
                                                    gpus=gpus)  # fmt: skip
        else:
            urls = _dcgm_urls(str(spec.gpu_metrics), base_url, sim_root)
            backend, message = open_dcgm(urls, interval_s=spec.interval_s, gpus=gpus)
        if backend is None:
            notify(message)
        gpu = backend
    server = None
    wanted = spec.server_metrics and spec.server_metrics.strip().lower() not in ("none", "off")
    if wanted or spec.server_query:
        from engine.telemetry.server_source import ServerMetrics, server_sources

        sources = server_sources(spec.server_metrics, base_url, prometheus=spec.prometheus, query=spec.server_query)
        server = ServerMetrics(sources, spec.interval_s) if sources else None
    return OpenedTelemetry(gpu, server)


def _dcgm_urls(spec: str, base_url: str, sim_root: str | None) -> list[str]:
    urls = []
    for item in (s.strip() for s in spec.split(",")):
        if item.lower() == "auto":
            if sim_root:
                urls.append(sim_root.rstrip("/") + "/sim/dcgm/metrics")
            else:
                urls.append(f"http://{httpx.URL(base_url).host}:{DCGM_EXPORTER_PORT}/metrics")
        elif item:
            urls.append(item)
    return urls

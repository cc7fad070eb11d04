"""Per-host power for remote GPU telemetry (DCGM, Prometheus): a row per host when there are few, totals when many.

Remote GPUs are named "<model> @<host>:<gpu>" by the backend; this groups the snapshot's readings by that host.
Local GPUs (no "@") give an empty line, so the GPU panel looks as before.
"""

from __future__ import annotations

from engine.reports import format as fmt
from engine.snapshot import GpuStats

MAX_HOST_ROWS = 4


def host_of(name: str) -> str | None:
    if " @" not in name:
        return None
    return name.rsplit(" @", 1)[1].rsplit(":", 1)[0]


def host_summary(gpu: GpuStats) -> str:
    """"node-1 1,210 W · node-2 1,180 W" for up to MAX_HOST_ROWS hosts; "48 GPUs on 6 hosts" beyond."""
    watts: dict[str, float] = {}
    gpus: dict[str, int] = {}
    for r in gpu.gpus:
        host = host_of(r.name)
        if host is None:
            return ""
        gpus[host] = gpus.get(host, 0) + 1
        if r.watts is not None:
            watts[host] = watts.get(host, 0.0) + r.watts
    if len(gpus) <= 1:
        return ""
    if len(gpus) > MAX_HOST_ROWS:
        return f"{sum(gpus.values())} GPUs on {len(gpus)} hosts"
    return " · ".join(f"{host} {fmt.watts(watts.get(host))}" for host in sorted(gpus))

"""The capacity-planning arithmetic, pure: one measured operating point and a demand -> a fleet and its cost.

    mean tok/s     = demand per day / 86,400
    peak tok/s     = mean x peak factor
    replicas       = ceil(peak / (goodput per replica x (1 - headroom)))    (a replica = the GPUs measured together)
    GPUs           = replicas x GPUs per replica;  nodes = ceil(GPUs / GPUs per node)
    utilisation    = mean / (replicas x goodput)                             (the fleet's average load)
    watts          = replicas x (idle + (measured - idle) x utilisation)     (measured: at the operating point)
    kWh/month      = watts x 730 h / 1000 x PUE
    $/month        = GPUs x $/GPU-h x 730 + kWh/month x $/kWh (unless the GPU price includes power)
    $/M tokens     = $/month / (mean x 3600 x 730) x 1e6 = the break-even API price
    margin         = API price - break-even (per M output tokens; x tokens per month for $/month)
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

HOURS_PER_MONTH = 730.0
SECONDS_PER_DAY = 86_400.0
_PER = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hour": 3600.0, "d": SECONDS_PER_DAY,
        "day": SECONDS_PER_DAY, "month": HOURS_PER_MONTH * 3600.0}  # fmt: skip


def parse_demand(text: str) -> float:
    """'2e9/day', '5M/h', '30000/s' -> output tokens per second."""
    m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([kKmMgGbB]?)\s*/\s*([a-z]+)\s*", text)
    if m is None or m.group(3) not in _PER:
        raise ValueError(f"--demand wants output tokens per time, e.g. 2e9/day, 5M/h, 30000/s; got {text!r}")
    scale = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "b": 1e9}[m.group(2).lower()]
    try:
        value = float(m.group(1)) * scale
    except ValueError:
        raise ValueError(f"--demand: not a number: {m.group(1)!r}") from None
    if value <= 0:
        raise ValueError("--demand must be positive")
    return value / _PER[m.group(3)]


class OperatingPoint(BaseModel):
    """One measured configuration: what one replica serves at the SLO and what it draws and costs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    goodput_tokens_per_s: float = Field(gt=0)
    """Output tok/s one replica sustains within the SLO (the measured goodput, or the capacity step's tok/s)."""
    gpus_per_replica: int = Field(default=1, ge=1)
    watts_per_replica: float | None = Field(default=None, ge=0)
    """Mean draw of the replica's GPUs at that load (None: energy unknown)."""
    idle_watts_per_gpu: float = Field(default=120.0, ge=0)
    gpu_dollars_per_hour: float = Field(ge=0)
    """Per GPU, energy excluded."""
    dollars_per_kwh: float = Field(default=0.0, ge=0)
    pue: float = Field(default=1.0, ge=1.0)
    energy_included: bool = True
    note: str = ""


class Demand(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    tokens_per_s: float = Field(gt=0)
    """Mean output tokens per second."""
    peak: float = Field(default=1.0, ge=1.0)
    headroom: float = Field(default=0.0, ge=0.0, lt=1.0)
    gpus_per_node: int = Field(default=8, ge=1)
    api_price: float | None = Field(default=None, ge=0)
    """$ per million output tokens the plan is compared with."""


class Plan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    point: OperatingPoint
    peak_tokens_per_s: float
    replicas: int
    gpus: int
    nodes: int
    utilisation: float
    watts: float | None
    kwh_per_month: float | None
    gpu_dollars_per_month: float
    energy_dollars_per_month: float | None
    dollars_per_month: float | None
    tokens_per_month: float
    dollars_per_million: float | None
    """The effective cost per M output tokens at this utilisation: the break-even API price."""
    margin_per_million: float | None = None
    margin_fraction: float | None = None
    margin_dollars_per_month: float | None = None


def plan(point: OperatingPoint, demand: Demand) -> Plan:
    peak = demand.tokens_per_s * demand.peak
    usable = point.goodput_tokens_per_s * (1.0 - demand.headroom)
    replicas = max(1, math.ceil(peak / usable - 1e-9))
    gpus = replicas * point.gpus_per_replica
    nodes = math.ceil(gpus / demand.gpus_per_node)
    util = demand.tokens_per_s / (replicas * point.goodput_tokens_per_s)
    watts: float | None = None
    kwh: float | None = None
    if point.watts_per_replica is not None:
        idle = point.idle_watts_per_gpu * point.gpus_per_replica
        watts = replicas * (idle + (point.watts_per_replica - idle) * util)
        kwh = watts * HOURS_PER_MONTH / 1000.0 * point.pue
    gpu_dollars = gpus * point.gpu_dollars_per_hour * HOURS_PER_MONTH
    if point.energy_included:
        energy_dollars: float | None = 0.0
    else:
        energy_dollars = kwh * point.dollars_per_kwh if kwh is not None else None
    total = gpu_dollars + energy_dollars if energy_dollars is not None else None
    tokens = demand.tokens_per_s * 3600.0 * HOURS_PER_MONTH
    per_m = total / tokens * 1e6 if total is not None else None
    margin = margin_frac = margin_month = None
    if demand.api_price is not None and per_m is not None:
        margin = demand.api_price - per_m
        margin_frac = margin / demand.api_price if demand.api_price > 0 else None
        margin_month = margin * tokens / 1e6
    return Plan(
        point=point,
        peak_tokens_per_s=peak,
        replicas=replicas,
        gpus=gpus,
        nodes=nodes,
        utilisation=util,
        watts=watts,
        kwh_per_month=kwh,
        gpu_dollars_per_month=gpu_dollars,
        energy_dollars_per_month=energy_dollars,
        dollars_per_month=total,
        tokens_per_month=tokens,
        dollars_per_million=per_m,
        margin_per_million=margin,
        margin_fraction=margin_frac,
        margin_dollars_per_month=margin_month,
    )


def ranked(points: Sequence[OperatingPoint], demand: Demand) -> list[Plan]:
    """Plans for every configuration, cheapest per M tokens first (unknown cost last, then by GPUs)."""
    plans = [plan(p, demand) for p in points]
    return sorted(plans, key=lambda p: (p.dollars_per_million is None, p.dollars_per_million or 0.0, p.gpus))

"""GPU & cost: watts against the power limit, energy, energy per token and what a million tokens cost.

Flags say when a figure should not be trusted yet ("not steady" right after a load or cap change) or when it was
measured indirectly (energy integrated from power samples instead of the GPU's energy counter). Without
telemetry the panel says why, and cost figures stay n/a rather than pretending to be zero.
"""

from __future__ import annotations

from textual.content import Content

from engine.reports import format as fmt
from engine.snapshot import GpuStats, Snapshot
from tui.widgets.base import SnapshotPanel, kv

INTEGRATED_MARK = "∫"


def enforced_total(gpu: GpuStats) -> float | None:
    """Sum of enforced limits when every GPU reports one (None when any does not)."""
    values = [reading.enforced_limit_w for reading in gpu.gpus]
    if not values or any(v is None for v in values):
        return None
    return float(sum(v for v in values if v is not None))


def cap_binding(gpu: GpuStats) -> bool:
    return any(reading.power_cap_binding for reading in gpu.gpus)


def sm_clock(gpu: GpuStats) -> int | None:
    """The slowest SM clock across GPUs: the one that limits a tensor-parallel model."""
    clocks = [reading.sm_clock_mhz for reading in gpu.gpus if reading.sm_clock_mhz is not None]
    return min(clocks) if clocks else None


class GpuCostPanel(SnapshotPanel):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, title="GPU & cost")

    def build(self, snapshot: Snapshot) -> Content:
        gpu, cost = snapshot.gpu, snapshot.cost
        lines: list[Content] = []
        if not gpu.available:
            lines.append(Content.styled(gpu.message or "no GPU telemetry", "$text-warning"))
        else:
            lines.extend(self._power_lines(gpu))
        value_style = "bold" if gpu.window.steady else "$text-muted"
        lines.append(
            Content.assemble(
                kv("J/tok", Content.styled(fmt.sig(gpu.window.joules_per_output_token), value_style), width=7),
                "  ",
                kv("kWh/M", Content.styled(fmt.sig(gpu.window.kwh_per_million_output_tokens), value_style), width=6),
            )
        )
        lines.append(
            Content.assemble(
                kv("$/M out", Content.styled(fmt.dollars(cost.window_per_million_output), value_style), width=8),
                "  ",
                kv("all", Content.styled(fmt.dollars(cost.window_per_million_total), value_style), width=4),
            )
        )
        lines.append(
            Content.assemble(
                kv("$/h", fmt.dollars(cost.dollars_per_hour, missing=fmt.NA), width=8),
                "  ",
                kv("spent", fmt.dollars(cost.total_dollars), width=6),
            )
        )
        flags: list[Content] = []
        if gpu.available and cap_binding(gpu):
            flags.append(Content.styled("⚡ power cap binding", "$warning bold"))
        if gpu.available and not gpu.window.steady:
            flags.append(Content.styled("◌ not steady", "$text-warning"))
        if flags:
            lines.append(Content("  ").join(flags))
        return Content("\n").join(lines)

    def _power_lines(self, gpu: GpuStats) -> list[Content]:
        limit = gpu.power_limit_w
        enforced = enforced_total(gpu)
        power = Content.assemble(
            (fmt.watts(gpu.watts), "bold"),
            (f" / {fmt.watts(limit)} limit", "$text-muted"),
        )
        if enforced is not None and limit is not None and abs(enforced - limit) >= 1:
            power = power + Content.styled(f" (enf {fmt.watts(enforced)})", "$text-warning")
        integrated = gpu.energy_source == "integrated"
        energy = Content.assemble(
            (("" if not integrated else INTEGRATED_MARK) + fmt.energy(gpu.total.energy_j), "bold"),
            ("  integrated" if integrated else "", "$text-muted"),
        )
        return [
            kv("power", power, width=7),
            Content.assemble(kv("energy", energy, width=7), "  ", kv("SM", fmt.mhz(sm_clock(gpu)), width=3)),
        ]

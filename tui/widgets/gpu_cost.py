"""GPU & cost: watts against the power limit, energy, temperature, utilisation and memory, energy per token and
what a million tokens cost; with room (about 200 columns), a row per GPU beside them, as nvitop has.

Flags say when a figure should not be trusted yet ("not steady" right after a load or cap change), when it was
measured indirectly (energy integrated from power samples instead of the GPU's energy counter) and when remote
telemetry (DCGM, Prometheus) stopped answering: "stale since …" and why take the first two lines, in the warning
colour, and the figures under them are muted (they are the last ones the source sent).
Without telemetry the panel says why, and cost figures stay n/a rather than pretending to be zero.
"""

from __future__ import annotations

from textual import events
from textual.content import Content

from engine.reports import format as fmt
from engine.snapshot import GpuReading, GpuStats, Snapshot
from tui.widgets.base import SnapshotPanel, kv
from tui.widgets.gpu_hosts import host_summary

INTEGRATED_MARK = "∫"
SUMMARY_W = 36  # the summary column; per-GPU rows go beside it when the panel has room for both
GPU_ROWS_MIN_W = SUMMARY_W + 2 + 37
GPU_ROW_LINES = 6  # the panel's height: a header and five GPUs ("+N more" in the last when there are more)


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


def gib(mib: float | None) -> str:
    if mib is None:
        return fmt.DASH
    value = mib / 1024
    return f"{value:.1f}" if value < 100 else f"{value:,.0f}"


def memory(used: float | None, total: float | None, unit: str = " GiB") -> str:
    """"45.1/80.0 GiB" (used of total), "45.1 GiB" when the total is unknown."""
    if used is None:
        return fmt.DASH
    return f"{gib(used)}/{gib(total)}{unit}" if total is not None else f"{gib(used)}{unit}"


def _known(values: list[int | None]) -> list[int]:
    return [v for v in values if v is not None]


def health_line(gpu: GpuStats, narrow: bool = False) -> Content | None:
    """Temperature, utilisation and memory: the GPU's own, or across several the hottest, the mean use and the
    summed memory (each GPU's row shows its own when there is room). None when the source reports none."""
    gpus = gpu.gpus
    temps = _known([r.temperature_c for r in gpus])
    utils = _known([r.util_gpu_pct for r in gpus])
    used = _known([r.mem_used_mib for r in gpus])
    totals = _known([r.mem_total_mib for r in gpus])
    if not (temps or utils or used):
        return None
    many = len(gpus) > 1
    parts: list[Content] = []
    if temps:
        parts.append(kv("max " if many else "", f"{max(temps)}°C", width=4 if many else 0))
    if utils:
        parts.append(kv("util", f"{sum(utils) / len(utils):.0f}%" + (" avg" if many else ""), width=5))
    if used:
        total = sum(totals) if len(totals) == len(gpus) else None
        parts.append(kv("mem", memory(sum(used), total, "G" if narrow else " GiB"), width=4))
    return Content(" " if narrow else "  ").join(parts)


def gpu_row(r: GpuReading) -> Content:
    """One GPU, nvitop-style: index, temperature, utilisation, memory, watts of the limit."""
    temp = fmt.DASH if r.temperature_c is None else f"{r.temperature_c}°C"
    util = fmt.DASH if r.util_gpu_pct is None else f"{r.util_gpu_pct}%"
    watts = fmt.watts(r.watts).removesuffix(" W")
    limit = fmt.watts(r.power_limit_w)
    binding = Content.styled(" ⚡", "$warning bold") if r.power_cap_binding else Content("")
    return Content.assemble(
        (f"{r.index:>2} ", "bold"), (temp.rjust(5), ""), (util.rjust(5), ""),
        (memory(r.mem_used_mib, r.mem_total_mib).rjust(14), ""), (f" {watts:>4}", "bold"), (f"/{limit}", "$text-muted"),
        binding,
    )  # fmt: skip


class GpuCostPanel(SnapshotPanel):
    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, title="GPU & cost")
        self._snapshot: Snapshot | None = None

    def on_resize(self, _event: events.Resize) -> None:
        if self._snapshot is not None:  # whether per-GPU rows fit depends on the width
            self.show(self._snapshot)

    def build(self, snapshot: Snapshot) -> Content:
        self._snapshot = snapshot
        gpu = snapshot.gpu
        width = self.content_size.width if self.is_mounted else 0
        self.border_subtitle = self._flags(gpu) or host_summary(gpu)  # hosts: remote GPUs on several hosts
        if not gpu.available or not gpu.gpus or width < GPU_ROWS_MIN_W:
            return Content("\n").join(self._summary(snapshot, narrow=0 < width < SUMMARY_W))
        # a column of its own beside the GPU rows; one GPU's row repeats its health line exactly (several GPUs:
        # the line is their hottest, mean use and total memory, which the rows do not say)
        summary = self._summary(snapshot, narrow=True, health=len(gpu.gpus) > 1)
        rows = self._gpu_rows(gpu)
        lines = []
        for i in range(max(len(summary), len(rows))):
            left = summary[i].truncate(SUMMARY_W, ellipsis=True) if i < len(summary) else Content("")
            right = rows[i] if i < len(rows) else Content("")
            lines.append(Content.assemble(left, " " * max(1, SUMMARY_W + 2 - left.cell_length), right))
        return Content("\n").join(lines)

    @staticmethod
    def _gpu_rows(gpu: GpuStats) -> list[Content]:
        header = Content.styled(f"{'GPU':>3}{'temp':>5}{'util':>5}{'mem':>14}{'W/limit':>10}", "$text-muted")
        readings = list(gpu.gpus)
        if len(readings) <= GPU_ROW_LINES - 1:
            return [header, *(gpu_row(r) for r in readings)]
        shown = readings[: GPU_ROW_LINES - 2]
        more = Content.styled(f"  +{len(readings) - len(shown)} more GPUs (wattload gpu lists them)", "$text-muted")
        return [header, *(gpu_row(r) for r in shown), more]

    @staticmethod
    def _flags(gpu: GpuStats) -> str:
        flags = []
        if gpu.available and cap_binding(gpu):
            flags.append("[$warning bold]⚡ power cap binding[/]")
        if gpu.available and not gpu.window.steady:
            flags.append("[$text-warning]◌ not steady[/]")
        return "  ".join(flags)

    def _summary(self, snapshot: Snapshot, *, narrow: bool, health: bool = True) -> list[Content]:
        """The figures, six lines at most; ``narrow`` packs the labels tighter (a 60-column terminal); ``health``:
        the temperature/use/memory line (left out beside the per-GPU rows)."""
        gpu, cost = snapshot.gpu, snapshot.cost
        w1, w2 = (0, 0) if narrow else (10, 6)
        lines: list[Content] = []
        stale = self._stale_lines(snapshot)
        lines.extend(stale)
        if not gpu.available:
            if not stale:
                lines.append(Content.styled(gpu.message or "no GPU telemetry", "$text-warning"))
        else:
            lines.extend(self._power_lines(gpu, narrow=narrow, health=health)[: 1 if stale else 3])  # stale: watts
        style = "bold" if gpu.window.steady and not stale else "$text-muted"

        def pair(a: str, a_value: str, b: str, b_value: str, value_style: str = style) -> Content:
            return Content.assemble(kv(a, Content.styled(a_value, value_style), width=max(w1, len(a) + 1)), "  ",
                                    kv(b, Content.styled(b_value, value_style), width=max(w2, len(b) + 1)))  # fmt: skip

        window = gpu.window
        lines.append(pair("J/out tok", fmt.sig(window.joules_per_output_token),
                          "kWh/M", fmt.sig(window.kwh_per_million_output_tokens)))  # fmt: skip
        lines.append(pair("$/M out", fmt.dollars(cost.window_per_million_output),
                          "in+out", fmt.dollars(cost.window_per_million_total)))  # fmt: skip
        lines.append(pair("$/h", fmt.dollars(cost.dollars_per_hour, missing=fmt.NA),
                          "spent", fmt.dollars(cost.total_dollars), "bold"))  # fmt: skip
        return lines

    @staticmethod
    def _stale_lines(snapshot: Snapshot) -> list[Content]:
        """Remote telemetry that stopped answering: since when (session time), then why (the source without its
        scheme, and its error); the figures below are the last ones it sent."""
        gpu = snapshot.gpu
        if gpu.stale_s is None:
            return []
        since = fmt.clock(max(0.0, snapshot.t_s - gpu.stale_s))
        why = (gpu.stale_reason or "no answer").removeprefix("http://").removeprefix("https://")
        return [Content.styled(f"⚠ stale since {since}", "$warning bold"), Content.styled(" " + why, "$text-warning")]

    def _power_lines(self, gpu: GpuStats, *, narrow: bool, health: bool) -> list[Content]:
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
        lines = [
            kv("power", power, width=7),
            Content.assemble(kv("energy", energy, width=7), "  ", kv("SM", fmt.mhz(sm_clock(gpu)), width=3)),
        ]
        line = health_line(gpu, narrow) if health else None
        if line is not None:
            lines.append(line)
        return lines

"""What a headless run prints and writes: a progress line, the summary table, and the --json report model.

Everything comes from one final ``Snapshot`` (the same figures the TUI shows), so the table, the JSON file and
the live panels can never disagree. The report carries ``RunConfig.safe_dump()``: settings without the API key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine import __version__
from engine.load.worker_health import WorkerHealth
from engine.metrics.turns import TurnFigures
from engine.reports.clock import wall_clock_label as wall_clock_label  # re-exported: its old home
from engine.reports.server import server_summary_line
from engine.snapshot import LoadMode, Percentiles, Snapshot, WindowStats
from engine.telemetry.prefix_cache import PrefixCacheFigures
from engine.workload.calibration import CalibrationResult
from engine.workload.lengths import LengthCheck


class RunReport(BaseModel):
    """The --json file: the final snapshot's figures plus the settings that produced them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    wattload_version: str = __version__
    started_at: str = Field(description="wall-clock start (ISO 8601): a label only, durations use perf_counter")
    state: str
    stop_reason: str = ""
    interrupted: bool = False
    stop_signal: str | None = Field(default=None, description="the signal that stopped the run (SIGINT, SIGTERM, ...)")
    cancelled_at_stop: int = Field(default=0, description="in-flight requests cancelled when the run stopped")
    worker_lost: int = Field(default=0, description="in-flight requests of Ray workers lost mid-run (--ray)")
    unsent_after_loss: int = Field(default=0, description="of --requests: a lost worker's share nobody could send")
    workers: list[WorkerHealth] | None = Field(
        default=None, description="--ray: per-worker node, clock offset, loop and send lag, records/s, state")
    recording: str | None = Field(default=None, description="the file this run recorded to, if any")
    recording_failed: str | None = Field(default=None, description="why the recording stopped early, if it did")
    settings: dict[str, Any] = Field(description="RunConfig.safe_dump(): no secrets")
    pricing: str | None = None
    result: Snapshot
    system: dict[str, Any] | None = Field(default=None, description="host, driver, CUDA, GPUs (engine.sysinfo)")
    lengths: LengthCheck | None = Field(default=None, description="target vs measured tokens by the server's usage")
    calibration: CalibrationResult | None = Field(default=None, description="how the prompts were sized")
    workload: dict[str, Any] | None = None
    """The profile as loaded with its sha256, or the trace's fingerprint (sha256, rows, lengths)."""
    turns: list[TurnFigures] = []
    """Multi-turn sessions: figures per turn number."""
    prefix_cache: PrefixCacheFigures | None = None
    """With server metrics: the server's prefix-cache hit rate over the session (beside the per-turn figures)."""


def worker_lines(controller: Any) -> list[str]:
    """--ray: one summary line per worker (node, clock, lags, records/s) and what was lost; none for local ones."""
    health: list[WorkerHealth] | None = getattr(controller, "worker_health", None)
    if not health:
        return []
    lines = [f"  worker      {h.line()}" for h in health]
    lost = getattr(controller, "worker_lost", 0)
    if lost:
        lines.append(f"  worker_lost {lost} in-flight requests of lost workers (not in the figures above)")
    return lines




def write_report(report: RunReport, path: str | Path) -> None:
    """Write the report as indented JSON (atomically: a half-written file never replaces a good one)."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    tmp.replace(target)


def _num(value: float | None, fmt: str = ".1f", missing: str = "-") -> str:
    return missing if value is None else format(value, fmt)


def _si(value: float | None, missing: str = "-") -> str:
    if value is None:
        return missing
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def _target(s: Snapshot) -> str:
    if s.mode is LoadMode.CONCURRENCY:
        return f"concurrency {s.target_concurrency}"
    return f"trace speed ×{s.target_rate:g}" if s.trace else f"rate {s.target_rate:g}/s"


def progress_line(s: Snapshot) -> str:
    """One line every few seconds while a headless run goes (stderr, terminals only)."""
    w = s.window
    est = "~" if s.tokens_estimated else ""
    errors = f"  errors {w.errors}" if w.errors else ""
    return (
        f"[{s.t_s:6.1f}s] {s.state.value:<8} {_target(s)}  in flight {s.in_flight}{_waiting(s)}  "
        f"{w.requests_per_s:.1f} req/s  {est}{_si(w.output_tokens_per_s)} out tok/s  "
        f"TTFT p50 {_num(w.ttft.p50, '.0f')} p99 {_num(w.ttft.p99, '.0f')} ms{errors}"
    )


def _waiting(s: Snapshot) -> str:
    """Requests with no first token yet: queueing on the server shows here before any request completes."""
    if not s.waiting_first_token:
        return ""
    oldest = "" if s.oldest_wait_s is None else f", oldest {s.oldest_wait_s:.1f} s"
    return f" (waiting for 1st token {s.waiting_first_token}{oldest})"


def _latency_row(name: str, p: Percentiles) -> str:
    cells = (p.p50, p.p90, p.p99, p.mean, p.max)
    return f"  {name:<6}" + "".join(f"{_num(v, '.1f'):>10}" for v in cells) + f"{p.count:>10,}"


def _errors(t: WindowStats) -> str:
    done = t.requests + t.errors
    if not t.errors:
        return f"{t.requests:,} ok, no errors"
    by_class = ", ".join(f"{k} {v:,}" for k, v in sorted(t.errors_by_class.items(), key=lambda kv: -kv[1]))
    return f"{t.requests:,} ok, {t.errors:,} errors ({100 * t.errors / done:.1f}%): {by_class}"


def format_summary(s: Snapshot, *, stop_reason: str = "", cancelled: int = 0, gpu_note: str = "") -> str:
    """The end-of-run table (stdout): totals since start, latency percentiles, client health, GPU and cost."""
    t = s.total
    est = " (~ estimated: some output counts were chunk counts, not the server's usage)" if s.tokens_estimated else ""
    lines = [
        f"wattload run: {s.endpoint}  model {s.model or '?'}",
        f"  state       {s.state.value}" + (f" ({stop_reason})" if stop_reason else ""),
        f"  load        {_target(s)}, {s.t_s:.1f} s",
        f"  requests    {_errors(t)}" + (f"; {cancelled} cancelled at stop" if cancelled else "") + _waiting(s),
        f"  throughput  {t.requests_per_s:.2f} req/s, output {_si(t.output_tokens_per_s)} tok/s, "
        f"input {_si(t.input_tokens_per_s)} tok/s{est}",
        f"  tokens      {t.output_tokens:,} output, {t.input_tokens:,} input",
        "",
        f"  {'ms':<6}" + "".join(f"{h:>10}" for h in ("p50", "p90", "p99", "mean", "max", "count")),
        _latency_row("TTFT", t.ttft),
        *([_latency_row("TTFO", t.ttfo)] if s.reasoning else []),  # reasoning models: the answer's first token
        _latency_row("ITL", t.itl),
        _latency_row("TPOT", t.tpot),
        _latency_row("E2E", t.e2e),
        "",
        f"  client      event-loop lag {s.client.loop_lag_ms:.1f} ms, send lag p99 {s.client.schedule_lag_ms:.1f} ms"
        + (f"  SATURATED: {s.client.reason}" if s.client.saturated else ""),
    ]
    g = s.gpu
    if g.available:
        energy = g.total
        lines.append(
            f"  GPU         {g.source}: mean {_num(energy.mean_watts, '.0f')} W, {_si(energy.energy_j)} J, "
            f"{_num(energy.joules_per_output_token, '.3f')} J/output token"
        )
    else:
        lines.append(f"  GPU         {gpu_note or g.message or 'no GPU telemetry'}")
    server = server_summary_line(s.server)
    if server is not None:
        lines.append(server)
    c = s.cost
    if c.profile:
        lines.append(
            f"  cost        {c.profile}: ${_num(c.total_per_million_output, '.3f')}/M output tokens, "
            f"${_num(c.total_per_million_total, '.3f')}/M total tokens, ${_num(c.dollars_per_hour, '.2f')}/h"
        )
    if s.usage_rejected:
        n = s.usage_rejected
        lines.append(f"  WARNING     the server's token usage was rejected for {n:,} request{'s' if n != 1 else ''} "
                     f"({s.usage_rejected_reason}); their output counts are chunk counts (~)")
    if s.retry_after:
        lines.append(f"  note        {s.retry_after:,} HTTP 429 answers asked to retry later; closed-loop workers "
                     "waited as asked (a --rate schedule does not)")
    if s.message and s.message != stop_reason:
        lines.append(f"  note        {s.message}")
    return "\n".join(lines)

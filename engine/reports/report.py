"""Phase reports: one recording split at its control events, with steady-state figures per phase and for the
session, and the comparison of two recordings phase by phase.

Definitions (the same as the live aggregator's, so a report reads like the panels did):
- A request belongs to the span its end stamp falls in. Failed requests count as errors, never in latencies.
- Output tokens = content chunks streamed in the span (progress ticks) + at each completion the difference to
  the server's usage; tokens of failed streams count (the server produced them). Input tokens: successful
  requests' prompt usage. Rates divide by the span's length.
- TTFT counts from the scheduled send time; TPOT per request = (end - first token) / (output tokens - 1);
  percentiles come from the same log histograms (within 1%).
- Energy: the GPUs' energy counters (power integrated where there is none) via ``EnergyAccount``; a phase's
  energy = its mean measured power x its steady length; the session's = everything measured.
- $/M tokens: ``engine.cost`` with the recorded pricing profile.
- Per turn (multi-turn sessions, session traces): the live summary's ``TurnTally`` over the recorded requests'
  ``turn`` column (schema 3; older files have none), with the server's prefix-cache hit rate over the session
  beside it when server metrics were recorded.
One pass over the file, in pages: memory does not grow with the recording's length.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Iterable
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.metrics.turns import TurnFigures, TurnTally
from engine.metrics.windows import LatencyMetric
from engine.records import ControlEvent, EventKind, RequestRecord
from engine.replay.timeline import initial_control
from engine.reports.phases import WARMUP_RULE, Phase, split_phases
from engine.snapshot import LoadMode
from engine.storage.reader import Recording
from engine.telemetry.prefix_cache import PrefixCacheFigures

_FLUSH = 10_000
NS = 1_000_000_000
ENERGY_MARGIN_NS = NS  # a phase's energy is read once telemetry is this far past its end (every GPU reported)
METHOD_KEYS = ("api", "mode", "input_tokens", "max_tokens", "ignore_eos", "workload", "window_s", "seed")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpanFigures(_Model):
    """Figures over one span (a phase's steady part, or the whole session). None = not measurable here."""

    span_s: float = 0.0
    requests: int = 0
    errors: int = 0
    error_rate: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    input_tokens_per_s: float | None = 0.0
    output_tokens_per_s: float | None = 0.0
    """None when nothing completed in the span (a phase of a fraction of a second): no figure, rather than 0."""
    ttft_p50_ms: float | None = None
    ttft_p99_ms: float | None = None
    tpot_p50_ms: float | None = None
    tpot_p99_ms: float | None = None
    mean_watts: float | None = None
    energy_j: float | None = None
    joules_per_output_token: float | None = None
    dollars_per_million_output: float | None = None
    # the server's own view (its /metrics, where recorded): gauges are means over the span
    server_running: float | None = None
    server_waiting: float | None = None
    server_kv_usage_pct: float | None = None
    server_generation_tokens_per_s: float | None = None
    server_ttft_p50_ms: float | None = None
    server_ttft_p99_ms: float | None = None
    server_preemptions: float | None = None
    server_prefix_hit_pct: float | None = None


class PhaseFigures(SpanFigures):
    index: int
    label: str
    start_s: float
    end_s: float
    duration_s: float
    steady_from_s: float
    mode: str
    concurrency: int | None
    rate: float | None
    """The target of the phase's own mode only (None for the other mode)."""
    power_cap_w: float | None = None
    paused: bool = False


class Methodology(_Model):
    """What must match for two recordings to be comparable."""

    settings: dict[str, Any] = Field(default_factory=dict)
    workload_hash: str = ""
    pricing: str = ""
    pricing_hash: str = ""
    wattload_version: str = ""
    schema_version: int = 0


class SessionReport(_Model):
    file: str
    wall_start: str = ""
    host: str = ""
    endpoint: str = ""
    model: str = ""
    workload: str = ""
    gpus: list[str] = Field(default_factory=list)
    duration_s: float = 0.0
    window_s: float = 10.0
    warmup_rule: str = WARMUP_RULE
    methodology: Methodology = Methodology()
    phases: list[PhaseFigures] = Field(default_factory=list)
    totals: SpanFigures = SpanFigures()
    turns: list[TurnFigures] = Field(default_factory=list)
    """Multi-turn sessions: figures per turn number over the whole session (empty for single requests)."""
    prefix_cache: PrefixCacheFigures | None = None
    """The server's prefix-cache hit rate over the session, when its metrics were recorded."""
    notes: list[str] = Field(default_factory=list)
    """Results the session logged itself (auto-ramp, cap sweep), as "m:ss message"."""
    warnings: list[str] = Field(default_factory=list)


def _digest(data: Any) -> str:
    if data is None:
        return ""
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]


class _Span:
    """Accumulates one span's facts; ``figures()`` turns them into numbers."""

    def __init__(self, start_ns: int, end_ns: int) -> None:
        self.start_ns, self.end_ns = start_ns, end_ns
        self.ttft, self.tpot = LatencyMetric(), LatencyMetric()
        self._ttft: list[int] = []
        self._tpot: list[int] = []
        self.requests = self.errors = self.input_tokens = self.output_tokens = 0
        self.mean_watts: float | None = None

    def contains(self, t_ns: int) -> bool:
        return self.start_ns < t_ns <= self.end_ns

    def add(self, r: RequestRecord) -> None:
        self.output_tokens += r.output_tokens - r.chunks  # the chunks came in through progress ticks
        if r.error is not None:
            self.errors += 1
            return
        self.requests += 1
        self.input_tokens += r.input_tokens or 0
        if (ttft := r.ttft_ns) is not None:
            self._ttft.append(max(0, ttft))
        if (tpot := r.tpot_ns) is not None:
            self._tpot.append(max(0, round(tpot)))
        if len(self._ttft) >= _FLUSH or len(self._tpot) >= _FLUSH:
            self.flush()

    def flush(self) -> None:
        self.ttft.add_ns(np.asarray(self._ttft, dtype=np.int64))
        self.tpot.add_ns(np.asarray(self._tpot, dtype=np.int64))
        self._ttft, self._tpot = [], []

    def figures(self, energy_j: float | None, cost: Any) -> SpanFigures:
        self.flush()
        span = max(0, self.end_ns - self.start_ns) / NS
        done = self.requests + self.errors
        out = max(0, self.output_tokens)
        per_s = (lambda n: n / span) if span > 0 else (lambda n: 0.0)
        if done == 0 and out == 0:  # nothing happened here (e.g. a 0.3 s phase): no figures, not zeros
            return SpanFigures(span_s=span, output_tokens_per_s=None, input_tokens_per_s=None)
        dollars = None
        if cost is not None:
            pricing, gpus = cost
            from engine.cost import SpanUsage, span_cost

            c = span_cost(pricing, gpus, SpanUsage(span, out, out + self.input_tokens, energy_j))
            dollars = c.per_million_output if c is not None else None
        return SpanFigures(
            span_s=span,
            requests=self.requests,
            errors=self.errors,
            error_rate=self.errors / done if done else 0.0,
            input_tokens=self.input_tokens,
            output_tokens=out,
            input_tokens_per_s=per_s(self.input_tokens),
            output_tokens_per_s=per_s(out),
            ttft_p50_ms=self.ttft.quantile_ms(0.5),
            ttft_p99_ms=self.ttft.quantile_ms(0.99),
            tpot_p50_ms=self.tpot.quantile_ms(0.5),
            tpot_p99_ms=self.tpot.quantile_ms(0.99),
            mean_watts=self.mean_watts,
            energy_j=energy_j,
            joules_per_output_token=energy_j / out if energy_j is not None and out > 0 else None,
            dollars_per_million_output=dollars,
        )


def build_report(rec: Recording) -> SessionReport:
    """The phase report of one recording (one pass over its facts)."""
    m = rec.meta
    duration_ns = rec.duration_us * 1000
    events = [e for _, e in rec.events()]
    start_s = min(m.recorded_from_us / 1e6, rec.duration_s)  # a late recording: nothing before it counts
    phases = split_phases(events, duration_s=rec.duration_s, initial=initial_control(rec), window_s=m.window_s,
                          initial_caps_w=_initial_caps(rec), start_s=start_s)
    spans = [_Span(round(p.steady_from_s * NS), round(p.end_s * NS)) for p in phases]
    total = _Span(round(start_s * NS), duration_ns)
    starts = [s.start_ns for s in spans]

    def span_at(t_ns: int) -> _Span | None:
        i = bisect.bisect_left(starts, t_ns) - 1  # the last span starting strictly before t
        return spans[i] if i >= 0 and spans[i].contains(t_ns) else None

    turns = TurnTally()
    for r in rec.requests():
        turns.on_records((r,))
        total.add(r)
        if (s := span_at(r.t_end_ns)) is not None:
            s.add(r)
    for p in rec.progress():
        total.output_tokens += p.chunks
        if (s := span_at(p.t_ns)) is not None:
            s.output_tokens += p.chunks
    total_energy = _energy(rec, spans, total, duration_ns)
    cost, notes = _cost_basis(rec)
    from engine.reports.server import server_span_figures

    server_samples = [s for _, s in rec.server_samples()]
    server = server_span_figures(server_samples, [(s.start_ns, s.end_ns) for s in (*spans, total)])
    turns.on_server_samples(sorted(server_samples, key=lambda s: s.t_ns))
    figures = []
    for phase, span, extra in zip(phases, spans, server, strict=False):
        energy = None if span.mean_watts is None else span.mean_watts * (span.end_ns - span.start_ns) / NS
        figures.append(_phase_figures(phase, span.figures(energy, cost).model_copy(update=extra)))
    return SessionReport(
        file=str(rec.path),
        wall_start=m.wall_start,
        host=m.host,
        endpoint=m.session.endpoint,
        model=m.session.model,
        workload=m.session.workload,
        gpus=[f"{g.index}: {g.name}" for g in m.gpus],
        duration_s=rec.duration_s,
        window_s=m.window_s,
        methodology=methodology(rec),
        phases=figures,
        totals=total.figures(total_energy, cost).model_copy(update=server[-1]),
        turns=turns.figures(),
        prefix_cache=turns.prefix_cache(),
        notes=session_notes(events),
        warnings=[*rec.warnings, *notes],
    )


NOTE_PREFIXES = ("auto-ramp", "cap sweep done")


def session_notes(events: list[ControlEvent]) -> list[str]:
    """The results a session logged as annotations (the auto-ramp's capacity, a live cap sweep's sweet spot)."""
    out = []
    for e in events:
        if e.kind is EventKind.ANNOTATION and e.message.startswith(NOTE_PREFIXES):
            t = max(0.0, e.t_ns / 1e9)
            out.append(f"{int(t // 60)}:{t % 60:04.1f} {e.message}")
    return out


def methodology(rec: Recording) -> Methodology:
    m = rec.meta
    return Methodology(
        settings={k: m.config.get(k) for k in METHOD_KEYS},
        workload_hash=_digest(m.workload),
        pricing=str((m.pricing or {}).get("name", "")),
        pricing_hash=_digest(m.pricing),
        wattload_version=m.wattload_version,
        schema_version=m.schema_version,
    )


def _phase_figures(phase: Phase, f: SpanFigures) -> PhaseFigures:
    c = phase.control
    return PhaseFigures(
        **f.model_dump(),
        index=phase.index,
        label=phase.label,
        start_s=phase.start_s,
        end_s=phase.end_s,
        duration_s=phase.duration_s,
        steady_from_s=phase.steady_from_s,
        mode=c.mode.value,
        concurrency=c.target_concurrency if c.mode is LoadMode.CONCURRENCY else None,
        rate=c.target_rate if c.mode is LoadMode.RATE else None,
        power_cap_w=phase.power_cap_w,
        paused=phase.paused,
    )


def _initial_caps(rec: Recording) -> dict[int, float]:
    """Each GPU's power limit at the start: for a recording started partway, the caps in force then (the file
    says); else (or for a GPU it does not name) from its first telemetry sample that reports one."""
    recorded = (rec.meta.start_control or {}).get("power_caps_w") or {}
    caps: dict[int, float] = {int(index): float(watts) for index, watts in recorded.items()}
    wanted = max(1, len(rec.meta.gpus))
    for n, s in enumerate(rec.telemetry()):
        if s.power_limit_w is not None:
            caps.setdefault(s.gpu_index, s.power_limit_w)
        if len(caps) >= wanted or n > 50 * wanted:
            break
    return caps


def _energy(rec: Recording, spans: list[_Span], total: _Span, duration_ns: int) -> float | None:
    """Mean watts into each span (as telemetry streams past its end); returns the session's energy."""
    if not rec.meta.telemetry_source:
        return None
    from engine.gpu.energy import EnergyAccount

    acct = EnergyAccount(names={g.index: g.name for g in rec.meta.gpus}, source=rec.meta.telemetry_source)
    pending = sorted(spans, key=lambda s: s.end_ns)

    def answer(s: _Span) -> None:
        window_s = (s.end_ns - s.start_ns) / NS
        if window_s > 0:
            stats = acct.stats(s.end_ns, window_s=window_s, window_output_tokens=0, window_total_tokens=0,
                               total_output_tokens=0, total_total_tokens=0, steady=True)
            s.mean_watts = stats.window.mean_watts

    seen = False
    for sample in rec.telemetry():
        acct.add(sample)
        seen = True
        while pending and sample.t_ns >= pending[0].end_ns + ENERGY_MARGIN_NS:
            answer(pending.pop(0))
    if not seen:
        return None
    for s in pending:
        answer(s)
    final = acct.stats(duration_ns, window_s=0.0, window_output_tokens=0, window_total_tokens=0,
                       total_output_tokens=0, total_total_tokens=0, steady=True)
    total.mean_watts = final.total.mean_watts
    return final.total.energy_j


def _cost_basis(rec: Recording) -> tuple[Any, list[str]]:
    m = rec.meta
    if not m.pricing:
        return None, []
    from engine.pricing import PricingProfile

    try:
        pricing = PricingProfile.model_validate(m.pricing)
    except ValidationError:
        return None, ["the recorded pricing profile is not readable by this version: no cost figures"]
    return (pricing, len(m.gpus) or pricing.gpus), []


# ------------------------------------------------------------------------------------------------ comparison


class PhasePair(_Model):
    index: int
    a: PhaseFigures | None = None
    b: PhaseFigures | None = None


class Comparison(_Model):
    a: SessionReport
    b: SessionReport
    methodology_warnings: list[str] = Field(default_factory=list)
    pairs: list[PhasePair] = Field(default_factory=list)


def compare(a: SessionReport, b: SessionReport) -> Comparison:
    """Pair the phases by position and say where the two runs were not measured the same way."""
    warnings = methodology_differences(a.methodology, b.methodology)
    if len(a.phases) != len(b.phases):
        warnings.append(f"the control timelines differ ({len(a.phases)} vs {len(b.phases)} phases): phases are "
                        "paired by position")
    for i, (pa, pb) in enumerate(zip(a.phases, b.phases, strict=False), start=1):
        if pa.label != pb.label:
            warnings.append(f"phase {i} ran at different settings ({pa.label} vs {pb.label})")
    n = max(len(a.phases), len(b.phases))
    pairs = [PhasePair(index=i + 1, a=a.phases[i] if i < len(a.phases) else None,
                       b=b.phases[i] if i < len(b.phases) else None) for i in range(n)]
    return Comparison(a=a, b=b, methodology_warnings=warnings, pairs=pairs)


def methodology_differences(a: Methodology, b: Methodology) -> list[str]:
    out = []
    if a.workload_hash != b.workload_hash:
        out.append(f"different workload profiles (hash {a.workload_hash or 'none'} vs {b.workload_hash or 'none'})")
    changed = [f"{k} {a.settings.get(k)!r} vs {b.settings.get(k)!r}" for k in METHOD_KEYS
               if a.settings.get(k) != b.settings.get(k)]
    if changed:
        out.append("different settings: " + ", ".join(changed))
    if a.pricing_hash != b.pricing_hash:
        out.append(f"different pricing profiles ({a.pricing or 'none'} vs {b.pricing or 'none'}): $ figures "
                   "are not comparable")
    if a.wattload_version != b.wattload_version:
        out.append(f"recorded by different wattload versions ({a.wattload_version} vs {b.wattload_version})")
    return out


def comparable_metrics() -> Iterable[tuple[str, str, bool]]:
    """(field, label, higher is better) for the side-by-side view."""
    return (
        ("output_tokens_per_s", "out tok/s", True),
        ("input_tokens_per_s", "in tok/s", True),
        ("requests", "requests", True),
        ("error_rate", "error rate", False),
        ("ttft_p50_ms", "TTFT p50 ms", False),
        ("ttft_p99_ms", "TTFT p99 ms", False),
        ("tpot_p50_ms", "TPOT p50 ms", False),
        ("tpot_p99_ms", "TPOT p99 ms", False),
        ("mean_watts", "mean W", False),
        ("joules_per_output_token", "J/out tok", False),
        ("dollars_per_million_output", "$/M out tok", False),
    )

"""Server-side figures in text: the headless summary's line and the report's columns per phase."""

from __future__ import annotations

from engine.snapshot import ServerStats


def _n(v: float | None, fmt: str = ".0f", unit: str = "") -> str:
    return "n/a" if v is None else f"{v:{fmt}}{unit}"


def server_summary_line(s: ServerStats) -> str | None:
    """One line for the headless summary (the last window's server view); None without server metrics."""
    if not s.endpoints:
        return None
    if not s.available:
        return f"  server      {s.message}"
    ttft = f"TTFT p50 {_n(s.ttft.p50, '.1f')} / p99 {_n(s.ttft.p99, '.1f')} ms"
    gap = "" if s.ttft_gap_p50_ms is None else f" (client +{s.ttft_gap_p50_ms:.1f} ms at p50)"
    return (f"  server      {s.engine}: running {_n(s.running)}, waiting {_n(s.waiting)}, "
            f"KV {_n(s.kv_usage_pct, '.1f', '%')}, {_n(s.generation_tokens_per_s, ',.0f')} gen tok/s, "
            f"{ttft}{gap}")  # fmt: skip

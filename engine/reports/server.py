"""Server-side figures in text: the headless summary's line and the report's columns per phase."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence

from engine.snapshot import ServerStats
from engine.telemetry.samples import ServerSample


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


# ---------------------------------------------------------------------------------------------- report columns

SERVER_FIELDS = ("server_running", "server_waiting", "server_kv_usage_pct", "server_generation_tokens_per_s",
                 "server_ttft_p50_ms", "server_ttft_p99_ms", "server_preemptions", "server_prefix_hit_pct")  # fmt: skip
SERVER_COLUMNS = (("server_running", "running"), ("server_waiting", "waiting"), ("server_kv_usage_pct", "KV %"),
                  ("server_generation_tokens_per_s", "gen tok/s"), ("server_ttft_p50_ms", "TTFT p50 ms"),
                  ("server_ttft_p99_ms", "TTFT p99 ms"), ("server_preemptions", "preempt"),
                  ("server_prefix_hit_pct", "prefix hit %"))  # fmt: skip
NS = 1_000_000_000


def server_span_figures(samples: Sequence[ServerSample], spans: Sequence[tuple[int, int]]) -> list[dict[str, float]]:
    """Per span (start_ns, end_ns]: mean running/waiting/KV over its scrapes (summed across sources), and, from the
    counter and histogram deltas across the span, generation tokens/s, TTFT p50/p99, preemptions and the
    prefix-cache hit rate (hits / queries; SGLang's gauge). Spans
    without server samples get {} (the report leaves the columns empty)."""
    from engine.telemetry.server_account import ServerAccount

    ok = sorted((s for s in samples if s.ok), key=lambda s: s.t_ns)
    times = [s.t_ns for s in ok]
    out: list[dict[str, float]] = []
    for start, end in spans:
        lo, hi = bisect_right(times, start), bisect_right(times, end)
        inside = ok[lo:hi]
        if not inside or end <= start:
            out.append({})
            continue
        figures: dict[str, float] = {}
        for field, key, scale in (("server_running", "running", 1.0), ("server_waiting", "waiting", 1.0),
                                  ("server_kv_usage_pct", "kv_usage", 100.0)):  # fmt: skip
            mean = _mean_summed(inside, key)
            if mean is not None:
                figures[field] = mean * scale
        account = ServerAccount(window_s=(end - start) / NS, stale_after_s=(end - start) / NS + 1.0, t0_ns=0)
        account.add(ok[max(0, lo - 1) : hi])  # with the reading just before the span as its baseline
        stats = account.stats(end)
        for field, value in (("server_generation_tokens_per_s", stats.generation_tokens_per_s),
                             ("server_ttft_p50_ms", stats.ttft.p50), ("server_ttft_p99_ms", stats.ttft.p99),
                             ("server_preemptions", stats.preemptions),
                             ("server_prefix_hit_pct", stats.prefix_hit_rate_pct)):  # fmt: skip
            if value is not None:
                figures[field] = value
        out.append(figures)
    return out


def _mean_summed(samples: Sequence[ServerSample], key: str) -> float | None:
    """Sum across sources of each source's mean over the span (kv_usage: the mean across sources)."""
    by_source: dict[str, list[float]] = {}
    for s in samples:
        if key in s.gauges:
            by_source.setdefault(s.source, []).append(s.gauges[key])
    if not by_source:
        return None
    means = [sum(v) / len(v) for v in by_source.values()]
    return sum(means) / len(means) if key == "kv_usage" else sum(means)


def server_table_markdown(rows: Sequence[tuple[str, str, Mapping[str, float | None]]],
                          num: Callable[[float | None], str]) -> list[str]:  # fmt: skip
    """The report's second table, (index, label, figures) per row; [] when no row has server figures."""
    if not any(any(f.get(name) is not None for name, _ in SERVER_COLUMNS) for _, _, f in rows):
        return []
    head = "| # | phase | " + " | ".join(h for _, h in SERVER_COLUMNS) + " |"
    lines = ["", "Server-side (from its Prometheus metrics; gauges are means over the steady part):", "", head,
             "| " + " | ".join(["---"] * (2 + len(SERVER_COLUMNS))) + " |"]  # fmt: skip
    for index, label, f in rows:
        lines.append(f"| {index} | {label} | " + " | ".join(num(f.get(name)) for name, _ in SERVER_COLUMNS) + " |")
    return lines

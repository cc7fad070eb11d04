"""Server: the serving engine's own view (from its Prometheus metrics) beside the client's.

Running and waiting requests, KV-cache use, prefix-cache hit rate and preemptions from the server; tokens/s and
TTFT as the server counts them next to what the client measured, with the difference (network plus client-side
queueing). A source that stopped answering says "stale since ..." or its error in one line; an engine nobody
recognised lists the metric families it found. Fed only from the Snapshot, like every panel.
"""

from __future__ import annotations

from collections import deque

from textual.content import Content

from engine.reports import format as fmt
from engine.snapshot import ServerStats, Snapshot
from tui.widgets.base import SnapshotPanel, kv


def _pct(value: float | None) -> str:
    return fmt.DASH if value is None else f"{value:.1f}%"


def _count(value: float | None) -> str:
    return fmt.DASH if value is None else f"{value:,.0f}"


SPARKS = "▁▂▃▄▅▆▇█"
TREND_POINTS = 24  # one per snapshot with new server figures: six seconds at 4 Hz


def sparkline(values: list[float | None], top: float | None = None) -> str:
    """Block characters scaled to ``top`` (default: the largest value); unknown values are blanks."""
    known = [v for v in values if v is not None]
    ceiling = top if top is not None else max(known, default=0.0)
    if ceiling <= 0:
        return "".join(" " if v is None else SPARKS[0] for v in values)
    return "".join(" " if v is None else SPARKS[min(7, max(0, round(v / ceiling * 7)))] for v in values)


def _pair(server: str, client: str, gap_ms: float | None = None) -> Content:
    """"server / client", and the client's extra time (network + client-side queueing) when known."""
    gap = Content("") if gap_ms is None else Content.styled(f" Δ{gap_ms:+.1f}", "$text-muted")
    return Content.assemble(Content.styled(server, "bold"), " / ", Content.styled(client, "bold"), gap)


class ServerPanel(SnapshotPanel):
    """Hidden until the session has server metrics (the app shows it when the first one arrives)."""

    FIXED_SIZE = False  # one to three lines: problems and unknown engines add one

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, title="Server")
        # the trend line's history lives in the UI, like the charts' (a replay seek backwards starts it afresh)
        self._trend: deque[tuple[float, float | None, float | None, float | None]] = deque(maxlen=TREND_POINTS)

    def show(self, snapshot: Snapshot) -> None:
        """Sessions without server metrics never see (or pay for) the panel."""
        if not snapshot.server.endpoints:
            return
        if not self.display:
            self.display = True
        super().show(snapshot)

    def build(self, snapshot: Snapshot) -> Content:
        s = snapshot.server
        self.border_subtitle = self._subtitle(s)
        if not s.available:
            return Content.styled(s.message or "no server figures", "$text-warning")
        client = snapshot.window
        lines = [
            Content("  ").join([
                kv("running", _count(s.running), width=8),
                kv("waiting", _count(s.waiting), width=8),
                kv("KV", _pct(s.kv_usage_pct), width=3),
                kv("prefix hit", _pct(s.prefix_hit_rate_pct), width=11),
                kv("preempt", _count(s.preemptions), width=8),
            ]),
            Content("  ").join([
                kv("tok/s", _pair(fmt.sig(s.generation_tokens_per_s), fmt.sig(client.output_tokens_per_s)), width=6),
                kv("TTFT p50", _pair(fmt.ms(s.ttft.p50), fmt.ms(client.ttft.p50), s.ttft_gap_p50_ms), width=9),
                kv("p99", _pair(fmt.ms(s.ttft.p99), fmt.ms(client.ttft.p99), s.ttft_gap_p99_ms), width=4),
                Content.styled("(server / client, ms)", "$text-muted"),
            ]),
        ]  # fmt: skip
        problem = self._problems(s)
        trend = self._trend_line(snapshot)  # kept up to date even when there is no room to show it
        if self.screen.has_class("-short"):  # two lines: the problem, if any, takes the gauges' place
            return Content("\n").join([problem or lines[0], lines[1]])
        lines.append(problem if problem is not None else trend)
        return Content("\n").join(lines)

    def _trend_line(self, snapshot: Snapshot) -> Content:
        s = snapshot.server
        if self._trend and snapshot.t_s < self._trend[-1][0]:
            self._trend.clear()
        if not self._trend or snapshot.t_s > self._trend[-1][0]:
            self._trend.append((snapshot.t_s, s.running, s.waiting, s.kv_usage_pct))
        cols = list(zip(*self._trend, strict=True))
        parts = [Content.styled("trend", "$text-muted")]
        for label, values, top in (("running", cols[1], None), ("waiting", cols[2], None), ("KV", cols[3], 100.0)):
            known = [v for v in values if v is not None]
            if not known:
                continue
            peak = f"{max(known):.0f}%" if label == "KV" else f"{max(known):,.0f}"
            parts.append(Content.assemble(Content.styled(f"{label} ", "$text-muted"),
                                          Content.styled(sparkline(list(values), top), "$accent"),
                                          Content.styled(f" {peak}", "$text-muted")))  # fmt: skip
        return Content("  ").join(parts)

    @staticmethod
    def _subtitle(s: ServerStats) -> str:
        n = len(s.endpoints)
        ok = sum(1 for e in s.endpoints if e.ok)
        engine = s.engine or next((e.engine for e in s.endpoints if e.engine), "")
        replicas = f"{ok}/{n} sources" if n > 1 else ("" if ok else "not answering")
        return " · ".join(part for part in (engine, replicas) if part)

    @staticmethod
    def _problems(s: ServerStats) -> Content | None:
        bad = [e for e in s.endpoints if not e.ok or e.message]
        if bad:
            first = bad[0]
            more = f" (+{len(bad) - 1} more)" if len(bad) > 1 else ""
            return Content.styled(f"{first.source}: {first.message}{more}", "$text-warning")
        unknown = next((e for e in s.endpoints if e.engine == "unknown" and e.families), None)
        if unknown is not None:
            return Content.styled("unknown engine; metrics: " + ", ".join(unknown.families), "$text-muted")
        return None

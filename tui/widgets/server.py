"""Server: the serving engine's own view (from its Prometheus metrics) beside the client's.

Running and waiting requests, KV-cache use, prefix-cache hit rate and preemptions from the server; tokens/s and
TTFT as the server counts them next to what the client measured, with the difference (network plus client-side
queueing). A source that stopped answering says "stale since ..." or its error in one line; an engine nobody
recognised lists the metric families it found. Fed only from the Snapshot, like every panel.
"""

from __future__ import annotations

from textual.content import Content

from engine.reports import format as fmt
from engine.snapshot import ServerStats, Snapshot
from tui.widgets.base import SnapshotPanel, kv


def _pct(value: float | None) -> str:
    return fmt.DASH if value is None else f"{value:.1f}%"


def _count(value: float | None) -> str:
    return fmt.DASH if value is None else f"{value:,.0f}"


def _pair(server: str, client: str, gap_ms: float | None = None) -> Content:
    """"server / client", and the client's extra time (network + client-side queueing) when known."""
    gap = Content("") if gap_ms is None else Content.styled(f" Δ{gap_ms:+.1f}", "$text-muted")
    return Content.assemble(Content.styled(server, "bold"), " / ", Content.styled(client, "bold"), gap)


class ServerPanel(SnapshotPanel):
    """Hidden until the session has server metrics (the app shows it when the first one arrives)."""

    FIXED_SIZE = False  # one to three lines: problems and unknown engines add one

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, title="Server")

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
        if problem is not None:
            lines.append(problem)
        return Content("\n").join(lines)

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

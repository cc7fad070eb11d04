"""Figures per turn number of multi-turn sessions (and session traces): is turn 5 faster than turn 1?

A ``TurnTally`` is a session sink like ``LengthTally``: it sees every finished request that carries a turn number
and keeps, per turn, the count, the errors, TTFT and E2E histograms and the token sums from the server's usage.
With prefix caching, TTFT of later turns drops below turn 1 even though their prompts are longer; without it,
it grows with the context. Single-request workloads (turn 0) are not counted. With server metrics on, it also
sums the server's prefix-cache counters over the session (``engine.telemetry.prefix_cache``), the figure shown
beside the turns: the server's own word on how much of the resent conversation its cache served.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from engine.metrics.histogram import LogHistogram
from engine.records import ControlEvent, RequestRecord, StreamProgress, TelemetrySample
from engine.snapshot import Snapshot
from engine.telemetry.prefix_cache import PrefixCacheFigures, PrefixCacheTally
from engine.telemetry.samples import ServerSample

MAX_TURNS = 1000  # turns beyond this are counted under the last one (a bound on memory, not a real limit)


class TurnFigures(BaseModel):
    """One turn number over the whole session; latencies in ms, lengths as the server counted them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    turn: int
    requests: int
    errors: int
    ttft_p50_ms: float | None = None
    ttft_p99_ms: float | None = None
    e2e_p50_ms: float | None = None
    mean_input_tokens: float | None = None
    mean_output_tokens: float | None = None


class _Turn:
    __slots__ = ("e2e", "errors", "input_n", "input_sum", "n", "output_sum", "ttft")

    def __init__(self) -> None:
        self.n = 0
        self.errors = 0
        self.ttft = LogHistogram()
        self.e2e = LogHistogram()
        self.input_sum = 0
        self.input_n = 0
        self.output_sum = 0


class TurnTally:
    """Session sink: per-turn figures of the requests that belong to conversations."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._turns: dict[int, _Turn] = {}
        self._prefix = PrefixCacheTally()
        self._first_start_ns: int | None = None  # the earliest send seen: when the load began

    def on_records(self, records: Sequence[RequestRecord]) -> None:
        with self._lock:
            for r in records:
                if self._first_start_ns is None or r.t_start_ns < self._first_start_ns:
                    self._first_start_ns = r.t_start_ns
                if r.turn <= 0:
                    continue
                t = self._turns.get(min(r.turn, MAX_TURNS))
                if t is None:
                    t = self._turns[min(r.turn, MAX_TURNS)] = _Turn()
                if r.error is not None:
                    t.errors += 1
                    continue
                t.n += 1
                if r.ttft_ns is not None:
                    t.ttft.add(r.ttft_ns / 1e9)
                t.e2e.add(r.e2e_ns / 1e9)
                t.output_sum += r.output_tokens
                if r.input_tokens is not None:
                    t.input_sum += r.input_tokens
                    t.input_n += 1

    def figures(self) -> list[TurnFigures]:
        with self._lock:
            return [_figures(k, t) for k, t in sorted(self._turns.items())]

    def on_server_samples(self, samples: Sequence[ServerSample]) -> None:
        with self._lock:
            self._prefix.add(samples)

    def prefix_cache(self) -> PrefixCacheFigures | None:
        """The server's prefix-cache hit rate over the session; None without server metrics that report it."""
        with self._lock:
            return self._prefix.figures(self._first_start_ns)

    def on_progress(self, progress: Sequence[StreamProgress]) -> None:
        pass

    def on_telemetry(self, samples: Sequence[TelemetrySample]) -> None:
        pass

    def on_event(self, event: ControlEvent) -> None:
        pass

    def on_snapshot(self, snapshot: Snapshot) -> None:
        pass

    def close(self) -> None:
        pass


def _ms(v: float | None) -> float | None:
    return None if v is None else v * 1000


def _figures(turn: int, t: _Turn) -> TurnFigures:
    return TurnFigures(
        turn=turn,
        requests=t.n,
        errors=t.errors,
        ttft_p50_ms=_ms(t.ttft.quantile(0.5)) if t.ttft.count else None,
        ttft_p99_ms=_ms(t.ttft.quantile(0.99)) if t.ttft.count else None,
        e2e_p50_ms=_ms(t.e2e.quantile(0.5)) if t.e2e.count else None,
        mean_input_tokens=t.input_sum / t.input_n if t.input_n else None,
        mean_output_tokens=t.output_sum / t.n if t.n else None,
    )


def format_turns(figures: Sequence[TurnFigures], prefix_cache: PrefixCacheFigures | None = None) -> str:
    """A small table for the headless summary, the server's prefix-cache hit rate under it when known; "" when
    the run had no conversations."""
    if not figures:
        return ""
    lines = ["per turn     requests  errors  TTFT p50  TTFT p99   E2E p50   input  output"]
    for f in figures:
        lines.append(
            f"  turn {f.turn:<5} {f.requests:>8}  {f.errors:>6}  {_cell(f.ttft_p50_ms)}  {_cell(f.ttft_p99_ms)}  "
            f"{_cell(f.e2e_p50_ms)}  {_tok(f.mean_input_tokens)}  {_tok(f.mean_output_tokens)}"
        )
    if prefix_cache is not None:
        lines.append(f"  {prefix_cache.line()}")
    return "\n".join(lines)


def _cell(ms: float | None) -> str:
    return f"{'–':>8}" if ms is None else f"{ms:>6.1f}ms"


def _tok(v: float | None) -> str:
    return f"{'–':>6}" if v is None else f"{v:>6.0f}"

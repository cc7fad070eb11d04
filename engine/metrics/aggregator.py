"""Turns request records, stream-progress ticks, telemetry and control events into the one immutable Snapshot.

Pure: time is always passed in, never read here, so the live controller (now = perf_counter_ns) and the replay
player (now = the recording's clock) get identical figures from identical inputs, whatever the batching.

Definitions (the README's "How the figures are defined" says the same for users):
- TTFT and E2E count from the request's *scheduled* time, so a client that sends late cannot hide its queueing.
- TPOT per request = (end - first token) / (output tokens - 1); ITL = gaps between content chunks.
- TTFO (time to first output token) counts to the first chunk of the answer itself; TTFT to the first chunk of
  any content, reasoning included (``reasoning_content``/``reasoning`` deltas), so on reasoning models
  TTFO - TTFT is the thinking time. Without reasoning the two are the same samples.
- A figure counts in the slot of the moment its event happened: TTFT and TTFO at their token's arrival (workers
  ship first tokens on their ~100 ms progress ticks, so a long answer's TTFT shows before it ends), each ITL gap
  at the tick after its chunk arrived (ticks carry them as bucket counts), E2E, TPOT and the request count at the
  end. TTFT, TTFO and ITL count what arrived (a later failure does not undo it); failed records count as
  errors, never in E2E/TPOT.
- The window ends at the edge (``edge.py``): the oldest latest report among the workers still reporting, not
  "now", so the newest ~100 ms that some worker has not reported yet is neither missing from the window nor
  divided by; the energy window and "steady" use the same edge. Since-start figures count facts on arrival.
- Waiting for first token: requests sent that have no first token yet (count and the age of the oldest, from its
  scheduled time), from each worker's latest tick: queueing on the server shows before any request completes.
- Output tokens count as chunks arrive (responsive for long requests); at completion the difference to the
  server's usage is added, so totals equal the sum of usage exactly. Tokens of failed streams count too: the
  server produced them (and spent the energy).
- ``tokens_estimated`` and ``input_tokens_unknown`` are sticky for the session: the since-start figures shown next
  to the window include any estimate ever made, and one flag per snapshot has to cover both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.control import ControlState, SessionMeta
from engine.metrics.edge import WindowFeed
from engine.metrics.windows import RecordSamples, SlotStats, SlottedWindow, non_negative
from engine.records import ControlEvent, EventKind, RequestRecord, StreamProgress, TelemetrySample
from engine.snapshot import (
    ClientHealth,
    CostStats,
    EventView,
    GpuStats,
    ServerStats,
    Snapshot,
    WindowStats,
    WorkersStats,
    WorkerView,
)

if TYPE_CHECKING:
    from engine.gpu.energy import EnergyAccount
    from engine.pricing import PricingProfile
    from engine.telemetry.samples import ServerSample
    from engine.telemetry.server_account import ServerAccount

# Client saturation. Above ~10 ms the client's own delays are of the same order as a fast server's inter-token
# latency (10-30 ms) and a visible share of a good TTFT, so the figures would describe the load generator rather
# than the server: a busy event loop stamps chunks late (loop lag), and an open-loop sender that falls behind its
# schedule (send lag) delays requests before the server ever sees them.
LOOP_LAG_LIMIT_MS = 10.0
SEND_LAG_LIMIT_MS = 10.0
WORKER_SEND_LAG_LIMIT_MS = 1000.0  # --ray: a batch this late reaches the window a tick or more after its events
LOOP_LAG_SPAN_NS = 1_000_000_000  # loop lag shown = worst reported in the last second (by stamp, not by arrival)

_NO_META = SessionMeta()  # frozen, so one shared default is safe

ERROR_EVENT_INTERVAL_NS = 1_000_000_000  # at most one error event per class per second
_MAX_DETAIL = 160

# Events after which the window mixes two operating points until it has slid past them.
_LOAD_CHANGES = frozenset(
    {EventKind.START, EventKind.CONCURRENCY, EventKind.RATE, EventKind.POWER_CAP, EventKind.PAUSE, EventKind.RESUME}
)


def starting_snapshot(meta: SessionMeta, control: ControlState, window_s: float, message: str) -> Snapshot:
    """Before the workers are ready there is no session clock yet: a labelled, empty snapshot."""
    return Snapshot(
        endpoint=meta.endpoint,
        model=meta.model,
        workload=meta.workload,
        state=control.state,
        mode=control.mode,
        target_concurrency=control.target_concurrency,
        target_rate=control.target_rate,
        trace=meta.trace,
        window_s=window_s,
        message=control.message or message,
    )


class Aggregator:
    """Sliding-window and since-start figures over everything fed in; ``snapshot()`` freezes them."""

    def __init__(
        self,
        *,
        t0_ns: int,
        window_s: float = 10.0,
        meta: SessionMeta = _NO_META,
        energy: EnergyAccount | None = None,
        pricing: PricingProfile | None = None,
        gpu_count: int = 0,
        totals_from_ns: int | None = None,
        itl_from_ticks: bool = True,
        workers: int = 0,
        watermark: bool = True,
    ) -> None:
        """``itl_from_ticks``: ITL comes on the progress ticks as the gaps arrive (live, recordings of schema 3 on);
        False for older recordings, whose ITL comes from the records' chunk stamps at their end. ``workers``: how
        many report (waited for from the start); ``watermark=False`` ends the window at now, as before the edge."""
        self._t0 = t0_ns
        self._itl_from_ticks = itl_from_ticks
        self._totals_from = t0_ns if totals_from_ns is None else max(t0_ns, totals_from_ns)  # a late recording
        self._window_s = window_s
        self._meta = meta
        self._energy = energy
        self._pricing = pricing
        self._gpu_count = gpu_count
        self._window = SlottedWindow(t0_ns, round(window_s * 1e9))
        self._feed = WindowFeed(self._window, t0_ns=t0_ns, from_ns=self._totals_from, workers=workers,
                                itl=not itl_from_ticks, watermark=watermark)
        self._total = SlotStats()
        self._in_flight: dict[int, tuple[int, int]] = {}  # worker -> (t_ns, in flight) of its latest report
        self._waiting: dict[int, tuple[int, int, int | None]] = {}  # worker -> (t_ns, waiting, oldest scheduled)
        # (worker, request id) whose TTFT a tick already counted -> its first-token stamp
        self._ttft_on_tick: dict[tuple[int, int], int] = {}
        self._ttfo_on_tick: set[tuple[int, int]] = set()  # ... and whose TTFO (first answer token) a tick counted
        self._reasoning = False
        self._loop_lags: list[tuple[int, float]] = []
        self._tokens_estimated = False
        self._input_unknown = False
        self._usage_rejected = 0
        self._usage_reason = ""
        self._retry_after = 0
        self._last_change_ns = t0_ns  # the session start is itself a load change
        self._errors = _ErrorThrottle()
        self._pending: list[tuple[int, str, str]] = []  # (t_ns, kind, message) since the previous snapshot
        self._seq = 0
        self._server: ServerAccount | None = None  # made by the first server sample (most sessions have none)
        self._workers: WorkersStats | None = None  # --ray: the pool's per-worker health, summed up

    @property
    def window_slots(self) -> int:
        """Slots held in memory (bounded by the window, whatever the session length)."""
        return self._window.slot_count

    def add_records(self, records: Iterable[RequestRecord]) -> None:
        by_slot: dict[int, list[RequestRecord]] = {}
        firsts: list[tuple[int, int]] = []
        outputs: list[tuple[int, int]] = []
        on_tick, output_on_tick = self._ttft_on_tick, self._ttfo_on_tick
        for r in records:
            by_slot.setdefault(self._window.index(r.t_end_ns), []).append(r)
            key = (r.worker, r.request_id)
            if on_tick and key in on_tick:
                del on_tick[key]
            elif r.t_first_token_ns is not None:
                firsts.append((r.t_first_token_ns, r.t_first_token_ns - r.t_scheduled_ns))
            if output_on_tick and key in output_on_tick:
                output_on_tick.discard(key)
            elif r.t_first_output_ns is not None:
                outputs.append((r.t_first_output_ns, r.t_first_output_ns - r.t_scheduled_ns))
            if r.reasoning_chunks:
                self._reasoning = True
            if r.output_estimated and r.output_tokens > 0:
                self._tokens_estimated = True
            if r.usage_rejected or r.retry_after_s is not None:
                self._untrusted(r)
            if r.error is None:
                if r.input_tokens is None:
                    self._input_unknown = True
            else:
                shown = self._errors.on_error(r)
                if shown is not None:
                    self._pending.append((r.t_end_ns, EventKind.ERROR.value, shown))
        itl = not self._itl_from_ticks
        for index, group in by_slot.items():
            samples = RecordSamples(group, itl)
            samples.add_to(self._total)
            self._feed.add_group(index, group, samples)  # into the window now, or once the edge passes it
        self._add_firsts(firsts)
        self._add_firsts(outputs, output=True)

    def _add_firsts(self, firsts: list[tuple[int, int]], output: bool = False) -> None:
        """TTFT (TTFO) samples as (token stamp, latency): the totals now, the window when the edge passes them."""
        if firsts:
            (self._total.ttfo if output else self._total.ttft).add_ns(non_negative([v for _, v in firsts]))
            self._feed.add_firsts(firsts, output)

    def _untrusted(self, r: RequestRecord) -> None:
        """Count what the server said and we did not take at face value; the first of each kind is logged."""
        if r.retry_after_s is not None:
            self._retry_after += 1
        if r.usage_rejected:
            self._usage_rejected += 1
            if not self._usage_reason:
                self._usage_reason = r.usage_rejected
                self._pending.append((r.t_end_ns, EventKind.WARNING.value,
                                      f"server usage rejected ({r.usage_rejected}); counting chunks instead (~)"))

    def add_progress(self, progress: Iterable[StreamProgress]) -> None:
        for p in progress:
            self._total.output_tokens += p.chunks
            self._feed.on_report(p)
            latest = self._in_flight.get(p.worker)
            if latest is None or p.t_ns >= latest[0]:
                self._in_flight[p.worker] = (p.t_ns, p.in_flight)
                self._waiting[p.worker] = (p.t_ns, p.waiting, p.waiting_since_ns)
            if p.first_tokens:
                self._add_firsts([(first, first - scheduled) for _, first, scheduled in p.first_tokens])
                self._ttft_on_tick.update(((p.worker, rid), first) for rid, first, _ in p.first_tokens)
            if p.first_outputs:
                self._add_firsts([(first, first - scheduled) for _, first, scheduled in p.first_outputs], output=True)
                self._ttfo_on_tick.update((p.worker, rid) for rid, _, _ in p.first_outputs)
                if not self._reasoning:  # an answer that began after the first token: reasoning came first
                    self._reasoning = any(self._ttft_on_tick.get((p.worker, rid), first) != first
                                          for rid, first, _ in p.first_outputs)
            if p.itl is not None and self._itl_from_ticks:
                self._total.itl.add_counts(p.itl)
                self._feed.add_gaps(p.t_ns, p.itl)
            self._loop_lags.append((p.t_ns, p.loop_lag_ms))
        if len(self._loop_lags) > 100_000:  # no snapshot for a long while: keep only the newest second
            newest = max(t for t, _ in self._loop_lags)
            self._loop_lags = [(t, lag) for t, lag in self._loop_lags if t > newest - LOOP_LAG_SPAN_NS]

    def add_telemetry(self, samples: Iterable[TelemetrySample]) -> None:
        if self._energy is None:
            return
        for s in samples:
            self._energy.add(s)

    def add_server_samples(self, samples: Iterable[ServerSample]) -> None:
        if self._server is None:
            from engine.telemetry.server_account import ServerAccount

            self._server = ServerAccount(self._window_s, t0_ns=self._t0)
        self._server.add(samples)

    def set_workers(self, workers: Sequence[WorkerView] | None) -> None:
        """The distributed pool's per-worker health as of now (None: local worker processes); the next snapshots
        carry it with the worst of each figure."""
        self._workers = None if workers is None else workers_stats(workers)

    def add_event(self, event: ControlEvent) -> None:
        if event.kind in _LOAD_CHANGES:
            self._last_change_ns = max(self._last_change_ns, event.t_ns)
        self._pending.append((event.t_ns, event.kind.value, event.message or describe(event)))

    def snapshot(self, now_ns: int, control: ControlState) -> Snapshot:
        self._seq += 1
        edge = self._feed.advance(now_ns)  # where the window ends: see edge.py
        merged, span_ns = self._window.view(edge)
        window = _window_stats(merged, span_ns / 1e9, (edge - self._t0) / 1e9)
        total = _window_stats(self._total, max(0, now_ns - self._totals_from) / 1e9, (now_ns - self._t0) / 1e9)
        steady = edge - round(self._window_s * 1e9) >= self._last_change_ns
        gpu = self._gpu_stats(now_ns, edge, window, total, steady)
        return Snapshot(
            seq=self._seq,
            t_s=(now_ns - self._t0) / 1e9,
            endpoint=self._meta.endpoint,
            model=self._meta.model,
            workload=self._meta.workload,
            source=self._meta.source,
            state=control.state,
            mode=control.mode,
            target_concurrency=control.target_concurrency,
            target_rate=control.target_rate,
            trace=self._meta.trace,
            in_flight=sum(n for _, n in self._in_flight.values()),
            waiting_first_token=sum(n for _, n, _ in self._waiting.values()),
            oldest_wait_s=self._oldest_wait_s(now_ns),
            window_s=self._window_s,
            window=window,
            total=total,
            tokens_estimated=self._tokens_estimated,
            reasoning=self._reasoning,
            input_tokens_unknown=self._input_unknown,
            usage_rejected=self._usage_rejected,
            usage_rejected_reason=self._usage_reason,
            retry_after=self._retry_after,
            steady=steady,
            client=self._client_health(now_ns, merged),
            gpu=gpu,
            cost=self._cost_stats(window, total, gpu),
            server=ServerStats() if self._server is None else self._server.stats(now_ns, window.ttft),
            workers=self._workers,
            recording=control.recording,
            new_events=self._take_events(now_ns),
            message=control.message,
        )

    def _oldest_wait_s(self, now_ns: int) -> float | None:
        oldest = min((since for _, n, since in self._waiting.values() if n and since is not None), default=None)
        return None if oldest is None else max(0, now_ns - oldest) / 1e9

    def _client_health(self, now_ns: int, window: SlotStats) -> ClientHealth:
        horizon = now_ns - LOOP_LAG_SPAN_NS
        self._loop_lags = [(t, lag) for t, lag in self._loop_lags if t > horizon]
        loop_lag = max((lag for t, lag in self._loop_lags if t <= now_ns), default=0.0)
        send_lag = window.send_lag.quantile_ms(0.99) or 0.0
        reasons = []
        if loop_lag > LOOP_LAG_LIMIT_MS:
            reasons.append(f"event-loop lag {_lag(loop_lag)} ms > {LOOP_LAG_LIMIT_MS:.0f} ms: chunks are stamped late")
        if send_lag > SEND_LAG_LIMIT_MS:
            reasons.append(f"send lag p99 {_lag(send_lag)} ms > {SEND_LAG_LIMIT_MS:.0f} ms: sends are behind schedule")
        return ClientHealth(
            loop_lag_ms=loop_lag, schedule_lag_ms=send_lag, saturated=bool(reasons), reason="; ".join(reasons)
        )

    def _gpu_stats(self, now_ns: int, edge_ns: int, window: WindowStats, total: WindowStats,
                   steady: bool) -> GpuStats:
        if self._energy is None:
            return GpuStats(available=False, message="no GPU telemetry")
        # the energy window is the span the token counts cover (same edge, same length), so joules per token
        # compare like with like
        return self._energy.stats(
            now_ns,
            window_end_ns=edge_ns,
            window_s=window.span_s,
            window_output_tokens=window.output_tokens,
            window_total_tokens=window.input_tokens + window.output_tokens,
            total_output_tokens=total.output_tokens,
            total_total_tokens=total.input_tokens + total.output_tokens,
            steady=steady,
        )

    def _cost_stats(self, window: WindowStats, total: WindowStats, gpu: GpuStats) -> CostStats:
        if self._pricing is None:
            return CostStats()
        from engine.cost import SpanUsage, cost_stats  # written in parallel; imported only when pricing is used

        def usage(stats: WindowStats, energy_j: float | None) -> SpanUsage:
            return SpanUsage(
                span_s=stats.span_s,
                output_tokens=stats.output_tokens,
                total_tokens=stats.input_tokens + stats.output_tokens,
                energy_j=energy_j,
            )

        return cost_stats(
            self._pricing, self._gpu_count, usage(window, gpu.window.energy_j), usage(total, gpu.total.energy_j)
        )

    def _take_events(self, now_ns: int) -> tuple[EventView, ...]:
        pending = self._pending + [(t, EventKind.ERROR.value, m) for t, m in self._errors.flush(now_ns)]
        self._pending = []
        pending.sort(key=lambda e: e[0])  # stable: ties keep the order they came in
        return tuple(EventView(t_s=(t - self._t0) / 1e9, kind=kind, message=msg) for t, kind, msg in pending)


def workers_stats(workers: Sequence[WorkerView]) -> WorkersStats:
    """The workers at a glance: how many, on how many nodes, how many lost, and the worst lag and clock."""
    live = [w for w in workers if w.state != "lost"]
    send = max((w.send_lag_ms for w in live if w.send_lag_ms is not None), default=None)
    loop = max((w.loop_lag_ms for w in live), default=0.0)
    clocks = [w.clock_uncertainty_ms for w in workers]
    return WorkersStats(
        count=len(workers),
        nodes=len({w.node or w.host for w in workers if w.node or w.host}),
        running=sum(1 for w in workers if w.state == "running"),
        lost=len(workers) - len(live),
        lost_requests=sum(w.lost_requests for w in workers),
        loop_lag_ms=loop,
        loop_lag_high=loop > LOOP_LAG_LIMIT_MS,
        send_lag_ms=send,
        send_lag_high=send is not None and send > WORKER_SEND_LAG_LIMIT_MS,
        clock_uncertainty_ms=None if any(c is None for c in clocks) else max((c or 0.0 for c in clocks), default=0.0),
        workers=tuple(workers),
    )


def _lag(ms: float) -> str:
    """A lag beside its 10 ms limit: a decimal near the limit, so it never reads "10 ms > 10 ms"."""
    return f"{ms:.0f}" if ms >= 20 else f"{ms:.1f}"


def _window_stats(s: SlotStats, span_s: float, end_s: float) -> WindowStats:
    errors = s.errors
    output_tokens = max(0, s.output_tokens)  # a window can start after a request's chunks but hold its correction
    done = s.requests + errors
    return WindowStats(
        span_s=span_s,
        end_s=end_s,
        requests=s.requests,
        errors=errors,
        errors_by_class=dict(sorted(s.errors_by_class.items())),
        error_rate=errors / done if done else 0.0,
        requests_per_s=s.requests / span_s if span_s > 0 else 0.0,
        input_tokens=s.input_tokens,
        output_tokens=output_tokens,
        input_tokens_per_s=s.input_tokens / span_s if span_s > 0 else 0.0,
        output_tokens_per_s=output_tokens / span_s if span_s > 0 else 0.0,
        ttft=s.ttft.percentiles(),
        ttfo=s.ttfo.percentiles(),
        itl=s.itl.percentiles(),
        tpot=s.tpot.percentiles(),
        e2e=s.e2e.percentiles(),
    )


def _num(v: float | None) -> str:
    return "?" if v is None else f"{v:g}"


def describe(event: ControlEvent) -> str:
    """A readable line for an event that came without a message."""
    match event.kind:
        case EventKind.CONCURRENCY:
            return f"concurrency -> {_num(event.value)}"
        case EventKind.RATE:
            return f"rate -> {_num(event.value)} req/s"
        case EventKind.POWER_CAP:
            gpu = "all GPUs" if event.gpu_index is None else f"GPU{event.gpu_index}"
            readback = "" if event.readback is None else f" (read back {_num(event.readback)} W)"
            return f"power cap {gpu} -> {_num(event.value)} W{readback}"
        case EventKind.PAUSE:
            return "paused"
        case EventKind.RESUME:
            return "resumed"
        case EventKind.START:
            return "started"
        case EventKind.STOP:
            return "stopped"
        case EventKind.RECORD_START:
            return "recording started"
        case EventKind.RECORD_STOP:
            return "recording stopped"
        case _:
            return event.kind.value


@dataclass(slots=True)
class _ClassState:
    last_shown_ns: int
    suppressed: int = 0
    last_t_ns: int = 0
    detail: str = ""


class _ErrorThrottle:
    """At most one error event per class per second, so an error storm cannot flood the event log; the events
    that were held back are summed into the next one ("http_5xx x37: 500 Internal Server Error").

    Decisions depend only on the records' end stamps, their order and the snapshot times, never on batching.
    """

    def __init__(self) -> None:
        self._classes: dict[str, _ClassState] = {}

    def on_error(self, r: RequestRecord) -> str | None:
        """The message to show now for this failure, or None when it is held back and counted."""
        assert r.error is not None
        cls = r.error.value
        detail = _detail(r)
        state = self._classes.get(cls)
        if state is None:
            self._classes[cls] = _ClassState(last_shown_ns=r.t_end_ns)
            return _error_line(cls, 1, detail)
        if r.t_end_ns - state.last_shown_ns >= ERROR_EVENT_INTERVAL_NS:
            n = state.suppressed + 1
            state.last_shown_ns, state.suppressed = r.t_end_ns, 0
            return _error_line(cls, n, detail)
        state.suppressed += 1
        state.last_t_ns, state.detail = r.t_end_ns, detail
        return None

    def flush(self, now_ns: int) -> list[tuple[int, str]]:
        """Report held-back failures once their class's second is over, even if the storm has stopped."""
        out: list[tuple[int, str]] = []
        for cls, state in self._classes.items():
            if state.suppressed and now_ns - state.last_shown_ns >= ERROR_EVENT_INTERVAL_NS:
                out.append((state.last_t_ns, _error_line(cls, state.suppressed, state.detail)))
                state.last_shown_ns, state.suppressed = now_ns, 0
        return out


def _detail(r: RequestRecord) -> str:
    detail = r.error_detail.splitlines()[0] if r.error_detail else ""
    if not detail and r.status is not None:
        detail = f"HTTP {r.status}"
    return detail[:_MAX_DETAIL]


def _error_line(cls: str, n: int, detail: str) -> str:
    head = cls if n == 1 else f"{cls} x{n}"
    return f"{head}: {detail}" if detail else head

"""Open-loop replay on a trace's own clock, inside one worker: absolute due times, live speed, pause, resume.

Row ``k`` is due at ``anchor_ns + (t_k - anchor_t) / speed``: an absolute schedule (a late send keeps its due time
as ``t_scheduled_ns``, so client or server queueing shows in the latency, as in rate mode). A speed change or a
resume re-anchors the clock at the trace position reached, so the replay neither jumps nor repeats rows.

Rows are dealt over the workers (row ``i`` to worker ``i % n``; a session trace's to worker 0). When a worker is lost
(``--ray``), a ``Handover`` gives its rows to the survivors by count, not by time: every report of a worker says how
many rows it has started of each row stream it runs (its own timeline and each stream it took over, ``StreamKey``),
and the handover carries the lost worker's latest counts. The survivors skip exactly that many rows of each of its
streams (those it started: the ones still open then are counted as worker_lost, the rest came back as records) and
take every later row, each to exactly one of them by a rule every worker evaluates alike (row number modulo the
survivors; a conversation's turns all to the first survivor, so they stay together), so no row is sent twice by the
survivors, and a row that was due but still unsent at that report (a late sender) is sent by them. Rows it started
between that report and its death never come back as records, so re-sending them leaves each row once in the
results (the server may have seen a few twice). A lost worker's own taken-over streams go on the same way (nested
handovers). Rows that came due while the loss went unnoticed are sent at once, scheduled at the handover (the
clock's anchor): their latency is the server's, not the time it took to notice the loss.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Protocol, TypeGuard

from engine.workload.synthetic import RequestSpec
from engine.workload.traces.rows import TraceRow

EARLY_NS = 200_000  # as the Poisson loop: sleep again unless within 0.2 ms of due
MAX_CONVERSATIONS = 10_000  # session traces: earlier turns kept for continuations (oldest dropped first)


class TimedFactory(Protocol):
    """A factory whose requests come with their own schedule (``engine.workload.traces.requests.TraceFactory``)."""

    @property
    def start_t(self) -> float:
        """Trace seconds at which the replay starts (the window's start)."""
        ...

    def timeline(self, worker: int, workers: int) -> Iterator[TraceRow]: ...

    def spec_for(
        self, row: TraceRow, history: tuple[Mapping[str, str], ...] = (), history_tokens: int = 0
    ) -> RequestSpec: ...


def is_timed(factory: object) -> TypeGuard[TimedFactory]:
    return callable(getattr(factory, "timeline", None)) and callable(getattr(factory, "spec_for", None))


class TraceClock:
    """Trace seconds <-> perf_counter_ns under a speed that may change while the replay runs."""

    __slots__ = ("_anchor_ns", "_anchor_t", "_paused", "speed")

    def __init__(self, start_t: float = 0.0) -> None:
        self.speed = 0.0
        self._anchor_ns = 0
        self._anchor_t = start_t
        self._paused = True

    def position(self, now_ns: int) -> float:
        """The trace time reached at ``now_ns``."""
        if self._paused or self.speed <= 0:
            return self._anchor_t
        return self._anchor_t + (now_ns - self._anchor_ns) / 1e9 * self.speed

    def run(self, speed: float, now_ns: int) -> None:
        """Run (or go on) at ``speed`` from ``now_ns``, continuing from the position reached."""
        self._anchor_t = self.position(now_ns)
        self._anchor_ns = now_ns
        self.speed = speed
        self._paused = False

    def pause(self, now_ns: int) -> None:
        self._anchor_t = self.position(now_ns)
        self._anchor_ns = now_ns
        self._paused = True

    def due_ns(self, t_s: float) -> int | None:
        """When trace time ``t_s`` comes; None while paused or at speed 0 (nothing is ever due)."""
        if self._paused or self.speed <= 0:
            return None
        return self._anchor_ns + round(max(0.0, t_s - self._anchor_t) / self.speed * 1e9)


StreamKey = tuple[int, int]
"""A row stream of one worker: ``(source, via)``, the rows first dealt to worker ``source`` that it runs, ``via`` -1
for its own timeline or the index of the handover that gave them to it."""

OWN = -1  # ``via`` of a worker's own timeline


@dataclass(frozen=True, slots=True)
class Handover:
    """Worker ``lost`` died: of each of its row streams, the rows after the first ``started`` (its latest report's
    counts; a stream missing from them: none started) go to ``survivors``. The controller sends every handover so
    far with each target, in order."""

    lost: int
    started: tuple[tuple[StreamKey, int], ...]
    survivors: tuple[int, ...]

    def started_of(self, key: StreamKey) -> int:
        return next((n for k, n in self.started if k == key), 0)


@dataclass
class _Turn:
    """A conversation as it stood after one turn: what to send before the next user turn."""

    messages: tuple[Mapping[str, str], ...]
    done: asyncio.Event = field(default_factory=asyncio.Event)
    tokens: int = 0  # prompt + answer tokens by the server's usage (0 until known)
    end_ns: int = 0


class TraceFeed:
    """One worker's share of a trace: the row iterator (kept across pauses), its clock, and conversations."""

    def __init__(self, factory: TimedFactory, worker: int, workers: int) -> None:
        self.factory = factory
        self._worker, self._workers = worker, workers
        self._handovers: list[Handover] = []
        own = (worker, OWN)
        self._rows: Iterator[tuple[TraceRow, StreamKey]] = ((row, own) for row in factory.timeline(worker, workers))
        # Read up to the first row now, before the worker reports ready: a window deep in a large file skips
        # its earlier rows here, not on the session clock (where it would make the first sends late).
        self._pending: tuple[TraceRow, StreamKey] | None = next(self._rows, None)
        self.clock = TraceClock(factory.start_t)
        self.exhausted = self._pending is None
        self.started: dict[StreamKey, int] = {own: 0}  # rows sent so far, per stream (what a handover skips)
        self.orphans = 0  # later turns whose earlier turn was not replayed (outside the window, or dropped)
        self._conversations: OrderedDict[int, _Turn] = OrderedDict()

    async def run(self, take_budget: Callable[[], bool], send: Callable[[TraceRow, int], None]) -> None:
        """Send each row at its due time until the trace ends, the budget is spent, or the task is cancelled."""
        while True:
            pending = self._pending
            if pending is None:
                pending = next(self._rows, None)
                if pending is None:
                    self.exhausted = True
                    return
                self._pending = pending
            row, key = pending
            due = self.clock.due_ns(row.t_s)
            if due is None:
                return
            delay = due - perf_counter_ns()
            while delay > EARLY_NS:
                await asyncio.sleep(delay / 1e9)
                delay = due - perf_counter_ns()
            if not take_budget():
                return
            self._pending = None
            self.started[key] += 1
            send(row, due)
            await asyncio.sleep(0)

    # -- lost workers' rows (--ray) ---------------------------------------------------------------------------

    def started_counts(self) -> tuple[tuple[StreamKey, int], ...]:
        """Rows started so far of each stream, as a report carries them (a handover's ``started``)."""
        return tuple(sorted(self.started.items()))

    def take_over(self, handovers: Sequence[Handover]) -> list[tuple[StreamKey, Iterator[TraceRow]]]:
        """Note the handovers not seen yet; the row streams they give this worker, not advanced yet (skipping to
        their first row reads the trace up to there: the caller does that off the event loop, then ``adopt``)."""
        streams: list[tuple[StreamKey, Iterator[TraceRow]]] = []
        for h in handovers[len(self._handovers):]:
            index = len(self._handovers)
            self._handovers.append(h)
            if self._worker in h.survivors:
                # the lost worker's own rows, and those it had taken over from workers lost before it
                sources = ({h.lost} | {earlier.lost for earlier in self._handovers[:index]}) - {self._worker}
                streams += [((source, index), self._taken(source, index)) for source in sorted(sources)]
        return streams

    def adopt(self, taken: Sequence[tuple[StreamKey, TraceRow, Iterator[TraceRow]]]) -> None:
        """Merge taken-over streams (each with its first row, already read) into this worker's, in time order; the
        caller restarts ``run`` (a taken row may be due before the one it was waiting for)."""
        if not taken:
            return
        mine = self._rows if self._pending is None else itertools.chain((self._pending,), self._rows)
        self._pending = None
        streams = [mine, *(_tagged(key, first, rest) for key, first, rest in taken)]
        for key, _, _ in taken:
            self.started.setdefault(key, 0)
        self._rows = heapq.merge(*streams, key=lambda pair: pair[0].t_s)
        self.exhausted = False

    def _taken(self, source: int, index: int) -> Iterator[TraceRow]:
        """Rows first dealt to ``source`` that handover ``index`` moves from its lost worker to this one."""
        route = Router(source, self._handovers[:index + 1])
        for row in self.factory.timeline(source, self._workers):
            if route.owner_of(row) == (self._worker, index):
                yield row

    # -- conversations (session traces) ----------------------------------------------------------------------

    def history_of(self, row: TraceRow) -> _Turn | None:
        """The conversation a later turn continues; None for a first turn or an unknown parent."""
        if row.parent_chat_id is None:
            return None
        turn = self._conversations.get(row.parent_chat_id)
        if turn is None:
            self.orphans += 1
        return turn

    def remember(self, row: TraceRow, messages: tuple[Mapping[str, str], ...]) -> _Turn | None:
        if row.chat_id is None:
            return None
        turn = _Turn(messages)
        self._conversations[row.chat_id] = turn
        while len(self._conversations) > MAX_CONVERSATIONS:
            self._conversations.popitem(last=False)
        return turn


class Router:
    """Who sends each row first dealt to ``source`` after ``handovers``, and in which of its streams: fed the rows of
    ``source``'s timeline in order, each once, it counts each lost worker's stream as it goes, so the first
    ``started`` rows of that stream stay with it (it started them) and the later ones move to a survivor. Every
    worker evaluates it alike: the no-duplicate rule."""

    def __init__(self, source: int, handovers: Sequence[Handover]) -> None:
        self._source = source
        self._handovers = tuple(handovers)
        self._seen: dict[tuple[int, StreamKey], int] = {}  # (handover, stream of its lost worker) -> rows so far

    def owner_of(self, row: TraceRow) -> StreamKey:
        """``(worker, via)``: the worker that sends ``row`` and the stream it comes in (``OWN``: never moved)."""
        owner, via = self._source, OWN
        for k, h in enumerate(self._handovers):
            if owner != h.lost:
                continue
            key = (self._source, via)
            n = self._seen.get((k, key), 0)
            self._seen[(k, key)] = n + 1
            if n < h.started_of(key):
                break  # the lost worker started it: in its records, or counted as worker_lost
            owner, via = _pick(row, h), k
        return owner, via


def _tagged(key: StreamKey, first: TraceRow, rest: Iterator[TraceRow]) -> Iterator[tuple[TraceRow, StreamKey]]:
    yield first, key
    for row in rest:
        yield row, key


def _pick(row: TraceRow, h: Handover) -> int:
    """The survivor that takes ``row`` from ``h.lost``: by row number; a conversation's turns all to the first."""
    return h.survivors[0 if row.chat_id is not None else row.row % len(h.survivors)]

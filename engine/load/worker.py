"""A worker process: its own event loop (uvloop when importable) runs this worker's share of the load.

Protocol over two one-way ``multiprocessing`` pipes (small dataclasses, pickled); on Ray (``engine/load/ray_pool.py``)
the same messages travel through actor calls and the data side is a bounded queue, the loop itself unchanged:

    controller -> worker   Go(t0, target)  Target(target, at)  Pause()  Resume(at)  Stop(grace_s)
    worker -> controller   Ready(loop)  Batch(records, progress) every ~100 ms  Done(cancelled)  Failed(message)
                           Notice(message)

A ``Batch`` carries the records finished since the previous one and one ``StreamProgress`` (content chunks in the
interval, requests open and waiting, first tokens and first answer tokens, the interval's ITL gaps as histogram
bucket counts, worst event-loop lag), so IPC costs ~10 messages a second whatever the token rate.
The command pipe is watched by the event loop (which makes its fd non-blocking; commands are far below PIPE_BUF,
so each arrives whole); the data pipe is written by ``Shipper``'s thread (blocking, so a large batch is never
half-written), so a controller that is slow to read never stalls the loop that stamps chunks.
Lowering a target or pausing never cancels a request: in-flight requests finish; only ``Stop`` cancels the ones
still open after its grace period (they are counted, not recorded: they are neither successes nor server faults).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import resource
import signal
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from time import perf_counter_ns
from typing import Any, Protocol

import numpy as np

from engine.config import RunConfig
from engine.endpoint.http_choice import RequestRunner, describe, open_stream_client
from engine.load.schedule import PoissonArrivals, worker_seed
from engine.load.shipper import Shipper
from engine.load.trace_feed import Handover, StreamKey, TraceFeed, is_timed
from engine.metrics.histogram import interval_counts
from engine.records import RequestRecord, StreamProgress
from engine.snapshot import LoadMode
from engine.workload.sessions import is_session_factory
from engine.workload.synthetic import RequestFactory, request_rng
from engine.workload.traces.rows import TraceRow

REPORT_INTERVAL_S = 0.1
LAG_PROBE_S = 0.025
_EARLY_NS = 200_000  # timers may fire up to ~1 ms early or late; sleep again unless within 0.2 ms of due


@dataclass(frozen=True, slots=True)
class WorkerTarget:
    """This worker's share of the load. Open loop: the one schedule at ``total_rate`` is dealt out, this worker
    sending arrivals ``slot``, ``slot + of``, ... (``rate`` = total_rate / of, its share)."""

    mode: LoadMode
    concurrency: int
    rate: float
    slot: int = 0
    of: int = 1
    total_rate: float | None = None  # None: rate * of

    @property
    def schedule_rate(self) -> float:
        return self.rate * self.of if self.total_rate is None else self.total_rate


@dataclass(frozen=True, slots=True)
class Go:
    t0_ns: int  # the session start: rate schedules are anchored here
    target: WorkerTarget
    paused: bool = False


@dataclass(frozen=True, slots=True)
class Target:
    target: WorkerTarget
    at_ns: int | None = None  # when the change takes effect (the same instant for every worker); None: on receipt
    handovers: tuple[Handover, ...] = ()  # trace replay: every lost worker's rows so far, and who takes them


@dataclass(frozen=True, slots=True)
class Pause:
    pass


@dataclass(frozen=True, slots=True)
class Resume:
    at_ns: int | None = None  # as Target.at_ns: every worker's schedule resumes from the same instant


@dataclass(frozen=True, slots=True)
class Stop:
    grace_s: float


@dataclass(frozen=True, slots=True)
class Ready:
    worker: int
    loop: str


@dataclass(frozen=True, slots=True)
class Batch:
    worker: int
    records: list[RequestRecord] = field(default_factory=list)
    progress: StreamProgress | None = None
    # trace replay: rows started so far per row stream, as of ``progress`` (what a handover of this worker skips)
    trace_started: tuple[tuple[StreamKey, int], ...] = ()
    # requests open at ``progress`` whose records are not in this batch or an earlier one (a loss: worker_lost);
    # None from producers that do not say, then ``progress.in_flight``
    unrecorded: int | None = None


@dataclass(frozen=True, slots=True)
class Done:
    worker: int
    cancelled: int


@dataclass(frozen=True, slots=True)
class Notice:
    """One line for the operator (e.g. the HTTP client fell back to aiohttp); the run goes on."""

    worker: int
    message: str


@dataclass(frozen=True, slots=True)
class Failed:
    worker: int
    message: str


class Sender(Protocol):
    """Where a worker's messages go: the data pipe's ``Shipper``, or a Ray actor's bounded outbox."""

    on_broken: Callable[[], None]  # the controller's end is gone (called on the sender's thread)

    def send(self, obj: Any) -> None: ...


def worker_main(
    worker: int,
    config: RunConfig,
    factory: RequestFactory,
    commands: Connection,
    data: Connection,
    budget: Any | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Process entry point (forkserver or spawn). ``budget`` is a shared counter of requests started, when a count
    is set; ``environ`` the controller's environment now (a forkserver's children would otherwise see the one it
    was started with)."""
    if environ is not None:
        os.environ.clear()
        os.environ.update(environ)
    # Ctrl-C, `timeout`, systemd and a closed tmux pane signal the whole process group; the controller decides
    # how to stop (it sends Stop, or its pipes close when it dies), so workers ignore the stop signals.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    shipper = Shipper(data)
    try:
        run_worker(worker, config, factory, commands, shipper, budget)
    except SystemExit:
        shipper.close(2.0)
        raise
    shipper.close()


def run_worker(
    worker: int,
    config: RunConfig,
    factory: RequestFactory,
    commands: Connection,
    sender: Sender,
    budget: Any | None = None,
) -> None:
    """The worker loop on this thread's own event loop until Stop; a crash is reported as ``Failed`` and raises
    SystemExit(1). Used by ``worker_main`` and, on Ray, by the actor's loop thread."""
    _raise_fd_limit()
    # Everything imported so far lives as long as the process: freeze it out of the collector's reach, so the
    # full collections that the per-chunk garbage triggers walk only what the streams made (no multi-ms pause
    # in the middle of a burst of chunks).
    gc.collect()
    gc.freeze()
    runner = _Worker(worker, config, factory, commands, sender, budget)
    try:
        try:
            import uvloop
        except ImportError:
            asyncio.run(runner.run("asyncio"))
        else:
            uvloop.run(runner.run(f"uvloop {getattr(uvloop, '__version__', '?')}"))
    except BaseException as exc:
        with contextlib.suppress(Exception):
            sender.send(Failed(worker, f"worker {worker} crashed: {type(exc).__name__}: {exc}".splitlines()[0]))
        raise SystemExit(1) from None


def _raise_fd_limit() -> None:
    """Each open stream holds a socket; thousands of streams need more than the usual 1024 descriptors."""
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65_536, hard))


class _Worker:
    """The event-loop side of one worker: keeps its share of requests open or on schedule, ships batches."""

    def __init__(
        self,
        worker: int,
        config: RunConfig,
        factory: RequestFactory,
        commands: Connection,
        shipper: Sender,
        budget: Any | None,
    ) -> None:
        self._worker = worker
        self._config = config
        self._factory = factory
        self._commands = commands
        self._shipper = shipper
        self._budget = budget
        self._budget_left = budget is not None
        self._target = WorkerTarget(LoadMode.CONCURRENCY, 0, 0.0)
        self._arrivals = PoissonArrivals(0.0, worker_seed(config.seed, 0), 0)  # the one schedule, dealt out
        self._arrivals_task: asyncio.Task[None] | None = None
        # A trace replays on its own clock in rate mode; the target rate is then the speed (1.0 = as recorded).
        self._feed = TraceFeed(factory, worker, config.workers) if is_timed(factory) else None
        self._sessions = is_session_factory(factory)  # closed-loop slots are conversations, not requests
        self._conversations = 0  # conversations started (numbers them from 1, apart from request ids)
        self._filler: asyncio.Task[None] | None = None
        self._adopting: set[asyncio.Task[None]] = set()  # lost workers' trace rows being found (--ray)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._records: list[RequestRecord] = []
        self._seq = 0
        self._going = False
        self._paused = False
        self._stopping = False
        self._max_lag_ms = 0.0
        self._held_until_ns = 0  # closed loop: a 429's Retry-After holds new starts until then
        self._held_timer: asyncio.TimerHandle | None = None
        self._client: RequestRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Future[float] | None = None

    async def run(self, loop_name: str) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._stopped = loop.create_future()
        self._shipper.on_broken = self._on_pipe_broken
        kind = self._config.http_client
        notice = self._notice
        async with open_stream_client(self._config, kind, self._worker, notice) as client:
            self._client = client
            loop_name = f"{loop_name}, {describe(kind)}"
            loop.add_reader(self._commands.fileno(), self._on_command)
            helpers = [loop.create_task(self._report_loop()), loop.create_task(self._lag_loop())]
            self._send(Ready(self._worker, loop_name))
            grace_s = await self._stopped
            cancelled = await self._drain(grace_s)
            loop.remove_reader(self._commands.fileno())
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            self._report(final=True)  # nothing follows it: the window's edge stops waiting for this worker
            self._send(Done(self._worker, cancelled))

    # -- commands from the controller ------------------------------------------------------------------------

    def _on_command(self) -> None:
        try:
            while self._commands.poll():
                self._apply(self._commands.recv())
        except (EOFError, OSError):
            self._begin_stop(0.0)  # the controller is gone: nobody would read our records

    def _apply(self, msg: object) -> None:
        if self._stopping:
            return
        match msg:
            case Go(t0_ns=t0, target=target, paused=paused):
                self._going, self._paused = True, paused
                self._retarget(target, t0)
            case Target(target=target, at_ns=at_ns, handovers=handovers):
                if handovers and self._feed is not None:
                    self._take_over(handovers)
                self._retarget(target, perf_counter_ns() if at_ns is None else at_ns)
            case Pause():
                self._paused = True
                self._cancel_arrivals()
                if self._feed is not None:
                    self._feed.clock.pause(perf_counter_ns())
            case Resume(at_ns=at_ns):
                self._paused = False
                self._retarget(self._target, perf_counter_ns() if at_ns is None else at_ns, force=True)
            case Stop(grace_s=grace_s):
                self._begin_stop(grace_s)

    def _retarget(self, target: WorkerTarget, start_ns: int, force: bool = False) -> None:
        """Apply a share at once: raising starts requests now, lowering just stops replacing finished ones."""
        old, self._target = self._target, target
        if not self._going:
            return
        if self._feed is not None:
            self._retarget_trace(target, start_ns)
            return
        if target.mode is LoadMode.RATE and not self._paused:
            if force or old != target or self._arrivals_task is None:
                self._cancel_arrivals()
                self._arrivals.restart(target.schedule_rate, start_ns, target.slot, target.of)
                assert self._loop is not None
                self._arrivals_task = self._loop.create_task(self._arrivals_loop())
        else:
            self._cancel_arrivals()
        self._fill()

    def _retarget_trace(self, target: WorkerTarget, start_ns: int) -> None:
        """Trace replay: the rate share times the workers is the speed; a new speed re-anchors the trace clock."""
        assert self._feed is not None and self._loop is not None
        self._cancel_arrivals()
        if target.mode is LoadMode.RATE and not self._paused:
            self._feed.clock.run(target.schedule_rate, start_ns)
            self._arrivals_task = self._loop.create_task(self._feed.run(self._take_budget, self._send_row))
        else:
            self._feed.clock.pause(start_ns)

    def _take_over(self, handovers: tuple[Handover, ...]) -> None:
        """A lost worker's trace rows: find this worker's first one off the loop (reading the trace up to there would
        stall the streams' stamps), then merge them in and restart the sender."""
        assert self._feed is not None and self._loop is not None
        streams = self._feed.take_over(handovers)
        if streams:
            task = self._loop.create_task(self._adopt(streams))
            self._adopting.add(task)
            task.add_done_callback(self._adopting.discard)

    async def _adopt(self, streams: list[tuple[StreamKey, Iterator[TraceRow]]]) -> None:
        assert self._feed is not None
        loop = asyncio.get_running_loop()
        try:
            taken = []
            for key, stream in streams:
                first = await loop.run_in_executor(None, next, stream, None)
                if first is not None:
                    taken.append((key, first, stream))
            if taken and not self._stopping:
                self._feed.adopt(taken)
                if self._arrivals_task is not None:  # sending: again from the merged rows, on the same trace clock
                    self._cancel_arrivals()
                    self._arrivals_task = loop.create_task(self._feed.run(self._take_budget, self._send_row))
        except Exception as exc:  # the trace became unreadable: as a crash of the sender would, end visibly
            self._send(Failed(self._worker, f"worker {self._worker}: taking over a lost worker's trace rows: "
                                            f"{type(exc).__name__}: {exc}".splitlines()[0]))
            self._begin_stop(0.0)

    def _on_pipe_broken(self) -> None:
        """The controller is gone (called on the shipper's thread): stop at once, on the loop."""
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed: nothing left to stop
                self._loop.call_soon_threadsafe(self._begin_stop, 0.0)

    def _begin_stop(self, grace_s: float) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._cancel_arrivals()
        if self._filler is not None:
            self._filler.cancel()
        for task in self._adopting:
            task.cancel()
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(grace_s)

    # -- load ------------------------------------------------------------------------------------------------

    def _wants_more(self) -> bool:
        target = self._target
        return (
            target.mode is LoadMode.CONCURRENCY
            and self._feed is None
            and self._going
            and not self._paused
            and not self._stopping
            and len(self._in_flight) < target.concurrency
            and (not self._held_until_ns or not self._held())
        )

    def _held(self) -> bool:
        """Inside a Retry-After pause (closed loop only): fill again when it ends."""
        wait_ns = self._held_until_ns - perf_counter_ns()
        if wait_ns <= 0:
            self._held_until_ns = 0
            return False
        if self._held_timer is None and self._loop is not None:
            self._held_timer = self._loop.call_later(wait_ns / 1e9, self._end_hold)
        return True

    def _end_hold(self) -> None:
        self._held_timer = None
        self._fill()

    def _fill(self) -> None:
        """Closed loop: keep exactly ``concurrency`` requests open (unless paused, stopping or out of budget).

        The first start happens here, in the callback that freed the slot: a report built between a request's end
        and its replacement's start would count one open request too few (a closed loop of 1 read 0 in flight,
        which let the matrix's drain believe a cell had ended while its load still ran). The rest, one per turn."""
        if self._wants_more() and (self._filler is None or self._filler.done()):
            if not self._take_budget():
                return
            self._launch(None)
            if self._wants_more():
                assert self._loop is not None
                self._filler = self._loop.create_task(self._fill_loop())

    async def _fill_loop(self) -> None:
        """Start one request per loop turn. Starting one costs ~0.1-0.3 ms of aiohttp work; 256 of them in one
        turn (a closed loop whose streams all finish together) would hold every arrival unread for tens of ms,
        so the event loop polls the sockets (and stamps what came in) between starts."""
        while self._wants_more() and self._take_budget():
            self._launch(None)
            await asyncio.sleep(0)

    async def _arrivals_loop(self) -> None:
        """Open loop: send at each due time of the seeded Poisson schedule, however the server is doing."""
        arrivals = self._arrivals
        while True:
            due = arrivals.next_due_ns()
            if due is None:
                return
            delay = due - perf_counter_ns()
            while delay > _EARLY_NS:
                await asyncio.sleep(delay / 1e9)
                delay = due - perf_counter_ns()
            if not self._take_budget():
                return
            self._launch(due)
            # Even when behind schedule, let the new request start and commands (stop, pause) in right away.
            await asyncio.sleep(0)

    def _cancel_arrivals(self) -> None:
        if self._arrivals_task is not None:
            self._arrivals_task.cancel()
            self._arrivals_task = None

    def _take_budget(self) -> bool:
        """With a request count, claim one start from the counter shared by all workers."""
        if self._budget is None:
            return True
        if not self._budget_left:
            return False
        with self._budget.get_lock():
            if self._budget.value >= self._config.max_requests:
                self._budget_left = False
                return False
            self._budget.value += 1
        return True

    def _launch(self, t_scheduled_ns: int | None) -> None:
        self._seq += 1
        seq = self._seq
        assert self._loop is not None and self._client is not None
        if self._sessions:
            self._conversations += 1
            task = self._loop.create_task(self._session(seq, self._conversations, t_scheduled_ns))
            self._in_flight.add(task)
            task.add_done_callback(self._on_done)
            return
        spec = self._factory.make(seq, request_rng(self._config.seed, self._worker, seq))
        task = self._loop.create_task(self._one(seq, spec, t_scheduled_ns))
        self._in_flight.add(task)
        task.add_done_callback(self._on_done)

    def _send_row(self, row: TraceRow, due_ns: int) -> None:
        self._seq += 1
        assert self._loop is not None
        task = self._loop.create_task(self._one_row(self._seq, row, due_ns))
        self._in_flight.add(task)
        task.add_done_callback(self._on_done)

    async def _one_row(self, seq: int, row: TraceRow, due_ns: int) -> None:
        """One trace row. A later turn of a conversation waits for the turn it continues (its prompt needs that
        answer) and counts from its due time or that answer's end, whichever is later."""
        assert self._client is not None and self._feed is not None
        feed = self._feed
        parent = feed.history_of(row)
        history: tuple[Mapping[str, str], ...] = ()
        history_tokens, scheduled = 0, due_ns
        if parent is not None:
            await parent.done.wait()
            history, history_tokens, scheduled = parent.messages, parent.tokens, max(due_ns, parent.end_ns)
        mine = feed.remember(row, ())
        spec = feed.factory.spec_for(row, history, history_tokens)
        text: list[str] | None = [] if mine is not None else None
        record: RequestRecord | None = None
        try:
            record = await self._client.run(seq, spec, scheduled, text_out=text, turn=row.turn)
            self._records.append(record)
        finally:
            if mine is not None:  # the next turn may start now (also after a failure: with what came)
                answer = {"role": "assistant", "content": "".join(text or ())}
                mine.messages = (*spec.extra["messages"], answer)
                if record is not None:
                    mine.tokens = (record.input_tokens or 0) + record.output_tokens
                mine.end_ns = record.t_end_ns if record is not None else perf_counter_ns()
                mine.done.set()

    async def _session(self, seq: int, conversation: int, t_scheduled_ns: int | None) -> None:
        """One conversation (``engine/workload/sessions.py``): turn k resends turns 1..k-1 with the server's
        answers. It holds one closed-loop slot for all its turns; each later turn claims a request of the budget.
        A failed turn ends the conversation (the next would lack its answer); so do stop and pause."""
        assert self._client is not None
        factory: Any = self._factory
        rng = request_rng(self._config.seed, self._worker, seq)
        turns = factory.turn_count(conversation, rng)
        spec, messages = factory.opening(conversation, rng)
        scheduled, history_tokens = t_scheduled_ns, 0
        for turn in range(1, turns + 1):
            if turn > 1:
                await asyncio.sleep(factory.think_s(rng))
                if self._stopping or self._paused or not self._take_budget():
                    return
                spec, messages = factory.next_turn(conversation, messages, history_tokens, turn, rng)
                self._seq += 1
                scheduled = None
            text: list[str] = []
            record = await self._client.run(self._seq if turn > 1 else seq, spec, scheduled, text_out=text, turn=turn)
            self._records.append(record)
            if record.error is not None:
                return
            messages = [*messages, {"role": "assistant", "content": "".join(text)}]
            history_tokens = (record.input_tokens or spec.input_tokens) + record.output_tokens

    async def _one(self, seq: int, spec: Any, t_scheduled_ns: int | None) -> None:
        assert self._client is not None
        record = await self._client.run(seq, spec, t_scheduled_ns)
        self._records.append(record)  # not append(await ...): the list is swapped by _report meanwhile
        if record.retry_after_s and self._target.mode is LoadMode.CONCURRENCY:
            # The server asked this client to wait: the closed loop obeys (rate mode keeps its schedule).
            until = perf_counter_ns() + round(record.retry_after_s * 1e9)
            self._held_until_ns = max(self._held_until_ns, until)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:  # the client turns every request failure into a record: this is a bug, say so
            self._send(Failed(self._worker, f"worker {self._worker}: {type(exc).__name__}: {exc}".splitlines()[0]))
            self._begin_stop(0.0)
            return
        self._fill()

    async def _drain(self, grace_s: float) -> int:
        """Let open requests finish for up to ``grace_s``, then cancel the rest; returns how many were cancelled."""
        open_now = set(self._in_flight)
        if open_now and grace_s > 0:
            _, pending = await asyncio.wait(open_now, timeout=grace_s)
        else:
            pending = open_now
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return len(pending)

    # -- reporting -------------------------------------------------------------------------------------------

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(REPORT_INTERVAL_S)
            self._report()

    async def _lag_loop(self) -> None:
        """A periodic sleeper: how late it wakes is how long other work held the loop (chunks stamped late)."""
        interval_ns = round(LAG_PROBE_S * 1e9)
        while True:
            t = perf_counter_ns()
            await asyncio.sleep(LAG_PROBE_S)
            lag_ms = (perf_counter_ns() - t - interval_ns) / 1e6
            if lag_ms > self._max_lag_ms:
                self._max_lag_ms = lag_ms

    def _report(self, final: bool = False) -> None:
        assert self._client is not None
        chunks, self._client.chunks = self._client.chunks, 0
        records, self._records = self._records, []
        lag, self._max_lag_ms = self._max_lag_ms, 0.0
        facts = self._client.take_tick()
        itl = interval_counts(np.asarray(facts.gaps, dtype=np.int64)) if facts.gaps else None
        progress = StreamProgress(
            self._worker, perf_counter_ns(), chunks, len(self._in_flight), max(0.0, lag), facts.firsts,
            facts.waiting, facts.oldest, facts.outputs, itl, final,
        )
        # A request whose record is in this batch may still be in the set (its task's done callback runs a loop turn
        # later): in_flight keeps it (the closed loop's replacement starts in that callback, so the live figure and
        # the matrix's drain do not see a false 0 in between), but a loss must not count it both as a record and
        # as worker_lost.
        unrecorded = sum(1 for task in self._in_flight if not task.done())
        started = self._feed.started_counts() if self._feed is not None else ()
        self._send(Batch(self._worker, records, progress, started, unrecorded))

    def _notice(self, message: str) -> None:
        self._send(Notice(self._worker, message))

    def _send(self, msg: object) -> None:
        try:
            self._shipper.send(msg)
        except (OSError, ValueError):
            self._begin_stop(0.0)

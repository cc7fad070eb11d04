"""The live session: spawns the workers, owns the control state, feeds the aggregator, ticks snapshots.

Threads: the caller's (UI or CLI) thread only changes the control state and writes small commands to the
workers' pipes; everything else happens on the controller's own daemon thread: it waits on the workers' pipes
and process sentinels, merges record batches into the aggregator and the sinks, and publishes one immutable
``Snapshot`` per tick to the subscribers. The aggregator is touched by that thread alone, so it needs no lock;
other threads hand it work through a queue (``_call_soon``) and a wake-up pipe.

A worker that dies without saying goodbye turns the session FAILED with a one-line message; nothing waits on it.
On Ray (``ray=RaySpec``, ``engine/load/ray_pool.py``) a lost actor is an event instead: its in-flight requests are
counted as ``worker_lost`` and the target is rebalanced over the others (or the run stops, ``on_worker_loss="stop"``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import sys
import threading
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any, Protocol

from engine.config import RunConfig
from engine.control import ControlState, SessionMeta, SessionSink, SnapshotCallback
from engine.gpu.session import GpuSession
from engine.load.schedule import split_concurrency, split_rate
from engine.load.trace_feed import Handover, StreamKey, is_timed
from engine.load.worker import Batch, Done, Failed, Go, Notice, Pause, Ready, Resume, Stop, Target, WorkerTarget
from engine.load.worker_pool import Pool, WorkerExited, WorkerLost, WorkerPool
from engine.metrics.aggregator import Aggregator, starting_snapshot
from engine.records import ControlEvent, EventKind, RequestRecord, StreamProgress, TelemetrySample
from engine.redact import redact_url
from engine.snapshot import LoadMode, RunState, Snapshot
from engine.workload.synthetic import RequestFactory, SyntheticFactory

if TYPE_CHECKING:
    from engine.gpu.base import GpuBackend
    from engine.load.ray_spec import RaySpec
    from engine.load.worker_health import WorkerHealth
    from engine.pricing import PricingProfile
    from engine.sysinfo import SystemInfo
    from engine.telemetry.samples import ServerSample
    from engine.telemetry.server_source import ServerMetrics

STOP_GRACE_S = 2.0  # in-flight requests get this long to finish after stop; the rest are cancelled
STOP_SLACK_S = 5.0  # then a worker has this long to say goodbye before it is terminated
_ENDED = (RunState.STOPPING, RunState.STOPPED, RunState.FAILED)


class RecordingSink(SessionSink, Protocol):
    """A sink that writes a file (the recorder)."""

    @property
    def path(self) -> Any: ...

    failed: str | None  # why the file stopped being written (None while it is healthy)


RecorderFactory = Callable[[str | None, "Controller"], RecordingSink]
"""Opens a recording of the given session (``engine.storage.recorder.session_recorders`` makes one)."""


class Controller:
    """Implements ``engine.control.LoadControl`` over worker processes. Thread-safe; control methods return at once.

    ``gpu`` is "none", "auto", "nvml", "sim", "fake" or an opened ``GpuBackend``; ``sim_url`` is needed for
    "sim". ``recorder_factory`` (``engine.storage.recorder.session_recorders``) makes ``start_recording`` work.
    """

    def __init__(
        self,
        config: RunConfig,
        *,
        gpu: str | GpuBackend = "none",
        gpus: str | None = None,
        sim_url: str | None = None,
        pricing: PricingProfile | None = None,
        sinks: Sequence[SessionSink] = (),
        request_factory: RequestFactory | None = None,
        recorder_factory: RecorderFactory | None = None,
        stop_grace_s: float = STOP_GRACE_S,
        server_metrics: ServerMetrics | None = None,
        ray: RaySpec | None = None,
    ) -> None:
        self.config = config
        self.ray = ray
        self._server_metrics = server_metrics
        self._recorder_factory = recorder_factory
        self._factory = request_factory or SyntheticFactory(config.api, config.input_tokens, config.max_tokens)
        self._gpu_choice = gpu
        self._gpus_spec = gpus
        self._sim_url = sim_url
        self._pricing = pricing
        self._stop_grace_s = stop_grace_s
        self._meta = SessionMeta(endpoint=redact_url(config.base_url), model=config.model, workload=config.workload,
                                 trace=is_timed(self._factory))  # fmt: skip

        self._lock = threading.RLock()
        self._phase = RunState.STARTING  # STARTING, RUNNING, STOPPING, STOPPED or FAILED; PAUSED is a flag
        self._paused = False
        self._mode = config.mode
        self._concurrency = config.concurrency
        self._rate = config.rate
        self._message = ""
        self.stop_reason = ""
        self._going = False
        self._started = False
        self._closed = False

        self._subscribers: tuple[SnapshotCallback, ...] = ()
        self._sinks: tuple[SessionSink, ...] = tuple(sinks)
        self._recorder: RecordingSink | None = None
        self._calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._accepting_calls = True
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None

        self._pool: Pool
        if ray is not None:
            from engine.load.ray_pool import RayWorkerPool  # the one place Ray is imported, and only with --ray

            self._pool = RayWorkerPool(config, self._factory, ray)
        else:
            self._pool = WorkerPool(config, self._factory)
        self._ready: set[int] = set()
        self.worker_loops: list[str] = []
        self.notices: queue.SimpleQueue[str] = queue.SimpleQueue()  # workers' one-line notices, for a headless run
        self.cancelled_at_stop = 0
        self.worker_lost = 0  # in-flight requests of workers lost mid-run (Ray): counted, never silently dropped
        self.unsent_after_loss = 0  # of a request count: the lost workers' share nobody else could send
        self._handovers: list[Handover] = []  # trace replay: lost workers' rows and who took them, in order
        # trace replay: each worker's rows started per row stream at its latest report (what its handover skips)
        self._trace_started: dict[int, tuple[tuple[StreamKey, int], ...]] = {}
        self.completed = 0
        self._t0_ns: int | None = None
        self._stop_deadline_ns: int | None = None

        self._aggregator: Aggregator | None = None
        self._early_events: list[ControlEvent] = []
        self._gpu = GpuSession()
        self._latest = self._placeholder()

    # -- SnapshotSource ----------------------------------------------------------------------------------------

    @property
    def latest(self) -> Snapshot:
        return self._latest

    def subscribe(self, callback: SnapshotCallback) -> None:
        with self._lock:
            self._subscribers = (*self._subscribers, callback)

    def unsubscribe(self, callback: SnapshotCallback) -> None:
        with self._lock:
            self._subscribers = tuple(cb for cb in self._subscribers if cb is not callback)

    @property
    def t0_ns(self) -> int | None:
        """perf_counter_ns at which the load started (all workers ready); None before."""
        return self._t0_ns

    @property
    def worker_pids(self) -> list[int | None]:
        return self._pool.pids

    @property
    def worker_health(self) -> list[WorkerHealth] | None:
        """Per-worker health (node, clock offset, loop and send lag, records/s, lost); None for local processes."""
        return self._pool.health()

    @property
    def gpu_message(self) -> str:
        """One line: where GPU telemetry comes from, or why there is none."""
        return self._gpu.message

    @property
    def state(self) -> RunState:
        with self._lock:
            return self._run_state()

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Open the GPU backend, spawn the workers and the controller thread; returns without waiting for them."""
        with self._lock:
            if self._started or self._closed:
                return
            self._started = True
        try:
            self._gpu = GpuSession.open(self._gpu_choice, gpus=self._gpus_spec, sim_url=self._sim_url,
                                        on_samples=self._on_telemetry)  # fmt: skip
            if self._gpu.warning:
                self.emit(ControlEvent(perf_counter_ns(), EventKind.WARNING, message=self._gpu.warning))
            self._pool.spawn()
        except BaseException:
            self.close()  # a half-started session must not leave workers or a GPU sampler behind
            raise
        atexit.register(self._at_exit)
        self._thread = threading.Thread(target=self._serve, name="wattload-controller", daemon=True)
        self._thread.start()

    def stop(self, reason: str = "stopped by the operator") -> None:
        """Start no new requests; in-flight ones get ``stop_grace_s`` to finish; then the session ends."""
        self._begin_stop(reason)

    def wait(self, timeout: float | None = None) -> bool:
        """True once the session has ended (stopped or failed) and its final snapshot is published."""
        return self._finished.wait(timeout)

    def close(self, keep_power_caps: bool = False) -> None:
        """Stop the workers and join them, stop telemetry, restore power caps unless kept. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self._stop_grace_s + STOP_SLACK_S + 5.0)
        self._pool.close()
        with self._lock:
            self._accepting_calls = False  # from now on calls run inline (the wake-up pipe is about to close)
        self._run_calls()  # anything queued after the thread ended (or when it never ran)
        self._finished.set()
        if self._server_metrics is not None:
            self._server_metrics.close()
        for event in self._gpu.close(keep_power_caps):
            self._deliver_event(event)
        for sink in self._sinks:
            with contextlib.suppress(Exception):
                sink.close()
        self._sinks = ()
        os.close(self._wake_r)
        os.close(self._wake_w)
        atexit.unregister(self._at_exit)

    def _at_exit(self) -> None:
        """A normal interpreter exit still stops the workers and restores the power caps."""
        with contextlib.suppress(Exception):
            self.close()

    # -- steering ----------------------------------------------------------------------------------------------

    def set_concurrency(self, n: int) -> None:
        n = max(0, int(n))
        with self._lock:
            if self._phase in _ENDED:
                return
            self._mode, self._concurrency = LoadMode.CONCURRENCY, n
            self._send_targets()
        self.emit(ControlEvent(perf_counter_ns(), EventKind.CONCURRENCY, value=n, message=f"concurrency -> {n}"))

    def set_rate(self, r: float) -> None:
        r = max(0.0, float(r))
        with self._lock:
            if self._phase in _ENDED:
                return
            self._mode, self._rate = LoadMode.RATE, r
            self._send_targets()
        what = f"trace speed -> ×{r:g}" if self._meta.trace else f"rate -> {r:g} req/s"
        self.emit(ControlEvent(perf_counter_ns(), EventKind.RATE, value=r, message=what))

    def pause(self) -> None:
        with self._lock:
            if self._phase in _ENDED or self._paused:
                return
            self._paused = True
            if self._going:
                self._pool.broadcast(Pause())
        self.emit(ControlEvent(perf_counter_ns(), EventKind.PAUSE, message="paused: no new requests"))

    def resume(self) -> None:
        with self._lock:
            if self._phase in _ENDED or not self._paused:
                return
            self._paused = False
            if self._going:
                self._pool.broadcast(Resume(perf_counter_ns()))
        self.emit(ControlEvent(perf_counter_ns(), EventKind.RESUME, message="resumed"))

    def emit(self, event: ControlEvent) -> None:
        """Log an event (from any component) to the aggregator and the sinks, in order, on the controller thread."""
        self._call_soon(lambda: self._deliver_event(event))

    def step_power_cap(self, delta_w: float) -> str:
        message, events = self._gpu.step_power_cap(delta_w)
        for event in events:
            self.emit(event)
        return message

    def set_power_cap(self, watts: float) -> str:
        """Set every selected GPU's cap (the power-cap sweep); the change events go to the log like a key press."""
        message, events = self._gpu.set_power_cap(watts)
        for event in events:
            self.emit(event)
        return message

    @property
    def power_cap_changed(self) -> bool:
        return self._gpu.power_cap_changed

    # -- sinks and recording -----------------------------------------------------------------------------------

    def add_sink(self, sink: SessionSink) -> None:
        def add() -> None:
            self._sinks = (*self._sinks, sink)

        self._call_soon(add)

    def remove_sink(self, sink: SessionSink) -> None:
        def remove() -> None:
            self._sinks = tuple(s for s in self._sinks if s is not sink)

        self._call_soon(remove)

    def start_recording(self, path: str | None = None) -> str:
        factory = self._recorder_factory
        if factory is None:
            return "recording is not available yet"
        with self._lock:
            if self._recorder is not None:
                return f"already recording to {self._recorder.path}"
            try:
                recorder = factory(path, self)
            except Exception as exc:  # a disk or path problem: one line for the UI
                return f"cannot record: {exc}".splitlines()[0]
            if recorder.failed:  # the file could not even be created
                _quietly(recorder.close)
                reason = getattr(recorder, "failure_reason", None) or recorder.failed
                return f"cannot record to {recorder.path}: {reason}"
            self._recorder = recorder
        self.add_sink(recorder)
        self.emit(ControlEvent(perf_counter_ns(), EventKind.RECORD_START, message=f"recording to {recorder.path}"))
        return str(recorder.path)

    @property
    def recording_path(self) -> str | None:
        """The file being recorded, or None (also once a recorder has failed, e.g. on a full disk)."""
        recorder = self._recorder
        if recorder is None or recorder.failed:
            return None
        return str(recorder.path)

    @property
    def recording_failed(self) -> str | None:
        """One line when the recording stopped by itself (disk full, file not writable), else None."""
        recorder = self._recorder
        failed = getattr(recorder, "failed", None) if recorder is not None else None
        return str(failed) if failed else None

    def system_info(self) -> SystemInfo:
        """Host, driver and GPU metadata for recordings and reports; never raises."""
        from engine.sysinfo import collect_sysinfo

        return collect_sysinfo(self._gpu.backend)

    def stop_recording(self) -> str:
        with self._lock:
            recorder, self._recorder = self._recorder, None
        if recorder is None:
            return "not recording"
        self.emit(ControlEvent(perf_counter_ns(), EventKind.RECORD_STOP, message=f"recording saved: {recorder.path}"))
        self.remove_sink(recorder)
        self._call_soon(lambda: _quietly(recorder.close))
        return f"recording saved to {recorder.path}"

    # -- internals: control ------------------------------------------------------------------------------------

    def _run_state(self) -> RunState:
        if self._phase is RunState.RUNNING and self._paused:
            return RunState.PAUSED
        return self._phase

    def _control_state(self) -> ControlState:
        with self._lock:
            return ControlState(
                state=self._run_state(),
                mode=self._mode,
                target_concurrency=self._concurrency,
                target_rate=self._rate,
                recording=self.recording_path,
                message=self._message,
            )

    def _targets(self) -> dict[int, WorkerTarget]:
        """Each live worker's share: the concurrency split, the one arrival schedule dealt out (slot k of n)."""
        live = self._pool.live()
        n = max(1, len(live))
        shares = split_concurrency(self._concurrency, n)
        rates = split_rate(self._rate, n)
        return {w: WorkerTarget(self._mode, shares[k], rates[k], k, n, self._rate) for k, w in enumerate(live)}

    def _send_targets(self) -> None:
        if self._going:
            at = perf_counter_ns()  # one instant for all: the dealt schedule stays one schedule
            handovers = tuple(self._handovers)
            for i, target in self._targets().items():
                self._pool.send(i, Target(target, at, handovers))

    def _begin_stop(self, reason: str) -> None:
        with self._lock:
            if self._phase in _ENDED:
                return
            self._phase = RunState.STOPPING
            self.stop_reason = reason
            self._message = reason
            self._stop_deadline_ns = perf_counter_ns() + round((self._stop_grace_s + STOP_SLACK_S) * 1e9)
            self._pool.broadcast(Stop(self._stop_grace_s))
        self.emit(ControlEvent(perf_counter_ns(), EventKind.STOP, message=reason))
        self._wake()

    def _fail(self, message: str) -> None:
        with self._lock:
            if self._phase in (RunState.STOPPED, RunState.FAILED):
                return
            self._phase = RunState.FAILED
            self._message = message
            self.stop_reason = message
            self._stop_deadline_ns = perf_counter_ns() + round(STOP_SLACK_S * 1e9)
            self._pool.broadcast(Stop(0.0))
        self.emit(ControlEvent(perf_counter_ns(), EventKind.ERROR, message=message))

    # -- internals: the controller thread ----------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # a bug here must end the session visibly, never hang the UI
            self._fail(f"controller error: {type(exc).__name__}: {exc}".splitlines()[0])
            self._pool.close(wait_s=0.5)
        finally:
            with self._lock:
                self._accepting_calls = False
                if self._phase is not RunState.FAILED:
                    self._phase = RunState.STOPPED
            self._run_calls()
            self._publish(perf_counter_ns())
            self._finished.set()

    def _loop(self) -> None:
        tick_ns = round(1e9 / self.config.tick_hz)
        next_tick = perf_counter_ns()
        start_deadline = next_tick + round(self._pool.start_timeout_s * 1e9)  # Ray actors get longer
        while True:
            now = perf_counter_ns()
            if now >= next_tick:
                self._publish(now)
                next_tick = max(next_tick + tick_ns, now + 1)
            if self._pool.all_gone():
                return
            waitables = [self._wake_r, *self._pool.waitables()]
            for ready in wait(waitables, timeout=max(0.0, (next_tick - perf_counter_ns()) / 1e9)):
                if ready == self._wake_r:
                    os.read(self._wake_r, 4096)
                else:
                    for msg in self._pool.take(ready):
                        self._on_message(msg)
            self._run_calls()
            self._check(perf_counter_ns(), start_deadline)

    def _on_message(self, msg: object) -> None:
        match msg:
            case Batch(worker=i, records=records, progress=progress, trace_started=started):
                if started:
                    self._trace_started[i] = started
                self._take(records, progress)
            case Ready(worker=i, loop=loop_name):
                self._ready.add(i)
                self.worker_loops.append(loop_name)
                if len(self._ready) == len(self._pool):
                    self._go()
            case Done(worker=i, cancelled=n):
                self._pool.mark_done(i)
                self.cancelled_at_stop += n
            case Failed(message=message):
                self._fail(message)
            case Notice(message=message):
                self.notices.put(message)
                self.emit(ControlEvent(perf_counter_ns(), EventKind.WARNING, message=message))
            case WorkerExited(worker=i, clean=False, exitcode=code):
                self._final_report(i)
                self._fail(f"worker {i} exited unexpectedly (exit code {code}); the run was stopped")
            case WorkerLost():
                self._on_lost(msg)

    def _on_lost(self, lost: WorkerLost) -> None:
        """A Ray worker died: count its in-flight requests, then rebalance over the others or stop."""
        self._final_report(lost.worker)
        self.worker_lost += lost.in_flight
        self.unsent_after_loss += lost.unsent
        where = f" on {lost.where}" if lost.where else ""
        unsent = f", {lost.unsent} of its requests could not be sent by another worker" if lost.unsent else ""
        what = (f"worker {lost.worker}{where} lost ({lost.reason}); its {lost.in_flight} in-flight requests "
                f"are counted as worker_lost{unsent}")
        live = self._pool.live()
        if not self._going:
            self._fail(f"{what}; it was lost before the load started")
        elif not live:
            self._fail(f"{what}; no worker is left")
        elif self.ray is not None and self.ray.on_worker_loss == "stop":
            self._fail(f"{what}; the run was stopped (--on-worker-loss stop)")
        else:
            line = f"{what}; the load goes on with {len(live)} worker{'s' if len(live) != 1 else ''}"
            if self._meta.trace:  # the rows it had not started at its last report go to the others (trace_feed.py)
                started = self._trace_started.get(lost.worker, ())
                with self._lock:
                    self._handovers.append(Handover(lost.worker, started, tuple(live)))
                line += (f", which take over its trace rows not started at its last report "
                         f"({sum(n for _, n in started)} started)")
            self.notices.put(line)
            self.emit(ControlEvent(perf_counter_ns(), EventKind.ERROR, message=line))
            with self._lock:
                if self._phase not in _ENDED:
                    self._send_targets()

    def _final_report(self, worker: int) -> None:
        """A worker that ended without its own goodbye report gets one written here (nothing open, nothing waiting:
        its requests are counted lost), so the window's edge stops waiting for it and replay sees the same."""
        self._take([], StreamProgress(worker, perf_counter_ns(), 0, 0, 0.0, final=True))

    def _take(self, records: list[RequestRecord], progress: StreamProgress | None) -> None:
        agg = self._aggregator
        if agg is None:
            return
        if records:
            self.completed += len(records)
            agg.add_records(records)
            for sink in self._sinks:
                _quietly(sink.on_records, records)
        if progress is not None:
            agg.add_progress((progress,))
            for sink in self._sinks:
                _quietly(sink.on_progress, (progress,))

    def _go(self) -> None:
        """Every worker is ready: the session clock starts now and the load with it."""
        t0 = perf_counter_ns()
        self._aggregator = Aggregator(
            t0_ns=t0,
            window_s=self.config.window_s,
            meta=self._meta,
            energy=self._gpu.energy,
            pricing=self._pricing,
            gpu_count=len(self._gpu.indices),
            workers=len(self._pool),
        )
        with self._lock:
            self._t0_ns = t0
            if self._phase is RunState.STARTING:
                self._phase = RunState.RUNNING
                self._message = ""
            self._going = True
            for i, target in self._targets().items():
                self._pool.send(i, Go(t0, target, self._paused))
        early, self._early_events = self._early_events, []
        for event in early:
            self._aggregator.add_event(event)
        loops = ", ".join(sorted(set(self.worker_loops)))
        closed = self._mode is LoadMode.CONCURRENCY
        what = f"concurrency {self._concurrency}" if closed else f"rate {self._rate:g} req/s"
        n = len(self._pool)
        plural = "worker" if n == 1 else "workers"
        where = f" {self._pool.describe()}" if self._pool.describe() else ""
        self._deliver_event(ControlEvent(t0, EventKind.START,
                                         message=f"started: {what}, {n} {plural}{where} ({loops})"))
        clocks = self._pool.clock_line()
        if clocks:
            self._deliver_event(ControlEvent(t0, EventKind.ANNOTATION, message=clocks))
        self._deliver_event(ControlEvent(t0, EventKind.ANNOTATION, message=self._gpu.message))
        self._gpu.start_sampling()
        if self._server_metrics is not None:
            self._deliver_event(ControlEvent(t0, EventKind.ANNOTATION, message=self._server_metrics.describe()))
            self._server_metrics.start(self._on_server_samples)

    def _check(self, now: int, start_deadline: int) -> None:
        """Stop conditions and time limits, evaluated on every wake-up."""
        phase = self._phase
        if phase is RunState.STARTING and now > start_deadline:
            self._fail(f"the worker processes did not start within {self._pool.start_timeout_s:g} s")
        elif phase is RunState.RUNNING and self._t0_ns is not None:
            duration = self.config.duration_s
            if duration is not None and now - self._t0_ns >= duration * 1e9:
                self._begin_stop(f"duration reached ({duration:g} s)")
            elif (self.config.max_requests is not None
                  and self.completed + self.worker_lost + self.unsent_after_loss >= self.config.max_requests):
                self._begin_stop(f"request count reached ({self.config.max_requests})")
        deadline = self._stop_deadline_ns
        if phase in _ENDED and deadline is not None and now > deadline:
            self._pool.kill_stragglers()

    def _publish(self, now: int) -> None:
        agg = self._aggregator
        if agg is not None:
            agg.set_workers(self._pool.views(now))
        snap = self._placeholder() if agg is None else agg.snapshot(now, self._control_state())
        self._latest = snap
        for sink in self._sinks:
            _quietly(sink.on_snapshot, snap)
        for callback in self._subscribers:
            _quietly(callback, snap)

    def _placeholder(self) -> Snapshot:
        n = self.config.workers
        return starting_snapshot(self._meta, self._control_state(), self.config.window_s,
                                 f"starting {n} worker process{'es' if n != 1 else ''}")

    def _deliver_event(self, event: ControlEvent) -> None:
        if self._aggregator is not None:
            self._aggregator.add_event(event)
        else:
            self._early_events.append(event)
        for sink in self._sinks:
            _quietly(sink.on_event, event)

    def _on_telemetry(self, samples: list[TelemetrySample]) -> None:
        """Sampler thread: hand the batch to the controller thread."""

        def deliver() -> None:
            if self._aggregator is not None:
                self._aggregator.add_telemetry(samples)
            for sink in self._sinks:
                _quietly(sink.on_telemetry, samples)

        self._call_soon(deliver, wake=False)

    def _on_server_samples(self, samples: list[ServerSample]) -> None:
        """Scraper thread: hand the server samples to the controller thread (sinks without the method skip them)."""

        def deliver() -> None:
            if self._aggregator is not None:
                self._aggregator.add_server_samples(samples)
            for sink in self._sinks:
                method = getattr(sink, "on_server_samples", None)
                if method is not None:
                    _quietly(method, samples)

        self._call_soon(deliver, wake=False)

    def _call_soon(self, fn: Callable[[], None], wake: bool = True) -> None:
        """Run ``fn`` on the controller thread, in order; inline when that thread is not (or no longer) running."""
        with self._lock:
            if self._accepting_calls:
                self._calls.put(fn)
                queued = True
            else:
                queued = False
        if not queued:
            fn()
        elif wake:
            self._wake()

    def _run_calls(self) -> None:
        while True:
            try:
                fn = self._calls.get_nowait()
            except queue.Empty:
                return
            _quietly(fn)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"w")


_complained: set[str] = set()


def _quietly(fn: Callable[..., object], *args: object) -> None:
    """Sinks and subscribers must not raise into the engine; if one does, say so once on stderr and go on."""
    try:
        fn(*args)
    except Exception as exc:
        name = getattr(fn, "__qualname__", repr(fn))
        if name not in _complained:
            _complained.add(name)
            print(f"wattload: {name} failed: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)

"""The workers as Ray actors (``--ray``): one actor per worker, placed by a placement group spread over the nodes.

The controller sees the same pool as with local processes (``engine.load.worker_pool.Pool``): commands go out as
actor calls (numbered, applied in order), and one receiving thread here keeps a long-poll ``take`` open on every
actor, relays what comes back (record and progress batches, as the worker loop made them, whatever their payload)
into a queue and wakes the controller through a pipe it waits on. That thread also moves each worker's stamps onto
the controller's clock (``engine.load.clock_sync``), keeps the per-worker health, and turns a dead actor into a
``WorkerLost`` (its in-flight requests, the unsent part of its request-count share) instead of a failure.

This is the only module that starts Ray; nothing imports it unless ``--ray`` is given.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import replace
from time import monotonic, perf_counter_ns, sleep
from typing import Any
from uuid import uuid4

import ray
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from engine.config import RunConfig
from engine.load.clock_sync import Ping, boot_id, estimate_offset, shift_progress, shift_record
from engine.load.ray_actor import WorkerActor
from engine.load.ray_spec import RaySpec
from engine.load.schedule import split_concurrency
from engine.load.worker import Batch, Done, Failed, Go, Resume, Target
from engine.load.worker_health import HealthTracker, WorkerHealth
from engine.load.worker_pool import WorkerLost
from engine.signals import stop_signals_blocked
from engine.snapshot import WorkerView
from engine.workload.synthetic import RequestFactory

_cluster: Any = ray  # cluster_resources, nodes, available_resources carry no type hints

NAMESPACE = "wattload"
PLACE_TIMEOUT_S = 30.0  # the placement group must be placed by then (else: one line saying what is missing)
CALL_TIMEOUT_S = 90.0  # an actor's first answer: a new process importing Ray and wattload (slow on a busy machine)
START_TIMEOUT_S = 150.0  # placing, starting and pinging every actor, then their loops saying Ready
PINGS = 8  # clock pings per worker; the best round trip sets the offset's uncertainty
TAKE_WAIT_S = 0.2  # a long poll returns after this long even when the worker sent nothing
MAX_CONCURRENCY = 8  # calls an actor serves at once (the long poll holds one)


class RayUnavailable(Exception):
    """Ray is not installed, or the cluster cannot be joined or cannot hold the workers: one line for the user."""


def connect(spec: RaySpec, workers: int = 1) -> str:
    """Join (or, for ``local``, start) the cluster once per process; returns one line describing it."""
    if not ray.is_initialized():
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                   "logging_level": logging.ERROR, "namespace": NAMESPACE}
        try:
            if spec.address == "local":
                cpus = max(os.cpu_count() or 1, math.ceil(workers * spec.cpus_per_worker))
                with stop_signals_blocked():  # Ray's processes must not get the terminal's Ctrl-C: it is ours
                    # address="local": a new Ray of our own, even where `ray start` (or a crashed run) left the
                    # address of a cluster on this host, which a plain ray.init() would try to join
                    ray.init(address="local", num_cpus=cpus, **options)
            else:
                ray.init(address=spec.address, **options)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise RayUnavailable(f"cannot join {spec.describe()}: {first}") from None
    cpus = _cluster.cluster_resources().get("CPU", 0.0)
    need = workers * spec.cpus_per_worker
    if cpus < need:
        raise RayUnavailable(f"{workers} workers of {spec.cpus_per_worker:g} CPU need {need:g} CPUs; {spec.describe()} "
                             f"has {cpus:g} (fewer --workers, or add nodes with `ray start --address`)")
    nodes = sum(1 for node in _cluster.nodes() if node.get("Alive"))
    return f"Ray: {nodes} node{'s' if nodes != 1 else ''}, {cpus:g} CPUs"


class RayWorkerPool:
    """``config.workers`` actors of ``WorkerActor``, each asking for ``spec.cpus_per_worker`` CPUs."""

    start_timeout_s = START_TIMEOUT_S

    def __init__(self, config: RunConfig, factory: RequestFactory, spec: RaySpec) -> None:
        self._config = config
        self._factory = factory
        self._spec = spec
        self._n = config.workers
        self._session = uuid4().hex[:8]
        self._actors: list[Any] = []
        self._pg: PlacementGroup | None = None
        self._offsets = [0] * self._n  # worker clock - controller clock
        self._trackers = [HealthTracker(i) for i in range(self._n)]
        self._allowance = split_concurrency(config.max_requests, self._n) if config.max_requests else None
        self._inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._lock = threading.Lock()
        self._seq = [0] * self._n
        self._queued: list[list[object]] = [[] for _ in range(self._n)]  # commands sent before the actors exist
        self._started = False
        self._done: set[int] = set()
        self._dead: set[int] = set()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._pids: list[int | None] = [None] * self._n
        self._where = ""

    def __len__(self) -> int:
        return self._n

    @property
    def pids(self) -> list[int | None]:
        return list(self._pids)

    @property
    def actor_names(self) -> list[str]:
        return [self._name(i) for i in range(self._n)]

    def _name(self, i: int) -> str:
        return f"wattload-{self._session}-worker-{i}"

    # -- start --------------------------------------------------------------------------------------------------

    def spawn(self) -> None:
        """Join the cluster and ask for the placement group; the actors start on the receiving thread."""
        self._where = connect(self._spec, self._n)
        cpus = self._spec.cpus_per_worker
        self._pg = placement_group([{"CPU": cpus}] * self._n, strategy="SPREAD", name=f"wattload-{self._session}")
        self._thread = threading.Thread(target=self._serve, name="wattload-ray-pool", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        try:
            if not self._place():
                return
            self._poll()
        except Exception as exc:  # a Ray failure we did not foresee must end the run visibly
            self._put(Failed(-1, f"Ray: {type(exc).__name__}: {exc}".splitlines()[0]))
            with self._lock:
                self._dead.update(range(self._n))
            self._wake()

    def _place(self) -> bool:
        """Place the group, create the actors, measure their clocks, start their loops; False after a failure."""
        assert self._pg is not None
        ready, _ = ray.wait([self._pg.ready()], timeout=PLACE_TIMEOUT_S)
        if not ready:
            free = _cluster.available_resources().get("CPU", 0.0)
            return self._startup_failed(f"Ray could not place {self._n} workers of {self._spec.cpus_per_worker:g} "
                                        f"CPU within {PLACE_TIMEOUT_S:g} s ({free:g} CPUs free in the cluster)")
        remote = ray.remote(WorkerActor)
        # Ray lowers every worker process to nice 15 (RAY_worker_niceness): on a shared node the load would yield
        # to everything else and read its streams late. The actors run at this process's niceness instead, which is
        # the operator's choice (tests/test_ray_workers.py checks it on the actor's loop thread).
        runtime_env = {"env_vars": {"RAY_worker_niceness": str(os.nice(0))}}
        for i in range(self._n):
            strategy = PlacementGroupSchedulingStrategy(self._pg, placement_group_bundle_index=i)
            with self._lock:  # close() kills what is in the list: an actor is created only while it will see it
                if self._closing.is_set():
                    return False
                actor = remote.options(
                    name=self._name(i), namespace=NAMESPACE, num_cpus=self._spec.cpus_per_worker, max_restarts=0,
                    max_concurrency=MAX_CONCURRENCY, scheduling_strategy=strategy, runtime_env=runtime_env,
                ).remote(i, self._config, self._factory, None if self._allowance is None else self._allowance[i])
                self._actors.append(actor)
        ours = boot_id()
        for i, actor in enumerate(self._actors):
            if self._closing.is_set():
                return False
            try:
                info = ray.get(actor.describe.remote(), timeout=CALL_TIMEOUT_S)
                pings = [self._ping(actor) for _ in range(PINGS)]
            except Exception as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
                return self._startup_failed(f"Ray worker {i} did not start: {first}")
            tracker = self._trackers[i]
            tracker.host, tracker.node = info.get("host", ""), info.get("node", "")
            tracker.clock = estimate_offset(pings, same_clock=bool(ours) and info.get("boot_id") == ours)
            self._offsets[i] = tracker.clock.offset_ns
            with contextlib.suppress(ValueError):
                self._pids[i] = int(info.get("pid", ""))
        with self._lock:
            for i, actor in enumerate(self._actors):
                actor.start.remote()
                self._trackers[i].state = "running"
                for msg in self._queued[i]:
                    self._call(i, msg)
                self._queued[i].clear()
            self._started = True
        return True

    def _ping(self, actor: Any) -> Ping:
        sent = perf_counter_ns()
        worker_ns = ray.get(actor.clock.remote(), timeout=CALL_TIMEOUT_S)
        return Ping(sent, int(worker_ns), perf_counter_ns())

    def _startup_failed(self, message: str) -> bool:
        self._put(Failed(-1, message))
        with self._lock:
            self._dead.update(range(self._n))
        self._wake()
        return False

    # -- receiving (this module's thread) -----------------------------------------------------------------------

    def _poll(self) -> None:
        pending: dict[Any, int] = {self._actors[i].take.remote(TAKE_WAIT_S): i for i in range(self._n)}
        while pending and not self._closing.is_set():
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.25)
            for ref in ready:
                i = pending.pop(ref)
                try:
                    messages = ray.get(ref)
                except Exception as exc:  # the actor (or its node) died: RayActorError, ActorUnavailableError, ...
                    self._lost(i, exc)
                    continue
                said_goodbye = False
                for msg in messages:
                    said_goodbye |= isinstance(msg, Done)
                    self._put(self._arrived(i, msg))
                if said_goodbye:
                    with self._lock:
                        self._trackers[i].state = "done"
                elif i not in self._dead:
                    pending[self._actors[i].take.remote(TAKE_WAIT_S)] = i
                if messages:
                    self._wake()

    def _arrived(self, i: int, msg: object) -> object:
        """The message on the controller's clock, counted in the worker's health."""
        if not isinstance(msg, Batch):
            return msg
        delta = -self._offsets[i]
        if delta:
            msg = replace(msg, records=[shift_record(r, delta) for r in msg.records],
                          progress=None if msg.progress is None else shift_progress(msg.progress, delta))
        with self._lock:
            self._trackers[i].on_batch(len(msg.records), msg.progress, perf_counter_ns(), msg.unrecorded)
        return msg

    def _lost(self, i: int, exc: BaseException) -> None:
        with self._lock:
            if i in self._done or i in self._dead or self._closing.is_set():
                return
            self._dead.add(i)
            tracker = self._trackers[i]
            tracker.state = "lost"
            tracker.lost_requests = tracker.unrecorded  # not in_flight: a request just recorded may be in it
            tracker.lost_reason = _reason(exc)
            live = [j for j in range(self._n) if j not in self._done and j not in self._dead]
        unsent = 0
        if self._allowance is not None:
            unsent = max(0, self._allowance[i] - tracker.records - tracker.lost_requests)
            if unsent and not self._regrant(i, unsent, live):
                self._allowance[i] -= unsent
            else:
                unsent = 0
        where = f"{tracker.host or '?'} (node {tracker.node[:12]})" if tracker.node else tracker.host
        self._put(WorkerLost(i, tracker.lost_reason, tracker.lost_requests, unsent, where))
        self._wake()

    def _regrant(self, lost: int, n: int, live: list[int]) -> bool:
        """Hand the lost worker's unsent share to the first live worker still sending."""
        for j in live:
            with contextlib.suppress(Exception):
                if ray.get(self._actors[j].grant.remote(n), timeout=5.0):
                    assert self._allowance is not None
                    self._allowance[j] += n
                    self._allowance[lost] -= n
                    return True
        return False

    def _put(self, msg: object) -> None:
        self._inbox.put(msg)

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"w")

    # -- the controller's side ----------------------------------------------------------------------------------

    def send(self, i: int, msg: object) -> None:
        with self._lock:
            if i in self._done or i in self._dead:
                return
            if not self._started:
                self._queued[i].append(msg)
                return
            self._call(i, msg)

    def _call(self, i: int, msg: object) -> None:
        """Send one command (lock held), its stamps moved onto worker ``i``'s clock."""
        offset = self._offsets[i]
        if offset:
            if isinstance(msg, Go):
                msg = replace(msg, t0_ns=msg.t0_ns + offset)
            elif isinstance(msg, Target | Resume) and msg.at_ns is not None:
                msg = replace(msg, at_ns=msg.at_ns + offset)
        seq, self._seq[i] = self._seq[i], self._seq[i] + 1
        self._actors[i].command.remote(seq, msg)

    def broadcast(self, msg: object) -> None:
        for i in range(self._n):
            self.send(i, msg)

    def waitables(self) -> list[Any]:
        return [self._wake_r]

    def take(self, ready: object) -> Iterator[object]:
        with contextlib.suppress(OSError):
            os.read(self._wake_r, 4096)
        while True:
            try:
                yield self._inbox.get_nowait()
            except queue.Empty:
                return

    def mark_done(self, i: int) -> None:
        with self._lock:
            self._done.add(i)

    def live(self) -> list[int]:
        with self._lock:
            return [i for i in range(self._n) if i not in self._done and i not in self._dead]

    def all_gone(self) -> bool:
        with self._lock:
            return len(self._done | self._dead) >= self._n

    def kill_stragglers(self) -> None:
        with self._lock:
            stragglers = [i for i in range(len(self._actors)) if i not in self._done and i not in self._dead]
            self._dead.update(range(self._n) if not self._started else stragglers)
        for i in stragglers:
            with contextlib.suppress(Exception):
                ray.kill(self._actors[i], no_restart=True)

    def close(self, wait_s: float = 2.0) -> None:
        """Kill every actor and remove the placement group; returns once the actors are dead (a few seconds at
        most), so no actor outlives the run."""
        with self._lock:
            self._closing.set()
            actors = list(self._actors)
        if self._thread is not None:
            self._thread.join(wait_s + 1.0)  # still placing or pinging: it stops at its next step, actors killed here
        for actor in actors:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        deadline = monotonic() + 5.0
        for actor in actors:
            with contextlib.suppress(Exception):  # a call to a killed actor fails once it is dead
                while monotonic() < deadline:
                    ray.get(actor.clock.remote(), timeout=max(0.1, deadline - monotonic()))
                    sleep(0.05)
        if self._pg is not None:
            with contextlib.suppress(Exception):
                remove_placement_group(self._pg)
            self._pg = None
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- reporting ----------------------------------------------------------------------------------------------

    def describe(self) -> str:
        with self._lock:
            hosts = {t.node or t.host for t in self._trackers if t.node or t.host}
        return f"on Ray ({len(hosts)} node{'s' if len(hosts) != 1 else ''}; {self._where})"

    def clock_line(self) -> str:
        """The clock offsets, for the event log."""
        with self._lock:
            return "worker clocks: " + "; ".join(f"w{t.worker} {t.host or '?'} {_clock(t)}" for t in self._trackers)

    def health(self) -> list[WorkerHealth]:
        with self._lock:
            return [t.snapshot() for t in self._trackers]

    def views(self, now_ns: int) -> list[WorkerView]:
        with self._lock:
            return [t.view(now_ns) for t in self._trackers]


def _clock(t: HealthTracker) -> str:
    c = t.clock
    if c is None:
        return "not measured"
    if c.same_clock:
        return f"same clock (ping {c.best_rtt_ns / 1e6:.2f} ms)"
    return f"{c.offset_ns / 1e6:+.3f} ± {c.uncertainty_ns / 1e6:.3f} ms"


def _reason(exc: BaseException) -> str:
    """One line for a lost actor: the exception's class and its first line."""
    text = str(exc).strip().splitlines()
    first = next((line.strip() for line in text if line.strip()), "")
    return f"{type(exc).__name__}: {first}"[:200] if first else type(exc).__name__

"""One worker as a Ray actor: today's worker loop (``engine.load.worker.run_worker``) on a thread of the actor
process, with its own event loop and its own stamps, exactly as in a spawned worker process.

The controller talks to it through three calls: ``command`` (the worker protocol's commands, numbered: a threaded
actor may run two calls out of order, so they are applied in number order), ``take`` (a long poll that returns the
messages the loop sent since the last one, at most ``TAKE_MAX`` of them) and ``clock`` (the pings that measure the
clock offset). The loop's data side is a bounded queue: when the controller falls behind, the loop waits on it (and
its lag shows it) instead of memory growing. With a request count, the actor holds its share of the budget; a lost
worker's unsent share can be granted to the others.
"""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import threading
from collections.abc import Callable
from multiprocessing import Pipe
from time import perf_counter_ns
from typing import Any

from engine.config import RunConfig
from engine.load.clock_sync import boot_id
from engine.load.worker import Failed, run_worker
from engine.workload.synthetic import RequestFactory

OUTBOX_MAX = 512  # messages (~50 s of batches): bounded memory when the controller cannot keep up
TAKE_MAX = 64  # messages per take: one Ray reply stays small


class Outbox:
    """The worker loop's ``Sender`` inside an actor: a bounded queue ``take`` drains."""

    def __init__(self, maxsize: int = OUTBOX_MAX) -> None:
        self._queue: queue.Queue[object] = queue.Queue(maxsize)
        # Never called: when the controller's process ends, Ray ends its actors (they are owned by it).
        self.on_broken: Callable[[], None] = lambda: None

    def send(self, obj: Any) -> None:
        self._queue.put(obj)  # blocks while full: back-pressure, as a full pipe gives a worker process

    def take(self, wait_s: float, most: int = TAKE_MAX) -> list[object]:
        try:
            out = [self._queue.get(timeout=wait_s)]
        except queue.Empty:
            return []
        while len(out) < most:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return out


class ShareBudget:
    """A worker's share of the request count, shaped like the shared ``multiprocessing.Value`` the loop expects
    (``value`` compared against ``max_requests``): ``value`` = started + (max_requests - allowance)."""

    def __init__(self, max_requests: int, allowance: int) -> None:
        self._max = max_requests
        self._allowance = allowance
        self._started = 0
        self._lock = threading.Lock()
        self.exhausted = False  # the loop saw its share used up (it then starts no more, even after a grant)

    def get_lock(self) -> threading.Lock:
        return self._lock

    @property
    def value(self) -> int:
        v = self._started + (self._max - self._allowance)
        if v >= self._max:
            self.exhausted = True
        return v

    @value.setter
    def value(self, v: int) -> None:
        self._started = v - (self._max - self._allowance)

    def grant(self, n: int) -> bool:
        """More requests for this worker; False once the loop has stopped asking (the caller finds another)."""
        with self._lock:
            if self.exhausted:
                return False
            self._allowance += n
            return True


class WorkerActor:
    """The actor class (made remote by the pool); one per worker."""

    def __init__(self, worker: int, config: RunConfig, factory: RequestFactory, allowance: int | None) -> None:
        self._worker = worker
        self._config = config
        self._factory = factory
        self._commands, self._command_writer = Pipe(duplex=False)
        self._outbox = Outbox()
        self._budget = None if config.max_requests is None or allowance is None else ShareBudget(
            config.max_requests, allowance)
        self._next_seq = 0
        self._pending: dict[int, object] = {}
        self._command_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def clock(self) -> int:
        """One ping: this process's perf_counter_ns."""
        return perf_counter_ns()

    def describe(self) -> dict[str, str]:
        """Where this actor runs, and its kernel's boot id (same boot id = same clock as the controller)."""
        node = ""
        with contextlib.suppress(Exception):
            import ray  # inside an actor Ray is there; importing this module without it stays possible

            node = ray.get_runtime_context().get_node_id()
        return {"host": socket.gethostname(), "boot_id": boot_id(), "node": node, "pid": str(os.getpid())}

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"wattload-worker-{self._worker}", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            run_worker(self._worker, self._config, self._factory, self._commands, self._outbox, self._budget)
        except SystemExit:
            pass  # run_worker has reported the crash as Failed
        except BaseException as exc:  # pragma: no cover - run_worker catches everything
            self._outbox.send(Failed(self._worker, f"worker {self._worker}: {type(exc).__name__}: {exc}"))

    def command(self, seq: int, msg: object) -> None:
        """Apply commands in the order the controller numbered them."""
        with self._command_lock:
            self._pending[seq] = msg
            while self._next_seq in self._pending:
                with contextlib.suppress(OSError, ValueError):
                    self._command_writer.send(self._pending.pop(self._next_seq))
                self._next_seq += 1

    def take(self, wait_s: float) -> list[object]:
        return self._outbox.take(wait_s)

    def grant(self, n: int) -> bool:
        return self._budget.grant(n) if self._budget is not None else False

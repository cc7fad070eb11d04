"""The worker processes of one session and their pipes: spawn, command, receive, notice deaths, reap.

Each worker gets two one-way pipes (see engine/load/worker.py for the protocol). Commands may come from any thread
(one lock serialises writes); receiving happens on the controller thread alone. A worker counts as *gone* once it
said goodbye (``Done``) or its process ended; the pool never blocks for long: reaping escalates from join to
terminate to kill within a few seconds.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

from engine.config import RunConfig
from engine.load.worker import worker_main
from engine.load.worker_health import WorkerHealth
from engine.signals import stop_signals_blocked
from engine.snapshot import WorkerView
from engine.workload.synthetic import RequestFactory


def worker_context() -> ForkServerContext | SpawnContext:
    """How worker processes start: from a forkserver that has imported the worker code once (Linux), so each
    worker is a fork of a ready process instead of a fresh interpreter importing ~0.6 s of modules (pydantic
    models, aiohttp, numpy): a session with many workers, and every sweep step, start that much sooner. The server
    is single-threaded, so forking it is safe even from the threaded TUI; elsewhere (macOS, Windows) spawn."""
    if sys.platform != "linux":
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["engine.load.forkserver_init", "engine.load.worker"])
    return ctx

START_TIMEOUT_S = 60.0


class WorkerExited:
    """A worker's process ended; ``clean`` when it said goodbye first."""

    def __init__(self, worker: int, clean: bool, exitcode: int | None) -> None:
        self.worker = worker
        self.clean = clean
        self.exitcode = exitcode


@dataclass(frozen=True, slots=True)
class WorkerLost:
    """A worker of a distributed pool (a Ray actor, or its node) died mid-run. ``in_flight`` is what it had open at
    its last report and had not sent a record of (those requests are counted as worker_lost); ``unsent`` is the part
    of its request-count share no other worker could take."""

    worker: int
    reason: str
    in_flight: int = 0
    unsent: int = 0
    where: str = ""


class Pool(Protocol):
    """What the controller needs of its workers: local processes (``WorkerPool``) or Ray actors (``RayWorkerPool``)."""

    start_timeout_s: float  # spawning (or placing) every worker until all say Ready must take less

    def __len__(self) -> int: ...
    @property
    def pids(self) -> list[int | None]: ...
    def spawn(self) -> None: ...
    def send(self, i: int, msg: object) -> None: ...
    def broadcast(self, msg: object) -> None: ...
    def waitables(self) -> list[Any]: ...
    def take(self, ready: object) -> Iterator[object]: ...
    def mark_done(self, i: int) -> None: ...
    def live(self) -> list[int]: ...
    def all_gone(self) -> bool: ...
    def kill_stragglers(self) -> None: ...
    def close(self, wait_s: float = 2.0) -> None: ...
    def describe(self) -> str: ...
    def clock_line(self) -> str: ...
    def health(self) -> list[WorkerHealth] | None: ...
    def views(self, now_ns: int) -> list[WorkerView] | None: ...


class WorkerPool:
    """Spawned worker processes ("spawn" context: fresh interpreters, safe next to threads)."""

    start_timeout_s = START_TIMEOUT_S

    def __init__(self, config: RunConfig, factory: RequestFactory) -> None:
        self._config = config
        self._factory = factory
        self._procs: list[BaseProcess] = []
        self._data: list[Connection] = []  # worker -> controller
        self._commands: list[Connection] = []  # controller -> worker
        self._send_lock = threading.Lock()
        self._done: set[int] = set()  # said goodbye
        self._dead: set[int] = set()  # process ended
        self._eof: set[int] = set()  # data pipe closed
        self.budget: Any = None  # shared count of requests started, when the run has a request count

    def __len__(self) -> int:
        return len(self._procs)

    @property
    def pids(self) -> list[int | None]:
        return [p.pid for p in self._procs]

    def spawn(self) -> None:
        ctx = worker_context()
        if self._config.max_requests is not None:
            self.budget = ctx.Value("q", 0)
        for i in range(self._config.workers):
            cmd_read, cmd_write = ctx.Pipe(duplex=False)
            data_read, data_write = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=worker_main,
                args=(i, self._config, self._factory, cmd_read, data_write, self.budget, dict(os.environ)),
                name=f"wattload-worker-{i}",
                daemon=True,  # never outlive the session's process
            )
            with stop_signals_blocked():  # the group's SIGTERM/SIGHUP are the controller's to act on
                proc.start()
            cmd_read.close()
            data_write.close()
            self._procs.append(proc)
            self._data.append(data_read)
            self._commands.append(cmd_write)

    # -- commands (any thread) ---------------------------------------------------------------------------------

    def send(self, i: int, msg: object) -> None:
        if i in self._done or i in self._dead:
            return
        with self._send_lock:
            try:
                self._commands[i].send(msg)
            except (OSError, ValueError):
                pass  # the worker is gone; its sentinel tells the controller thread

    def broadcast(self, msg: object) -> None:
        for i in range(len(self._commands)):
            self.send(i, msg)

    # -- receiving (the controller thread) ---------------------------------------------------------------------

    def waitables(self) -> list[Any]:
        """What ``multiprocessing.connection.wait`` should watch: live data pipes and process sentinels."""
        live = [c for i, c in enumerate(self._data) if i not in self._dead and i not in self._eof]
        return live + [p.sentinel for i, p in enumerate(self._procs) if i not in self._dead]

    def take(self, ready: object) -> Iterator[object]:
        """The messages behind one ready waitable; a ``WorkerExited`` last when it was a process sentinel."""
        if isinstance(ready, Connection):
            yield from self._drain(self._data.index(ready))
            return
        i = next(i for i, p in enumerate(self._procs) if p.sentinel == ready)
        yield from self._drain(i)  # a goodbye may still sit in the pipe
        self._dead.add(i)
        self._procs[i].join(0.5)  # the sentinel fires a moment before the exit code is known
        yield WorkerExited(i, i in self._done, self._procs[i].exitcode)

    def _drain(self, i: int) -> Iterator[object]:
        conn = self._data[i]
        try:
            while conn.poll():
                yield conn.recv()
        except (EOFError, OSError):
            self._eof.add(i)

    def mark_done(self, i: int) -> None:
        self._done.add(i)

    def all_gone(self) -> bool:
        return all(i in self._done or i in self._dead for i in range(len(self._procs)))

    def live(self) -> list[int]:
        """Workers that have neither said goodbye nor ended (all of them, before spawn)."""
        n = len(self._procs) or self._config.workers
        return [i for i in range(n) if i not in self._done and i not in self._dead]

    def describe(self) -> str:
        return ""

    def clock_line(self) -> str:
        return ""  # one machine, one clock

    def health(self) -> list[WorkerHealth] | None:
        return None

    def views(self, now_ns: int) -> list[WorkerView] | None:
        return None  # one machine: the Load panel's client figures say it all

    def kill_stragglers(self) -> None:
        """Past the stop deadline: end the workers that have not said goodbye."""
        for i, proc in enumerate(self._procs):
            if i not in self._done and i not in self._dead:
                reap(proc, wait_s=0.0)
                self._dead.add(i)

    def close(self, wait_s: float = 2.0) -> None:
        for proc in self._procs:
            reap(proc, wait_s)
        for conn in (*self._data, *self._commands):
            conn.close()


def reap(proc: BaseProcess, wait_s: float = 2.0) -> None:
    """Join a worker, escalating to terminate and kill; never blocks for more than a few seconds."""
    proc.join(wait_s)
    if proc.is_alive():
        proc.terminate()
        proc.join(1.0)
    if proc.is_alive():
        proc.kill()
        proc.join(1.0)

"""Shared pieces for the load-engine tests: a simulated server, a collecting sink, bounded polling.

Everything talks to 127.0.0.1 only, and every wait has a deadline so a hang fails a test instead of the suite.
"""

from __future__ import annotations

import contextlib
import random
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from engine.config import RunConfig
from engine.records import ControlEvent, RequestRecord, StreamProgress, TelemetrySample
from engine.sim.model import SimConfig
from engine.sim.server import SimServer
from engine.snapshot import Snapshot
from engine.workload.synthetic import RequestSpec, SyntheticFactory

if TYPE_CHECKING:
    from engine.load.controller import Controller

T = TypeVar("T")

SIM_MODEL = SimConfig().model


@contextlib.contextmanager
def sim_server(**settings: Any) -> Iterator[str]:
    """The simulated server on a thread of this process; yields its /v1 base URL."""
    server = SimServer(SimConfig(**settings))
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


def root_of(url: str) -> str:
    return url.removesuffix("/v1")


_http = httpx.Client(timeout=5.0, trust_env=False)  # one pooled client: fetching hundreds of stamps stays quick


def sim_stamps(url: str, response_id: str) -> dict[str, Any]:
    reply = _http.get(f"{root_of(url)}/sim/stamps/{response_id}")
    reply.raise_for_status()
    return reply.json()


def set_sim(url: str, **patch: Any) -> None:
    httpx.post(f"{root_of(url)}/sim/config", json=patch, timeout=5.0, trust_env=False).raise_for_status()


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(url: str, **fields: Any) -> RunConfig:
    base = {"base_url": url, "model": SIM_MODEL, "workers": 1, "input_tokens": 16, "max_tokens": 16}
    return RunConfig(**{**base, **fields})


def wait_for(
    predicate: Callable[[], T],
    timeout_s: float,
    what: str,
    interval_s: float = 0.02,
    detail: Callable[[], str] | None = None,
) -> T:
    """Poll ``predicate`` until it returns something truthy and return that; fail after ``timeout_s`` (with
    ``detail()`` in the message when given). The suite's one bounded wait: no test sleeps and hopes, and no test
    writes its own deadline loop."""
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        if time.monotonic() > deadline:
            extra = f"; {detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}{extra}")
        time.sleep(interval_s)
    return value


def wait_snapshot(c: Controller, predicate: Callable[[Snapshot], bool], timeout_s: float, what: str) -> Snapshot:
    """The controller's first latest snapshot that satisfies ``predicate`` (bounded)."""

    def matching() -> Snapshot | None:
        snap = c.latest
        return snap if predicate(snap) else None

    return wait_for(matching, timeout_s, what)


def finish(c: Controller) -> None:
    """Stop a running session and wait, bounded, until it has ended."""
    c.stop()
    assert c.wait(30), "the session did not end"
    c.close()


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


class CollectingSink:
    """A SessionSink that keeps everything it is given (the recorder's view of a session)."""

    def __init__(self) -> None:
        self.records: list[RequestRecord] = []
        self.progress: list[StreamProgress] = []
        self.telemetry: list[TelemetrySample] = []
        self.events: list[ControlEvent] = []
        self.snapshots: list[Snapshot] = []
        self.closed = False
        self.path = "collected.db"
        self.failed: str | None = None  # a RecordingSink: None while the "file" is healthy

    def on_records(self, records: Sequence[RequestRecord]) -> None:
        self.records.extend(records)

    def on_progress(self, progress: Sequence[StreamProgress]) -> None:
        self.progress.extend(progress)

    def on_telemetry(self, samples: Sequence[TelemetrySample]) -> None:
        self.telemetry.extend(samples)

    def on_event(self, event: ControlEvent) -> None:
        self.events.append(event)

    def on_snapshot(self, snapshot: Snapshot) -> None:
        self.snapshots.append(snapshot)

    def close(self) -> None:
        self.closed = True


class SlowFactory:
    """A request factory that blocks its worker's event loop for ``delay_s`` per request: a client that cannot
    keep up with its schedule (module-level so the spawned worker can unpickle it)."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.inner = SyntheticFactory("chat", 16, 8)

    def make(self, seq: int, rng: random.Random) -> RequestSpec:
        time.sleep(self.delay_s)
        return self.inner.make(seq, rng)


def run_to_end(controller: Any, timeout_s: float = 60.0) -> None:
    """Start a session that stops by itself (duration or request count) and wait, bounded, until it has."""
    controller.start()
    try:
        assert controller.wait(timeout_s), "the session did not end by itself"
    finally:
        controller.close()

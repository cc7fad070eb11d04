"""Poll Prometheus sources on a thread of their own, so no endpoint can stall the engine or the UI.

One daemon thread runs an asyncio loop with one httpx client and one task per source. Each task fetches on an
absolute clock (a slow answer skips ticks rather than bunching them), with a timeout and a body limit: a slow,
failing or huge endpoint costs only its own figures, and its result says why in one line. Results go to one
callback, on the scraper's thread; the callback must hand them on quickly (the controller queues them).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx

from engine.telemetry.exposition import Exposition, ExpositionError, parse_exposition

MAX_BODY_BYTES = 4 * 1024 * 1024  # vLLM's /metrics is ~50-150 KB; DCGM for 8 GPUs ~100 KB
DEFAULT_INTERVAL_S = 1.0
MAX_TIMEOUT_S = 5.0


class FetchError(Exception):
    """A source gave nothing usable this time; ``str(exc)`` is one line for the panel."""


class Source(Protocol):
    """Something that can be fetched into an Exposition (a /metrics URL, a Prometheus query)."""

    @property
    def name(self) -> str: ...  # shown in panels and recordings: never contains credentials
    async def fetch(self, client: httpx.AsyncClient, timeout_s: float) -> Exposition: ...


def display_url(url: str) -> str:
    """The URL without user name and password (they must not reach a panel, a recording or an error line)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "<invalid URL>"
    if parsed.userinfo:
        parsed = parsed.copy_with(username=None, password=None)
    return str(parsed)


async def get_limited(client: httpx.AsyncClient, url: str, timeout_s: float, *, params: dict[str, str] | None = None,
                      limit: int = MAX_BODY_BYTES) -> bytes:  # fmt: skip
    """GET ``url`` and return its (decoded) body; FetchError on errors, non-2xx or a body over ``limit`` bytes."""
    timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 2.0))
    try:
        async with asyncio.timeout(timeout_s * 2):  # a server that trickles bytes must not hold the task forever
            async with client.stream("GET", url, params=params, timeout=timeout) as reply:
                if reply.status_code >= 400:
                    raise FetchError(f"HTTP {reply.status_code}")
                declared = reply.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > limit:
                    raise FetchError(f"body of {int(declared) / 1e6:.1f} MB is over the {limit // 2**20} MiB limit")
                chunks: list[bytes] = []
                size = 0
                async for chunk in reply.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise FetchError(f"body over the {limit // 2**20} MiB limit: not read")
                    chunks.append(chunk)
                return b"".join(chunks)
    except TimeoutError:
        raise FetchError(f"timed out: no complete answer within {timeout_s * 2:g} s") from None
    except httpx.TimeoutException:
        raise FetchError(f"timed out after {timeout_s:g} s") from None
    except httpx.HTTPError as exc:
        raise FetchError(f"{type(exc).__name__}") from None


@dataclass(frozen=True, slots=True)
class MetricsEndpoint:
    """A Prometheus text-format endpoint (``/metrics`` of a server, a DCGM exporter)."""

    url: str

    @property
    def name(self) -> str:
        return display_url(self.url)

    async def fetch(self, client: httpx.AsyncClient, timeout_s: float) -> Exposition:
        body = await get_limited(client, self.url, timeout_s)
        try:
            return parse_exposition(body.decode("utf-8", errors="replace"))
        except ExpositionError as exc:
            raise FetchError(str(exc)) from None


@dataclass(frozen=True, slots=True)
class ScrapeResult:
    """One fetch of one source: the exposition, or the one-line reason there is none."""

    source: str
    t_ns: int  # perf_counter_ns when the answer had arrived
    unix_s: float  # wall time at t_ns (to place a source's own value timestamps on our clock)
    exposition: Exposition | None
    error: str = ""


ResultCallback = Callable[[ScrapeResult], None]


class Scraper:
    """Fetches every source every ``interval_s`` on its own thread; ``on_result`` gets each result."""

    def __init__(self, sources: Sequence[Source], on_result: ResultCallback, interval_s: float = DEFAULT_INTERVAL_S,
                 timeout_s: float | None = None) -> None:  # fmt: skip
        if interval_s <= 0:
            raise ValueError("the scrape interval must be > 0")
        self.sources = tuple(sources)
        self.interval_s = interval_s
        self.timeout_s = timeout_s if timeout_s is not None else min(MAX_TIMEOUT_S, max(0.5, interval_s))
        self._on_result = on_result
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self.fetches = 0
        self.callback_error: str | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._main, name="wattload-scraper", daemon=True)
        self._thread.start()
        self._started.wait(5.0)

    def stop(self, timeout_s: float = 3.0) -> None:
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already closed
                loop.call_soon_threadsafe(stop.set)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    def _main(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        self._started.set()
        n = len(self.sources)
        limits = httpx.Limits(max_connections=max(4, 2 * n), max_keepalive_connections=max(1, n))
        async with httpx.AsyncClient(trust_env=False, limits=limits, follow_redirects=False) as client:
            tasks = [asyncio.create_task(self._poll(client, s)) for s in self.sources]
            await self._stop.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _poll(self, client: httpx.AsyncClient, source: Source) -> None:
        assert self._stop is not None
        next_t = time.perf_counter()
        while not self._stop.is_set():
            self._deliver(await fetch_once(client, source, self.timeout_s))
            next_t += self.interval_s
            now = time.perf_counter()
            if now > next_t:  # behind: skip the missed ticks
                next_t += self.interval_s * int((now - next_t) / self.interval_s + 1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), next_t - now)

    def _deliver(self, result: ScrapeResult) -> None:
        self.fetches += 1
        try:
            self._on_result(result)
        except Exception as exc:  # the consumer's bug must not end the polling
            self.callback_error = f"{type(exc).__name__}: {exc}".splitlines()[0]


async def fetch_once(client: httpx.AsyncClient, source: Source, timeout_s: float) -> ScrapeResult:
    """One fetch, never raising: the exposition or the one-line error, stamped when the answer arrived."""
    try:
        expo = await source.fetch(client, timeout_s)
        error = ""
    except FetchError as exc:
        expo, error = None, str(exc) or "no answer"
    except Exception as exc:  # anything else from a source is still one line, never a dead poller
        expo, error = None, f"{type(exc).__name__}: {exc}".splitlines()[0][:160]
    return ScrapeResult(source.name, time.perf_counter_ns(), time.time(), expo, error)


def fetch_all_now(sources: Sequence[Source], timeout_s: float = 3.0) -> list[ScrapeResult]:
    """One fetch of every source, waiting for the answers (discovery at open time, `wattload gpu`).

    Runs on a short-lived thread of its own, so it works whether or not the caller runs an event loop."""
    out: list[ScrapeResult | None] = [None] * len(sources)

    async def one(client: httpx.AsyncClient, i: int, source: Source) -> None:
        out[i] = await fetch_once(client, source, timeout_s)

    async def run() -> None:
        async with httpx.AsyncClient(trust_env=False, follow_redirects=False) as client:
            await asyncio.gather(*(one(client, i, s) for i, s in enumerate(sources)))

    thread = threading.Thread(target=lambda: asyncio.run(run()), name="wattload-scrape-once", daemon=True)
    thread.start()
    thread.join(timeout_s * 2 + 2.0)
    late = f"timed out: no complete answer within {timeout_s * 2 + 2.0:g} s"
    return [r if r is not None else ScrapeResult(s.name, time.perf_counter_ns(), time.time(), None, late)
            for r, s in zip(out, sources, strict=True)]  # fmt: skip

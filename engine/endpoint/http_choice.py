"""Which HTTP client streams a worker's requests: ``--http-client auto|lean|aiohttp``.

``lean`` (engine/endpoint/lean_client.py) is the fast path; ``aiohttp`` (engine/endpoint/client.py) does what lean does
not: redirects and compressed bodies. ``auto`` streams with lean and, the first time a response needs aiohttp,
sends that request again through aiohttp, keeps aiohttp for the rest of the run and says so in one line.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Literal, Protocol

import aiohttp

from engine.config import RunConfig
from engine.endpoint.client import StreamClient, TickFacts, open_session
from engine.endpoint.lean_client import LeanPool, LeanStreamClient, NeedsFallback
from engine.endpoint.stamped_socket import describe_stamps, receive_stamps
from engine.records import RequestRecord, RequestSpec

HttpClientKind = Literal["auto", "lean", "aiohttp"]
HTTP_CLIENTS: tuple[HttpClientKind, ...] = ("auto", "lean", "aiohttp")


class RequestRunner(Protocol):
    """What a worker needs from a client: run one request into a record, count content chunks for progress."""

    chunks: int

    def take_tick(self) -> TickFacts: ...

    async def run(
        self,
        request_id: int,
        spec: RequestSpec,
        t_scheduled_ns: int | None = None,
        *,
        text_out: list[str] | None = None,
        turn: int = 0,
    ) -> RequestRecord: ...


def describe(kind: str) -> str:
    """A few words for the run's start line: which client streams, with its parser's version."""
    if kind == "aiohttp":
        return f"aiohttp {aiohttp.__version__}"
    import httptools

    stamps = describe_stamps(receive_stamps())
    return f"lean HTTP (httptools {httptools.__version__}, {stamps})" + (", aiohttp fallback" if kind == "auto" else "")


class AutoStreamClient:
    """Lean until a response needs aiohttp; then that request again, and every later one, through aiohttp."""

    def __init__(
        self,
        lean: LeanStreamClient,
        open_fallback: Callable[[], StreamClient],
        notice: Callable[[str], None] | None = None,
    ) -> None:
        self._lean = lean
        self._open_fallback = open_fallback
        self._notice = notice
        self._aiohttp: StreamClient | None = None

    @property
    def chunks(self) -> int:
        return self._lean.chunks + (self._aiohttp.chunks if self._aiohttp is not None else 0)

    @chunks.setter
    def chunks(self, value: int) -> None:
        self._lean.chunks = value
        if self._aiohttp is not None:
            self._aiohttp.chunks = 0

    def take_tick(self) -> TickFacts:
        facts = self._lean.take_tick()
        return facts if self._aiohttp is None else facts.merged(self._aiohttp.take_tick())

    async def run(
        self,
        request_id: int,
        spec: RequestSpec,
        t_scheduled_ns: int | None = None,
        *,
        text_out: list[str] | None = None,
        turn: int = 0,
    ) -> RequestRecord:
        if self._aiohttp is None:
            try:
                return await self._lean.run(request_id, spec, t_scheduled_ns, text_out=text_out, turn=turn)
            except NeedsFallback as why:
                if self._aiohttp is None:  # several streams may find out at once: switch and say so once
                    self._aiohttp = self._open_fallback()
                    if self._notice is not None:
                        self._notice(f"HTTP client: {why.reason}; streaming through aiohttp from now on")
        if text_out is not None:
            text_out.clear()  # the lean attempt may have collected part of an answer before it handed over
        return await self._aiohttp.run(request_id, spec, t_scheduled_ns, text_out=text_out, turn=turn)


@contextlib.asynccontextmanager
async def open_stream_client(
    config: RunConfig, kind: str, worker: int = 0, notice: Callable[[str], None] | None = None
) -> AsyncIterator[RequestRunner]:
    """The worker's client of ``kind``, with its connection pool, closed on exit."""
    if kind == "aiohttp":
        async with open_session(config) as session:
            yield StreamClient(config, session, worker)
        return
    pool = LeanPool(asyncio.get_running_loop())
    sessions: list[aiohttp.ClientSession] = []

    def fallback() -> StreamClient:
        session = open_session(config, decompress=True)
        sessions.append(session)
        return StreamClient(config, session, worker)

    try:
        if kind == "lean":
            yield LeanStreamClient(config, pool, worker)
        else:
            yield AutoStreamClient(LeanStreamClient(config, pool, worker, fallback=True), fallback, notice)
    finally:
        pool.close()
        for session in sessions:
            await session.close()

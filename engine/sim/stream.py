"""Where generated tokens go: straight onto a streaming connection, or into a buffered answer.

The scheduler emits one token per running sequence per step, up to 256 streams at once. Waking a handler
coroutine per token (aiohttp's ``await resp.write``) costs more than the write itself, so a ``StreamSink`` writes
HTTP/1.1 chunked frames to the transport synchronously from the step. aiohttp still owns the response: it sent
the headers (``prepare``) and writes the terminating chunk (``write_eof``) when the handler resumes on ``done``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from engine.sim.faults import FaultPlan
from engine.sim.stamps import RequestStamps
from engine.sim.tokens import OutputText


class Frames(Protocol):
    """The SSE events of one streamed answer: ``openai_api.ResponseFrames`` (chat and completions) or
    ``responses_api.ResponsesFrames`` (the Responses API)."""

    role: bytes | None  # the event before the first token, if the API has one

    def content(self, quoted_text: bytes, reasoning: bool = False) -> bytes: ...

    def tail(self, reason: str, usage_prompt_tokens: int | None, tokens: int) -> bytes: ...

    def malformed(self) -> bytes: ...


class Sink(Protocol):
    """What the scheduler needs from a request's output side."""

    closed: bool
    done: asyncio.Future[None]  # resolved when the response is complete or abandoned

    def token(self) -> bool:
        """One more generated token; False when the output side is gone (the sequence is dropped)."""
        ...

    def finish(self, reason: str) -> None: ...

    def abort(self) -> None:
        """Server shutdown: end the response without completing it."""
        ...


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class StreamSink:
    """One SSE response written frame by frame, with its fault plan and ground-truth stamps."""

    __slots__ = (
        "_held",
        "_loop",
        "_pending",
        "_pos",
        "_stall_end_ns",
        "chunks",
        "closed",
        "done",
        "faults",
        "finished",
        "frames",
        "reasoning_tokens",
        "stall_s",
        "stamps",
        "text",
        "tokens",
        "tokens_per_chunk",
        "transport",
        "usage_prompt_tokens",
    )

    def __init__(
        self,
        transport: asyncio.Transport,
        frames: Frames,
        text: OutputText,
        text_pos: int,
        tokens_per_chunk: int,
        stamps: RequestStamps,
        faults: FaultPlan,
        stall_s: float,
        usage_prompt_tokens: int | None,
        reasoning_tokens: int = 0,
    ) -> None:
        self.transport = transport
        self.reasoning_tokens = reasoning_tokens  # the first this many tokens stream as reasoning content
        self.frames = frames
        self.text = text
        self._pos = text_pos
        self.tokens_per_chunk = tokens_per_chunk
        self.stamps = stamps
        self.faults = faults
        self.stall_s = stall_s
        self.usage_prompt_tokens = usage_prompt_tokens  # None: no usage chunk
        self._loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self._loop.create_future()
        self._pending = 0
        self._held: list[tuple[bytes, bool]] | None = None  # frames held back during a stall
        self._stall_end_ns = 0
        self.tokens = 0
        self.chunks = 0
        self.closed = False  # nothing more can be written (reset, client gone, shutdown)
        self.finished = False

    def token(self) -> bool:
        self.tokens += 1
        self._pending += 1
        if self._pending >= self.tokens_per_chunk or self.tokens == self.reasoning_tokens:
            self._emit_content()  # a chunk never mixes reasoning and answer
        return not self.closed

    def _emit_content(self) -> None:
        n = self._pending
        self._pending = 0
        reasoning = self.tokens <= self.reasoning_tokens
        if reasoning:
            self.stamps.reasoning_chunks += 1
        event = self.frames.content(self.text.join_quoted(self._pos, n), reasoning)
        self._pos += n
        if self.chunks == 0 and self.frames.role is not None:
            self._write(self.frames.role, False)
        self.chunks += 1
        self._write(event, True)
        after = self.chunks
        faults = self.faults
        if after == faults.malformed_after:
            self._write(self.frames.malformed(), False)
        if after == faults.reset_after:
            self._reset()
        elif after == faults.stall_after and self.stall_s > 0:
            self._held = []
            self._stall_end_ns = time.perf_counter_ns() + int(self.stall_s * 1e9)
            self._loop.call_later(self.stall_s, self._release)

    def _write(self, event: bytes, content: bool) -> None:
        if self.closed:
            return
        if self._held is not None:
            self._held.append((event, content))
            return
        transport = self.transport
        if transport.is_closing():  # the client went away: stop generating for it
            self._close()
            return
        if content:
            self.stamps.chunk_write_ns.append(time.perf_counter_ns())
        transport.write(b"%x\r\n%b\r\n" % (len(event), event))

    def _release(self) -> None:
        left_ns = self._stall_end_ns - time.perf_counter_ns()
        if left_ns > 0:  # loop timers are coarse (ms) and measured from the loop's cached time: wait out the rest
            self._loop.call_later(left_ns / 1e9, self._release)
            return
        held, self._held = self._held, None
        for event, content in held or ():
            self._write(event, content)
        if self.finished:
            _resolve(self.done)

    def _reset(self) -> None:
        self.transport.abort()
        self._close()

    def _close(self) -> None:
        self.closed = True
        self.stamps.completion_tokens = self.tokens
        _resolve(self.done)

    def finish(self, reason: str) -> None:
        if self._pending:
            self._emit_content()
        if self.closed:
            return
        self.stamps.completion_tokens = self.tokens
        self._write(self.frames.tail(reason, self.usage_prompt_tokens, self.tokens), False)
        self.finished = True
        if self._held is None:
            _resolve(self.done)

    def abort(self) -> None:
        if not self.closed:
            self.transport.abort()
            self._close()


class CollectSink:
    """A stream=false request: counts tokens until the end; the handler then writes one JSON body."""

    __slots__ = ("closed", "done", "reason", "stamps", "tokens", "transport")

    def __init__(self, transport: asyncio.Transport, stamps: RequestStamps) -> None:
        self.transport = transport
        self.stamps = stamps
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.tokens = 0
        self.reason = "length"
        self.closed = False

    def token(self) -> bool:
        self.tokens += 1
        if self.transport.is_closing():  # the client went away: stop generating for it
            self.abort()
        return not self.closed

    def finish(self, reason: str) -> None:
        self.reason = reason
        self.stamps.completion_tokens = self.tokens
        _resolve(self.done)

    def abort(self) -> None:
        self.closed = True
        _resolve(self.done)

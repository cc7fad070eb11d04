"""Kernel receive stamps (engine/endpoint/stamped_socket.py) over real loopback sockets.

A chunk the worker reads late must carry the time it arrived, not the time the loop got round to it; a stamp
is never later than its read nor earlier than what came before; a prompt larger than the socket takes goes out
whole. Where this kernel gives no receive stamps the tests about their value skip (the reads are then stamped as
asyncio stamps them); the rest force the stamped transport, which works either way.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Callable
from time import perf_counter_ns

import pytest
import uvloop
from engine_helpers import config
from test_lean_client import IO_S, STREAM_HEAD, Server, chunk, read_request, sse

from engine.endpoint import stamped_socket
from engine.endpoint.http_choice import describe
from engine.endpoint.lean_client import LeanPool, LeanStreamClient
from engine.endpoint.stamped_socket import StampedTransport, kernel_gives_stamps, receive_stamps
from engine.records import ErrorClass, RequestRecord, RequestSpec

NO_STAMPS = "this kernel returns no TCP receive stamps (SO_TIMESTAMPNS): reads are stamped when read"
BLOCK_S = 0.3  # how long the test holds the client's event loop after the late chunk has arrived
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def spec(prompt_chars: int = 8, max_tokens: int = 2) -> RequestSpec:
    return RequestSpec({"messages": [{"role": "user", "content": "x" * prompt_chars}]}, max_tokens, prompt_chars // 4)


def read_blocking(conn: socket.socket) -> None:
    """One request from a blocking socket: the head, then Content-Length bytes of body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536) or b"!"  # an early close ends the loop at the length check below
        assert not data.endswith(b"!"), "the client closed before sending its request"
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(int(v) for k, _, v in (line.partition(b":") for line in head.split(b"\r\n"))
                  if k.lower() == b"content-length")  # fmt: skip
    while len(body) < length:
        more = conn.recv(65536)
        assert more, "the client closed in the middle of its request"
        body += more


class LateChunkServer:
    """In a thread (so it writes while the client's loop is held): answers one request with the headers and the
    first token, then, once told, stamps and writes the second token and the end of the stream."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(IO_S)
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/v1"
        self.go, self.written = threading.Event(), threading.Event()
        self.t_write_ns = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        events = sse(2).split(b"\n\n")
        with self._listener, self._listener.accept()[0] as conn:
            conn.settimeout(IO_S)
            read_blocking(conn)
            conn.sendall(STREAM_HEAD + chunk(events[0] + b"\n\n"))
            if not self.go.wait(IO_S):
                return
            self.t_write_ns = perf_counter_ns()
            conn.sendall(chunk(b"\n\n".join(events[1:])) + b"0\r\n\r\n")
            self.written.set()
            conn.recv(1)  # until the client closes (or the timeout)

    def join(self) -> None:
        self._thread.join(IO_S)


async def read_late(server: LateChunkServer, stamps: stamped_socket.StampSource) -> tuple[RequestRecord, int]:
    """Stream one request; once its first token is in, hold the loop (a plain time.sleep in a callback) while the
    second token arrives. Returns the record and the time the hold began (everything after it was read later)."""
    pool = LeanPool(asyncio.get_running_loop(), stamps=stamps)
    client = LeanStreamClient(config(server.url, max_tokens=2), pool)
    task = asyncio.ensure_future(client.run(1, spec()))
    for _ in range(int(IO_S / 0.005)):
        if client.chunks >= 1 or task.done():
            break
        await asyncio.sleep(0.005)
    assert client.chunks == 1, "the first token never came"
    server.go.set()
    assert server.written.wait(IO_S), "the server never wrote the second token"  # the loop is held from here on
    t_hold_ns = perf_counter_ns()
    time.sleep(BLOCK_S)
    try:
        return await asyncio.wait_for(task, IO_S), t_hold_ns
    finally:
        pool.close()


@pytest.mark.parametrize("loop", sorted(LOOPS))
@pytest.mark.parametrize("stamps", ["kernel", "read"])
def test_a_chunk_read_late_is_stamped_when_it_arrived(loop, stamps):
    if stamps == "kernel" and not kernel_gives_stamps():
        pytest.skip(NO_STAMPS)
    server = LateChunkServer()
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        rec, t_hold_ns = runner.run(read_late(server, stamps))
    server.join()
    assert rec.ok and rec.chunks == 2, rec.error_detail
    late = rec.token_times_ns[1]
    if stamps == "kernel":
        # it arrived between the server's write stamp and the hold (the server said "written" before it)
        assert server.t_write_ns <= late < t_hold_ns + BLOCK_S / 2 * 1e9, (late - server.t_write_ns) / 1e6
    else:  # the contrast: the loop's own transport stamps it when the loop is free again
        assert late >= t_hold_ns + BLOCK_S * 1e9


async def run_watching(pool: LeanPool, url: str, max_tokens: int) -> tuple[RequestRecord, object]:
    """Run one request; return its record and its connection's transport (taken while the request is open)."""
    task = asyncio.ensure_future(LeanStreamClient(config(url, max_tokens=max_tokens), pool).run(1, spec()))
    for _ in range(int(IO_S / 0.002)):
        if pool._open or task.done():
            break
        await asyncio.sleep(0.002)
    transport = next(iter(pool._open)).transport if pool._open else None
    try:
        return await asyncio.wait_for(task, IO_S), transport
    finally:
        pool.close()


def three_tokens_apart(writes: list[int]):
    """A handler: three tokens, each in its own write 20 ms apart (its write stamp into ``writes``), then the end."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        events = sse(3).split(b"\n\n")
        writer.write(STREAM_HEAD)
        for event in events[:3]:
            writes.append(perf_counter_ns())
            writer.write(chunk(event + b"\n\n"))
            await writer.drain()
            await asyncio.sleep(0.02)
        writer.write(chunk(b"\n\n".join(events[3:])) + b"0\r\n\r\n")
        await writer.drain()

    return handle


@pytest.mark.parametrize("step_s", [-10.0, 10.0])
async def test_a_realtime_clock_step_cannot_put_stamps_in_the_future_or_before_the_request(monkeypatch, step_s):
    """The realtime clock steps by ``step_s`` between the kernel's stamp and the read (as NTP may step it): the
    stamps would land 10 s after the read or 10 s before the request; the clamp keeps them in between."""
    if not kernel_gives_stamps():
        pytest.skip(NO_STAMPS)
    monkeypatch.setattr(stamped_socket, "time_ns", lambda: time.time_ns() + round(step_s * 1e9))
    writes: list[int] = []
    async with Server(three_tokens_apart(writes)) as server:
        rec, transport = await run_watching(LeanPool(asyncio.get_running_loop(), stamps="kernel"), server.url, 3)
    assert rec.ok and rec.chunks == 3, rec.error_detail
    assert isinstance(transport, StampedTransport) and transport.kernel_reads >= 1
    stamps = [rec.t_headers_ns, *rec.token_times_ns]
    assert rec.t_start_ns <= stamps[0] and stamps == sorted(stamps) and stamps[-1] <= rec.t_end_ns
    if step_s > 0:  # every read looked 10 s old: each keeps the stamp before it, the request's write at first
        assert len(set(stamps)) == 1
    else:  # every read looked 10 s ahead: stamped when read, after each token's write
        assert all(w <= t for w, t in zip(writes, rec.token_times_ns, strict=True))


class SlowReader:
    """A loopback server with a small receive buffer that does not read the request until ``release`` is set:
    a big prompt cannot go out in one ``send``. ``hang_up`` closes instead of reading, after a first recv."""

    def __init__(self, hang_up: bool = False) -> None:
        self.release = asyncio.Event()
        self.hang_up = hang_up
        self.body_length = -1
        self.prompt_chars = -1

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.wait_for(self.release.wait(), IO_S)
        if self.hang_up:
            await reader.read(1000)
            writer.transport.abort()  # a reset with most of the prompt unread
            return
        request = await read_request(reader)
        assert request is not None
        body = request.split(b"\r\n\r\n", 1)[1]
        self.body_length = len(body)
        self.prompt_chars = len(json.loads(body)["messages"][0]["content"])
        writer.write(STREAM_HEAD + chunk(sse(2)) + b"0\r\n\r\n")
        await writer.drain()

    async def serve(self) -> asyncio.Server:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # accepted connections inherit it
        sock.bind(("127.0.0.1", 0))
        return await asyncio.start_server(self.handle, sock=sock)


async def send_big_prompt(slow: SlowReader, prompt_chars: int) -> tuple[RequestRecord, int]:
    """One request with a prompt of ``prompt_chars`` through the stamped transport; returns the record and the
    most bytes the transport ever held back."""
    server = await slow.serve()
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
    pool = LeanPool(asyncio.get_running_loop(), stamps="kernel")  # the stamped transport, whatever this kernel does
    task = asyncio.ensure_future(LeanStreamClient(config(url, max_tokens=2), pool).run(1, spec(prompt_chars)))
    held = 0
    for _ in range(int(IO_S / 0.005)):
        held = max([held, *(c.transport.get_write_buffer_size() for c in pool._open
                            if isinstance(c.transport, StampedTransport))])  # fmt: skip
        if held or task.done():
            break
        await asyncio.sleep(0.005)
    slow.release.set()
    try:
        return await asyncio.wait_for(task, IO_S), held
    finally:
        pool.close()
        server.close()


async def test_a_prompt_bigger_than_the_socket_takes_goes_out_whole():
    slow = SlowReader()
    rec, held = await send_big_prompt(slow, 8 << 20)
    assert held > 0, "the whole prompt went out in one send: this test did not test a partial write"
    assert rec.ok and rec.chunks == 2, rec.error_detail
    assert slow.prompt_chars == 8 << 20 and slow.body_length > slow.prompt_chars


async def test_a_server_that_hangs_up_in_the_middle_of_a_big_prompt_gives_a_record_not_a_hang():
    rec, held = await send_big_prompt(SlowReader(hang_up=True), 8 << 20)
    assert held > 0
    assert rec.error is ErrorClass.STREAM_BROKEN and "before responding" in rec.error_detail, rec.error_detail


async def test_read_time_stamps_when_asked_and_the_start_line_says_which(monkeypatch):
    source = receive_stamps()
    assert source == ("kernel" if kernel_gives_stamps() else "read")
    assert ("kernel receive stamps" if source == "kernel" else "read-time stamps") in describe("lean")
    monkeypatch.setenv(stamped_socket.ENV, "read")
    assert receive_stamps() == "read" and "read-time stamps" in describe("auto")
    async with Server(three_tokens_apart([])) as server:
        pool = LeanPool(asyncio.get_running_loop())
        rec, transport = await run_watching(pool, server.url, 3)
    assert rec.ok, rec.error_detail
    assert pool.stamps == "read" and transport is not None and not isinstance(transport, StampedTransport)

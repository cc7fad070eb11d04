"""The lean client's own behaviour over real loopback sockets: keep-alive, fallbacks, hostile HTTP, TLS, cancel.

Each small server here is a real asyncio TCP server on 127.0.0.1 (port 0) that misbehaves in one way; every
read has a deadline, so a hang fails the test instead of the suite. Where both clients must agree, the test
runs with both (``kind``); the lean client runs twice, once reading plain TCP through its stamped transport
(kernel receive stamps, engine/endpoint/stamped_socket.py) and once through the event loop's own transport
(``WATTLOAD_RECEIVE_STAMPS=read``), so both keep the same behaviour (``lean_reads``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import random
import shutil
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiohttp import web
from engine_helpers import SIM_MODEL, CollectingSink, config, run_to_end

from engine.config import RunConfig
from engine.endpoint import stamped_socket
from engine.endpoint.http_choice import AutoStreamClient, describe, open_stream_client
from engine.endpoint.lean_client import LeanPool, LeanStreamClient
from engine.load.controller import Controller
from engine.records import ErrorClass, EventKind, RequestRecord
from engine.sim.model import SimConfig
from engine.sim.server import create_app
from engine.workload.synthetic import SyntheticFactory

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
IO_S = 5.0  # every read in these servers gives up after this long


def chunk(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def sse(n: int, text: str = " tok") -> bytes:
    """A healthy OpenAI chat stream of ``n`` content chunks, usage and [DONE], as SSE bytes."""
    events = [{"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}] * n
    events.append({"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]})
    events.append({"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": n}})
    body = b"".join(b"data: " + json.dumps(e, separators=(",", ":")).encode() + b"\n\n" for e in events)
    return body + b"data: [DONE]\n\n"


STREAM_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


async def read_request(reader: asyncio.StreamReader) -> bytes | None:
    """One request's head and body (Content-Length), or None when the client closed."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), IO_S)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.lower().split(b"\r\n")
    length = next((int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length")), 0)
    return head + await asyncio.wait_for(reader.readexactly(length), IO_S)


class Server:
    """A loopback TCP server running ``handler`` per connection; counts the connections it accepted."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.connections = 0
        self.url = ""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self._handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), IO_S)


async def run_one(cfg: RunConfig, kind: str, seq: int = 1, notices: list[str] | None = None) -> RequestRecord:
    spec = SyntheticFactory(cfg.api, cfg.input_tokens, cfg.max_tokens).make(seq, random.Random(seq))
    async with open_stream_client(cfg, kind, 0, notices.append if notices is not None else None) as client:
        return await asyncio.wait_for(client.run(seq, spec), 20)


@pytest.fixture(params=["kernel", "read"])
def lean_reads(request, monkeypatch) -> str:
    """Which transport the lean client reads plain TCP through: its stamped one, or the loop's (forced)."""
    if request.param == "read":
        monkeypatch.setenv(stamped_socket.ENV, "read")
    return request.param


@pytest.fixture(params=["aiohttp", "lean", "lean-read"])
def kind(request, monkeypatch):
    if request.param == "lean-read":
        monkeypatch.setenv(stamped_socket.ENV, "read")
    return request.param.removesuffix("-read")


async def keep_alive_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers every request on the connection with a 3-chunk stream, one HTTP chunk per event."""
    while await read_request(reader) is not None:
        writer.write(STREAM_HEAD + b"".join(chunk(e + b"\n\n") for e in sse(3).split(b"\n\n")[:-1]) + b"0\r\n\r\n")
        await writer.drain()


async def test_lean_reuses_one_keep_alive_connection(lean_reads):
    async with Server(keep_alive_stream) as server:
        cfg = config(server.url, max_tokens=3)
        pool = LeanPool(asyncio.get_running_loop())
        client = LeanStreamClient(cfg, pool)
        spec = SyntheticFactory(cfg.api, 8, 3).make(1, random.Random(1))
        records = [await asyncio.wait_for(client.run(i, spec), 10) for i in range(4)]
        pool.close()
    assert all(r.ok and r.chunks == 3 and r.output_tokens == 3 for r in records), [r.error_detail for r in records]
    assert server.connections == 1
    assert client.chunks == 12


async def test_a_keep_alive_connection_the_server_dropped_is_replaced_once(lean_reads):
    """The server answers one request per connection and drops the connection when the next request comes (what
    an idle keep-alive timeout looks like from the client): nothing was answered, so lean sends it again."""

    async def one_per_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(STREAM_HEAD + chunk(sse(2)) + b"0\r\n\r\n")
        await writer.drain()
        await read_request(reader)  # then close without a word

    async with Server(one_per_connection) as server:
        cfg = config(server.url, max_tokens=2)
        pool = LeanPool(asyncio.get_running_loop())
        client = LeanStreamClient(cfg, pool)
        spec = SyntheticFactory(cfg.api, 8, 2).make(1, random.Random(1))
        records = [await asyncio.wait_for(client.run(i, spec), 10) for i in range(3)]
        pool.close()
    assert all(r.ok for r in records), [r.error_detail for r in records]
    assert server.connections >= 3


async def test_bytes_split_anywhere_give_the_same_counts_and_one_stamp_per_arrival(kind):
    """Every byte in its own write (HTTP chunk sizes, CRLFs and SSE lines cut anywhere)."""
    body = STREAM_HEAD + chunk(sse(5)[:100]) + chunk(sse(5)[100:]) + b"0\r\n\r\n"

    async def dribble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        for i in range(0, len(body), 7):
            writer.write(body[i : i + 7])
            await writer.drain()
            await asyncio.sleep(0)

    async with Server(dribble) as server:
        rec = await run_one(config(server.url, max_tokens=5), kind)
    assert rec.ok, rec.error_detail
    assert rec.chunks == 5 and rec.output_tokens == 5 and rec.input_tokens == 3
    assert list(rec.token_times_ns) == sorted(rec.token_times_ns) and rec.t_headers_ns <= rec.token_times_ns[0]


async def test_a_body_ended_by_closing_the_connection_is_complete(kind):
    async def http10(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n" + sse(4))
        await writer.drain()

    async with Server(http10) as server:
        rec = await run_one(config(server.url, max_tokens=4), kind)
    assert rec.ok and rec.chunks == 4, rec.error_detail


@pytest.mark.parametrize(
    ("reply", "cls", "words"),
    [
        (b"HTTP/1.1 2OO OK\r\n\r\n", ErrorClass.MALFORMED, "invalid HTTP response"),
        (STREAM_HEAD + b"zz\r\ndata: {}\r\n", ErrorClass, ""),  # a chunk size that is not hex: either class is fine
        (STREAM_HEAD + chunk(sse(3)[:150]), ErrorClass.STREAM_BROKEN, ""),  # cut off mid-stream
        (b"", ErrorClass.STREAM_BROKEN, "before responding"),
        (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", ErrorClass.MALFORMED,
         "did not stream"),
        (b'HTTP/1.1 503 Service Unavailable\r\nContent-Length: 35\r\n\r\n{"error":{"message":"overloaded"}} ',
         ErrorClass.HTTP_5XX, "HTTP 503 Service Unavailable: overloaded"),
    ],
)
async def test_hostile_replies_become_classified_records(kind, reply, cls, words):
    async def hostile(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(reply)
        await writer.drain()

    async with Server(hostile) as server:
        rec = await run_one(config(server.url, max_tokens=3), kind)
    assert not rec.ok
    assert rec.error is cls if isinstance(cls, ErrorClass) else rec.error in (ErrorClass.MALFORMED,
                                                                              ErrorClass.STREAM_BROKEN)
    assert words in rec.error_detail and "\n" not in rec.error_detail


async def test_silence_after_the_headers_is_a_read_timeout_and_a_slow_drip_hits_the_request_timeout(kind):
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(STREAM_HEAD + chunk(sse(1).split(b"\n\n")[0] + b"\n\n"))
        await writer.drain()
        await asyncio.sleep(IO_S)

    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(STREAM_HEAD)
        for _ in range(100):
            writer.write(chunk(b": keep-alive\n\n"))
            await writer.drain()
            await asyncio.sleep(0.05)

    async with Server(silent) as server:
        rec = await run_one(config(server.url, read_timeout_s=0.3), kind)
    assert rec.error is ErrorClass.TIMEOUT and "read timeout" in rec.error_detail
    assert rec.chunks == 1 and 0.25e9 < rec.t_end_ns - rec.t_start_ns < 3e9
    async with Server(drip) as server:
        rec = await run_one(config(server.url, read_timeout_s=2.0, request_timeout_s=0.5), kind)
    assert rec.error is ErrorClass.TIMEOUT and "longer than 0.5 s" in rec.error_detail


async def redirecting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """/v1/chat/completions answers 307 to /v2/chat/completions, which streams."""
    while (request := await read_request(reader)) is not None:
        if request.startswith(b"POST /v1/"):
            writer.write(b"HTTP/1.1 307 Temporary Redirect\r\nLocation: /v2/chat/completions\r\n"
                         b"Content-Length: 0\r\n\r\n")
        else:
            writer.write(STREAM_HEAD + chunk(sse(2)) + b"0\r\n\r\n")
        await writer.drain()


async def gzipping(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Compresses the stream although the client asked for identity (some proxies do)."""
    while await read_request(reader) is not None:
        writer.write(STREAM_HEAD.replace(b"\r\n\r\n", b"\r\nContent-Encoding: gzip\r\n\r\n")
                     + chunk(gzip.compress(sse(2))) + b"0\r\n\r\n")
        await writer.drain()


@pytest.mark.parametrize(("handler", "why"), [(redirecting, "redirects (HTTP 307"), (gzipping, "gzip")])
async def test_auto_hands_redirects_and_compressed_streams_to_aiohttp_and_says_so_once(handler, why, lean_reads):
    notices: list[str] = []
    async with Server(handler) as server:
        cfg = config(server.url, max_tokens=2)
        spec = SyntheticFactory(cfg.api, 8, 2).make(1, random.Random(1))
        async with open_stream_client(cfg, "auto", 0, notices.append) as client:
            assert isinstance(client, AutoStreamClient)
            records = await asyncio.wait_for(asyncio.gather(*(client.run(i, spec) for i in range(3))), 20)
            records.append(await asyncio.wait_for(client.run(9, spec), 20))
            assert client.chunks == 8
        lean = await run_one(cfg, "lean")
    assert all(r.ok and r.chunks == 2 for r in records), [r.error_detail for r in records]
    assert len(notices) == 1 and why in notices[0] and "aiohttp" in notices[0]
    assert not lean.ok and why in lean.error_detail and "--http-client auto" in lean.error_detail


async def test_cancelling_a_request_drops_its_connection(lean_reads):
    """Stop's grace period cancels open requests: the connection must close, never go back to the pool."""
    closed = asyncio.Event()

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(STREAM_HEAD)
        with contextlib.suppress(ConnectionError):
            for _ in range(200):
                writer.write(chunk(sse(1).split(b"\n\n")[0] + b"\n\n"))
                await writer.drain()
                await asyncio.sleep(0.02)
        closed.set()

    async with Server(endless) as server:
        cfg = config(server.url)
        pool = LeanPool(asyncio.get_running_loop())
        client = LeanStreamClient(cfg, pool)
        spec = SyntheticFactory(cfg.api, 8, 8).make(1, random.Random(1))
        task = asyncio.ensure_future(client.run(1, spec))
        while client.chunks < 3:
            await asyncio.wait_for(asyncio.sleep(0.01), 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(closed.wait(), IO_S)
        assert not any(pool._idle.values())
        pool.close()


@contextlib.asynccontextmanager
async def tls_sim(tmp_path) -> AsyncIterator[tuple[str, str]]:
    """The simulated server behind TLS with a throwaway self-signed certificate for 127.0.0.1."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    runner = web.AppRunner(create_app(SimConfig(speed=50.0, seed=2)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"https://127.0.0.1:{port}/v1", str(cert)
    finally:
        await runner.cleanup()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
async def test_tls_streams_through_asyncios_ssl_transport_and_checks_the_certificate(kind, tmp_path, monkeypatch):
    async with tls_sim(tmp_path) as (url, cert):
        untrusted = await run_one(config(url, max_tokens=6), kind)
        assert untrusted.error is ErrorClass.CONNECT, (untrusted.error, untrusted.error_detail)
        assert "CERTIFICATE_VERIFY_FAILED" in untrusted.error_detail
        if kind == "aiohttp":
            return  # aiohttp builds its default SSL context once, at import: SSL_CERT_FILE set now is not seen
        monkeypatch.setenv("SSL_CERT_FILE", cert)  # read when the lean pool builds its default context
        rec = await run_one(config(url, max_tokens=6), kind)
    assert rec.ok, rec.error_detail
    assert rec.chunks == 6 and rec.output_tokens == 6 and rec.response_id


def test_the_run_start_line_names_the_client():
    assert describe("lean").startswith("lean HTTP (httptools ")
    assert "aiohttp fallback" in describe("auto") and describe("aiohttp").startswith("aiohttp ")
    assert config("http://127.0.0.1:1/v1").http_client == "auto" and SIM_MODEL


class _Redirector(BaseHTTPRequestHandler):
    """A threaded server for worker processes: /v1/... redirects (307) to /v2/..., which streams."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        if self.path.startswith("/v1/"):
            self.send_response(307)
            self.send_header("Location", self.path.replace("/v1/", "/v2/", 1))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = sse(4)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_run_whose_server_redirects_falls_back_in_the_worker_and_says_so_once():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirector)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        sink = CollectingSink()
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        controller = Controller(config(url, max_tokens=4, concurrency=3, max_requests=9), sinks=[sink])
        run_to_end(controller)
    finally:
        server.shutdown()
        server.server_close()
    assert len(sink.records) == 9 and all(r.ok and r.chunks == 4 for r in sink.records)
    start = next(e for e in sink.events if e.kind is EventKind.START)
    assert "lean HTTP (httptools" in start.message and "aiohttp fallback" in start.message
    warnings = [e.message for e in sink.events if e.kind is EventKind.WARNING and "HTTP client" in e.message]
    assert len(warnings) == 1 and "redirects (HTTP 307" in warnings[0], warnings
    assert controller.notices.get_nowait() == warnings[0] and controller.notices.empty()

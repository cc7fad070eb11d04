"""The lean streaming client: HTTP/1.1 on an ``asyncio.Protocol``, parsed by httptools, SSE fed in the callback.

Why it exists: aiohttp's receive path costs ~40 us per one-chunk read (its response parser, its StreamReader,
waking the request's task, ``readany``), so at 256 streams one event loop stamps the tail of a decode burst
several ms late. Here the bytes go from ``data_received`` straight through httptools (llhttp, the parser uvicorn
uses; headers and chunked decoding in C) into the request's ``StreamParser`` and no task wakes until the stream
has ended. Plain-TCP connections are read by ``engine/endpoint/stamped_socket.py``, so each read carries the time
the kernel received it, not the time the loop got round to it; TLS connections (asyncio's SSL transport) are
stamped in ``data_received``. ``tests/bench/client_capacity.py`` prints both clients side by side.

What it does not do, on purpose: redirects, compressed bodies, credentials in the URL. ``--http-client auto``
(``engine/endpoint/http_choice.py``) hands those to aiohttp and says so; ``--http-client lean`` reports them as errors.
Each worker keeps its own keep-alive pool (``LeanPool``); TLS goes through asyncio's SSL transport.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
from dataclasses import dataclass
from time import perf_counter_ns
from typing import cast
from urllib.parse import urlsplit

import httptools

from engine.config import RunConfig
from engine.endpoint.client import (
    CONNECT_TIMEOUT_S,
    IGNORE_EOS_REJECTED,
    NOT_STREAMING,
    OpenRequest,
    OpenStreams,
    TickFacts,
    completions_url,
    error_message,
    parse_retry_after,
    request_body,
    request_headers,
    usage_disagreement,
)
from engine.endpoint.sse import StreamParser, one_line
from engine.endpoint.stamped_socket import StampedTransport, StampSource, open_stamped, receive_stamps
from engine.records import ErrorClass, RequestRecord, RequestSpec
from engine.redact import redact_text

_ERROR_BODY_BYTES = 4096
_REDIRECTS = frozenset((301, 302, 303, 307, 308))
Failure = tuple[ErrorClass, str]


class NeedsFallback(Exception):
    """A response the lean client does not handle (a redirect, a compressed body): ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Origin:
    """Where requests go: scheme, host and port, and the request line's path."""

    host: str
    port: int
    tls: bool
    path: str
    host_header: str

    @classmethod
    def of(cls, url: str) -> Origin:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        host = parts.hostname
        shown = f"[{host}]" if ":" in host else host
        default = 443 if tls else 80
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(host, port, tls, path, shown if port == default else f"{shown}:{port}")


def url_credentials(url: str) -> str | None:
    """``user:password`` from the URL, or None: the lean client sends them as Basic auth like aiohttp does."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return None
    return f"{parts.username or ''}:{parts.password or ''}"


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection. While a request is open, its response is parsed as the bytes arrive:
    httptools calls back with the status, headers and de-chunked body, and the body goes to the SSE parser with
    the stamp of the read that brought it (``data_received_at``; ``data_received`` stamps at the call)."""

    def __init__(self, pool: LeanPool, origin: Origin) -> None:
        self._pool = pool
        self._origin = origin
        self.transport: asyncio.Transport | StampedTransport | None = None
        self.closed = False
        self.timer: asyncio.TimerHandle | None = None  # the read-timeout watch of the open request
        self._http = httptools.HttpResponseParser(self)
        self._reset(None, None)

    def _reset(self, sse: StreamParser | None, client: LeanStreamClient | None) -> None:
        self._sse = sse
        self._client = client
        self._done: asyncio.Future[None] | None = None
        self.arrival_ns = 0  # the latest data_received
        self.token_ns = 0  # the latest content chunk (or the headers, or the send): progress, not just bytes
        self.received = 0  # bytes of this response so far
        self.t_headers_ns: int | None = None
        self.status: int | None = None
        self.reason = b""
        self.content_type = b""
        self.encoding = b""
        self.location = b""
        self.retry_after = b""
        self.close_delimited = False  # neither Content-Length nor chunked: the body ends when the server closes
        self._has_length = False
        self.streaming = False  # body goes to the SSE parser; else up to 4 KiB are kept for the error detail
        self.error_body = bytearray()
        self.complete = False
        self.keep_alive = False
        self.failure: Failure | None = None
        self.fallback: str | None = None
        self._parts: list[bytes] = []

    # -- one exchange ----------------------------------------------------------------------------------------

    def send(self, request: bytes, sse: StreamParser, client: LeanStreamClient) -> asyncio.Future[None]:
        """Write one request; the future resolves when its response has ended, failed, or been cut off."""
        self._reset(sse, client)
        loop = self._pool.loop
        done = self._done = loop.create_future()
        assert self.transport is not None
        self.arrival_ns = self.token_ns = perf_counter_ns()
        self.transport.write(request)
        return done

    def abort(self) -> None:
        """Drop the connection at once (cancel, timeout, parse error): it can never be reused."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def _finish(self) -> None:
        done = self._done
        if done is not None and not done.done():
            done.set_result(None)

    # -- asyncio.Protocol ------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport | StampedTransport) -> None:
        # uvloop's transports are not asyncio subclasses
        self.transport = transport if isinstance(transport, StampedTransport) else cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # best effort: only latency of the request write depends on it
                pass

    def data_received(self, data: bytes) -> None:
        self.data_received_at(data, perf_counter_ns())

    def data_received_at(self, data: bytes, t: int) -> None:
        self.arrival_ns = t
        if self._done is None or self._done.done():
            self.abort()  # bytes nobody asked for: this connection is not in a known state
            self._pool.forget(self)
            return
        self.received += len(data)
        try:
            self._http.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.failure is None and self.fallback is None:
                self.failure = (ErrorClass.MALFORMED, one_line(f"invalid HTTP response: {exc}"))
            self.abort()
            self._finish()
            return
        parts = self._parts
        if parts:
            body = parts[0] if len(parts) == 1 else b"".join(parts)
            parts.clear()
            sse = self._sse
            assert sse is not None and self._client is not None
            n = sse.feed(body, t)
            if n:
                self._client.chunks += n
                self.token_ns = t
            if sse.error is not None:
                self.abort()  # the stream is unusable; the rest of it must not reach the next request
                self._finish()
                return
        if self.complete:
            self._finish()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.forget(self)
        if self._done is None or self._done.done():
            return
        if self.close_delimited and self.t_headers_ns is not None:
            self.complete = True  # the server ends a body without length or chunking by closing
        elif self.failure is None:
            when = "during the stream" if self.t_headers_ns is not None else "before responding"
            self.failure = (ErrorClass.STREAM_BROKEN, f"the server closed the connection {when}")
        self._finish()

    # -- httptools callbacks ---------------------------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.lower()
        if key == b"content-type":
            self.content_type = value
        elif key == b"content-encoding":
            self.encoding = value.strip().lower()
        elif key == b"location":
            self.location = value
        elif key == b"retry-after":
            self.retry_after = value
        elif key == b"content-length" or (key == b"transfer-encoding" and b"chunked" in value.lower()):
            self._has_length = True

    def on_headers_complete(self) -> None:
        self.t_headers_ns = self.token_ns = self.arrival_ns
        status = self.status = self._http.get_status_code()
        self.close_delimited = not self._has_length
        if status in _REDIRECTS:
            target = self.location.decode("latin-1", "replace")
            self.fallback = f"the server redirects (HTTP {status} to {one_line(target, 80)})"
        elif self.encoding not in (b"", b"identity") and status == 200:
            self.fallback = f"the server compresses the stream (Content-Encoding: {self.encoding.decode('latin-1')})"
        elif status == 200 and b"event-stream" not in self.content_type:
            kind = self.content_type.decode("latin-1") or "no Content-Type"
            self.failure = (ErrorClass.MALFORMED, f"{NOT_STREAMING} (HTTP 200 with {one_line(kind, 60)})")
        else:
            self.streaming = status == 200
            return
        self.abort()  # nothing more of this response is wanted
        self._finish()

    def on_body(self, body: bytes) -> None:
        if self.streaming:
            self._parts.append(body)
        elif len(self.error_body) < _ERROR_BODY_BYTES:
            self.error_body += body[: _ERROR_BODY_BYTES - len(self.error_body)]

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = self._http.should_keep_alive()


class LeanPool:
    """A worker's keep-alive connections, per origin; one pool per event loop (connections are not shared).
    ``stamps``: ``kernel`` reads plain-TCP connections through ``StampedTransport``, ``read`` through the loop's
    own transport; by default what ``receive_stamps()`` finds."""

    def __init__(self, loop: asyncio.AbstractEventLoop, stamps: StampSource | None = None) -> None:
        self.loop = loop
        self.stamps = receive_stamps() if stamps is None else stamps
        self._idle: dict[Origin, list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._tls: ssl.SSLContext | None = None

    async def acquire(self, origin: Origin, connect_timeout_s: float) -> tuple[_Connection, bool]:
        """An idle connection to ``origin`` (reused: True) or a new one."""
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn, True
        if origin.tls and self._tls is None:
            self._tls = ssl.create_default_context()  # honours SSL_CERT_FILE / SSL_CERT_DIR like aiohttp does
        tls = self._tls if origin.tls else None
        async with asyncio.timeout(connect_timeout_s):
            if tls is None and self.stamps == "kernel":
                proto = await open_stamped(self.loop, origin.host, origin.port, lambda: _Connection(self, origin))
            else:
                _, proto = await self.loop.create_connection(
                    lambda: _Connection(self, origin),
                    origin.host,
                    origin.port,
                    ssl=tls,
                    server_hostname=origin.host if tls is not None else None,
                )
        self._open.add(proto)
        return proto, False

    def release(self, conn: _Connection) -> None:
        if conn.closed or not conn.keep_alive:
            conn.abort()
            self.forget(conn)
            return
        self._idle.setdefault(conn._origin, []).append(conn)

    def forget(self, conn: _Connection) -> None:
        self._open.discard(conn)

    def close(self) -> None:
        for conn in list(self._open):
            if conn.transport is not None:
                conn.transport.close()
            conn.closed = True
        self._open.clear()
        self._idle.clear()


class LeanStreamClient:
    """Runs streaming requests over this worker's ``LeanPool``; the same interface as ``StreamClient``:
    ``run`` never raises (except cancellation) and ``chunks`` counts content chunks for progress reports.

    With ``fallback`` (auto mode) a response that needs what only aiohttp does raises ``NeedsFallback``, and the
    caller sends that request again through aiohttp; without it, such a response is an error record."""

    def __init__(self, config: RunConfig, pool: LeanPool, worker: int = 0, fallback: bool = False) -> None:
        self._config = config
        self._fallback = fallback
        self._pool = pool
        self._worker = worker
        url = completions_url(config)
        self._origin = Origin.of(url)
        headers = request_headers(config)
        credentials = url_credentials(url)
        if credentials is not None and "Authorization" not in headers:
            headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
        head = f"POST {self._origin.path} HTTP/1.1\r\nHost: {self._origin.host_header}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._head = head.encode("latin-1")
        self._secret = config.api_key.get_secret_value() if config.api_key is not None else ""
        self._keep_times = config.record_token_times
        self._read_ns = round(config.read_timeout_s * 1e9)
        self._connect_s = min(config.read_timeout_s, CONNECT_TIMEOUT_S)
        self.chunks = 0  # content chunks received since the owner last reset it
        self._open = OpenStreams()

    def take_tick(self) -> TickFacts:
        """What arrived on the open streams since the last call (``engine.endpoint.client.OpenStreams``)."""
        return self._open.take()

    def _request(self, spec: RequestSpec) -> bytes:
        data = json.dumps(request_body(self._config, spec), separators=(",", ":")).encode()
        return b"%sContent-Length: %d\r\n\r\n%s" % (self._head, len(data), data)

    async def run(
        self,
        request_id: int,
        spec: RequestSpec,
        t_scheduled_ns: int | None = None,
        *,
        text_out: list[str] | None = None,
        turn: int = 0,
    ) -> RequestRecord:
        """Send one request and stream its answer; never raises (except cancellation, and ``NeedsFallback`` when
        built with ``fallback=True``): failures are records. ``text_out`` and ``turn`` as in ``StreamClient.run``."""
        request = self._request(spec)
        parser = StreamParser(self._keep_times, text_out)
        t_start = perf_counter_ns()
        live = self._open.open(request_id, parser, t_start if t_scheduled_ns is None else t_scheduled_ns)
        try:
            return await self._run(request, parser, live, request_id, spec, t_scheduled_ns, t_start, turn)
        finally:
            self._open.close(live)

    async def _run(self, request: bytes, parser: StreamParser, live: OpenRequest, request_id: int,
                   spec: RequestSpec, t_scheduled_ns: int | None, t_start: int, turn: int) -> RequestRecord:
        conn: _Connection | None = None
        error: Failure | None = None
        try:
            async with asyncio.timeout(self._config.request_timeout_s):
                for attempt in (0, 1):
                    got = await self._connect()
                    if not isinstance(got[0], _Connection):
                        error = got[0]
                        break
                    conn, reused = got[0], got[1]
                    error = await self._exchange(conn, request, parser)
                    # A kept-alive connection the server closed just as we reused it: nothing came back, so no
                    # handler answered it; send it once more on a fresh connection (aiohttp does the same).
                    if not (reused and attempt == 0 and conn.received == 0 and conn.closed and conn.failure):
                        break
        except asyncio.CancelledError:
            if conn is not None:
                conn.abort()
            raise
        except TimeoutError:
            if conn is not None:
                conn.abort()
            error = ErrorClass.TIMEOUT, f"the request took longer than {self._config.request_timeout_s:g} s"
        if conn is not None and conn.fallback is not None:
            if self._fallback:
                raise NeedsFallback(conn.fallback)
            cls = ErrorClass.HTTP_4XX if conn.status in _REDIRECTS else ErrorClass.MALFORMED
            error = cls, f"{conn.fallback}: the lean HTTP client does not follow that; use --http-client auto"
        t_end = perf_counter_ns()
        if conn is not None:
            self._pool.release(conn)
        return self._record(request_id, t_scheduled_ns, t_start, t_end, conn, parser, error, turn, spec.max_tokens)

    async def _connect(self) -> tuple[_Connection, bool] | tuple[Failure, None]:
        origin = self._origin
        try:
            return await self._pool.acquire(origin, self._connect_s)
        except TimeoutError:
            return (ErrorClass.CONNECT, f"connect timed out after {self._connect_s:g} s"), None
        except OSError as exc:
            reason = "connection refused" if isinstance(exc, ConnectionRefusedError) else exc.strerror
            reason = reason or str(exc) or type(exc).__name__
            return (ErrorClass.CONNECT, one_line(f"cannot connect to {origin.host}:{origin.port}: {reason}")), None

    async def _exchange(self, conn: _Connection, request: bytes, parser: StreamParser) -> Failure | None:
        """One request on ``conn``: wait for its end, watching for silence longer than the read timeout."""
        done = conn.send(request, parser, self)
        conn.timer = self._pool.loop.call_later(self._read_ns / 1e9, self._watch, conn, done)
        try:
            await done
        finally:
            conn.timer.cancel()
        if conn.fallback is not None:
            return None
        if conn.failure is not None:
            return conn.failure
        if conn.status != 200:
            return self._http_error(conn)
        before = parser.chunks
        parser.finish(conn.arrival_ns)
        self.chunks += parser.chunks - before
        if parser.error is not None:
            return parser.error
        if not parser.complete:
            detail = f"the stream ended before [DONE] or a finish_reason ({parser.chunks} chunks)"
            return ErrorClass.STREAM_BROKEN, detail
        return None

    def _watch(self, conn: _Connection, done: asyncio.Future[None]) -> None:
        """The read timeout: one timer per request, re-armed from the latest arrival (not one per chunk). It ends
        silence, and also a server that keeps sending bytes that never make a token (keep-alive comments
        forever, a chunk dribbled byte by byte), as the aiohttp path does."""
        if done.done():
            return
        now = perf_counter_ns()
        idle, stalled = now - conn.arrival_ns, now - conn.token_ns
        if idle >= self._read_ns or stalled >= self._read_ns:
            limit = f"{self._read_ns / 1e9:g} s"
            conn.failure = (ErrorClass.TIMEOUT, f"no data for {limit} (read timeout)" if idle >= self._read_ns
                            else f"no token for {limit} although bytes kept arriving (read timeout)")  # fmt: skip
            conn.abort()
            done.set_result(None)
            return
        conn.timer = self._pool.loop.call_later((self._read_ns - stalled) / 1e9, self._watch, conn, done)

    def _http_error(self, conn: _Connection) -> Failure:
        status = conn.status or 0
        if status == 422 and self._config.ignore_eos:
            return ErrorClass.HTTP_4XX, IGNORE_EOS_REJECTED
        cls = ErrorClass.HTTP_429 if status == 429 else ErrorClass.HTTP_5XX if status >= 500 else ErrorClass.HTTP_4XX
        message = error_message(bytes(conn.error_body))
        reason = conn.reason.decode("latin-1", "replace").strip()
        return cls, one_line(f"HTTP {status} {reason}".rstrip() + (f": {message}" if message else ""))

    def _record(
        self,
        request_id: int,
        t_scheduled_ns: int | None,
        t_start: int,
        t_end: int,
        conn: _Connection | None,
        parser: StreamParser,
        error: Failure | None,
        turn: int,
        max_tokens: int,
    ) -> RequestRecord:
        """The same record ``StreamClient.run`` builds (kept in step with engine/endpoint/client.py)."""
        usage_in, usage_out, rejected = parser.prompt_tokens, parser.completion_tokens, parser.usage_rejected
        if usage_out is not None and not rejected:
            rejected = usage_disagreement(usage_out, parser.chunks, max_tokens)
            if rejected:
                usage_out = None  # the prompt count is a separate fact and stays
        cls, detail = error if error is not None else (None, "")
        if detail:  # error path only
            detail = redact_text(detail, (self._secret,))
        return RequestRecord(
            worker=self._worker,
            request_id=request_id,
            t_scheduled_ns=t_start if t_scheduled_ns is None else t_scheduled_ns,
            t_start_ns=t_start,
            t_headers_ns=conn.t_headers_ns if conn is not None else None,
            t_first_token_ns=parser.first_ns,
            t_first_output_ns=parser.first_output_ns,
            reasoning_chunks=parser.reasoning_chunks,
            t_end_ns=t_end,
            input_tokens=usage_in,
            output_tokens=parser.chunks if usage_out is None else usage_out,
            output_estimated=usage_out is None,
            chunks=parser.chunks,
            status=conn.status if conn is not None else None,
            error=cls,
            error_detail=detail,
            response_id=parser.response_id,
            token_times_ns=tuple(parser.times) if parser.times else (),
            turn=turn,
            usage_rejected=rejected,
            retry_after_s=(parse_retry_after(conn.retry_after.decode("latin-1", "replace"))
                           if conn is not None and conn.status == 429 else None),
        )

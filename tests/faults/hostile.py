"""A small hostile OpenAI-compatible server on 127.0.0.1: the first path segment picks the misbehaviour.

``http://127.0.0.1:PORT/<case>/v1`` is a base URL whose ``/models`` and ``/chat/completions`` misbehave as
``<case>`` says (see ``CASES``). It speaks HTTP by hand over asyncio streams, so it can send what no framework
would: broken chunked encoding, lying lengths, headers that never end. It runs on its own thread with its own
event loop; every wait in it is bounded, so a test can never hang on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

MODEL = "hostile-model"
SECRET = "sk-hostile-4b1d9e0c7a2f33"
Handler = Callable[[asyncio.StreamWriter, dict[str, Any]], Awaitable[None]]
HOLD_S = 30.0  # the longest any case keeps a connection silent (tests use read timeouts far below it)


def _chunk(content: str | None = "tok", *, finish: str | None = None, **extra: Any) -> bytes:
    delta = {} if content is None else {"content": content}
    obj = {"id": "cmpl-h", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _usage(prompt: Any, completion: Any) -> bytes:
    obj = {"id": "cmpl-h", "object": "chat.completion.chunk", "created": 1, "model": MODEL, "choices": [],
           "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _raw_usage(text: str) -> bytes:
    return b'data: {"id":"cmpl-h","choices":[],"usage":' + text.encode() + b"}\n\n"


DONE = b"data: [DONE]\n\n"


def stream_body(n: int = 8, usage: bytes | None = None) -> bytes:
    body = b"".join(_chunk(f"t{i} ") for i in range(n)) + _chunk(None, finish="stop")
    return body + (usage if usage is not None else _usage(12, n)) + DONE


async def _head(w: asyncio.StreamWriter, status: int = 200, ctype: str = "text/event-stream",
                length: int | None = None, extra: str = "") -> None:
    reason = {200: "OK", 401: "Unauthorized", 429: "Too Many Requests", 500: "Internal Server Error"}.get(status, "X")
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {ctype}", "Connection: close"]
    lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
    if extra:
        lines.append(extra)
    w.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await w.drain()


async def _chunked(w: asyncio.StreamWriter, data: bytes) -> None:
    if w.is_closing():  # the client gave up: stop writing (asyncio would log every write into a dead socket)
        raise ConnectionResetError
    w.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    await w.drain()


async def _end_chunked(w: asyncio.StreamWriter) -> None:
    w.write(b"0\r\n\r\n")
    await w.drain()


async def _whole(w: asyncio.StreamWriter, body: bytes, status: int = 200, ctype: str = "text/event-stream",
                 extra: str = "") -> None:
    await _head(w, status, ctype, len(body), extra)
    w.write(body)
    await w.drain()


async def _stream(w: asyncio.StreamWriter, body: bytes) -> None:
    await _head(w)
    for event in body.split(b"\n\n")[:-1]:
        await _chunked(w, event + b"\n\n")
    await _end_chunked(w)


def _usage_case(usage: bytes, n: int = 8) -> Handler:
    async def handle(w: asyncio.StreamWriter, req: dict[str, Any]) -> None:
        await _stream(w, stream_body(n, usage))

    return handle


async def _ok(w: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    await _stream(w, stream_body())


async def _hold() -> None:
    await asyncio.sleep(HOLD_S)


async def _chunked_broken(w: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    """Two good chunks, then a chunk-size line that is not hex, and the connection held open."""
    await _head(w)
    await _chunked(w, _chunk("a "))
    await _chunked(w, _chunk("b "))
    w.write(b"zz-not-a-size\r\nmore bytes that are not a chunk\r\n")
    await w.drain()
    await _hold()


async def _chunked_short(w: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    """A chunk that announces more bytes than ever come, then silence with the connection open."""
    await _head(w)
    await _chunked(w, _chunk("a "))
    w.write(b"400\r\n" + _chunk("b "))
    await w.drain()
    await _hold()


async def _chunk_dribble(w: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    """A chunk whose announced bytes arrive a few at a time, forever: bytes keep coming, no token ever does."""
    await _head(w)
    await _chunked(w, _chunk("a "))
    w.write(b"100000\r\n" + _chunk("b ")[:20])
    for _ in range(int(HOLD_S / 0.05)):
        if w.is_closing():
            return
        await asyncio.sleep(0.05)
        w.write(b"\x00garbage")
        await w.drain()


async def _stall_after_headers(w: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    await _head(w)
    await _chunked(w, _chunk("a "))
    await _hold()


async def _stall_before_headers(w: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    await _hold()


async def _keepalive_forever(w: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    """SSE comments every 50 ms and never a token: bytes keep coming, so only the request timeout can end it."""
    await _head(w)
    for _ in range(int(HOLD_S / 0.05)):
        await _chunked(w, b": keep-alive\n\n")
        await asyncio.sleep(0.05)


async def _length_lies(w: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    body = stream_body(3)
    await _head(w, length=len(body) + 5000)
    w.write(body)
    await w.drain()
    await _hold()


async def _huge_line(w: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    """Four MB of one SSE event that never ends (no blank line)."""
    await _head(w)
    await _chunked(w, b'data: {"id":"x","choices":[{"delta":{"content":"')
    block = b"A" * 65536
    for _ in range(64):
        await _chunked(w, block)
    await _end_chunked(w)


async def _json_200(w: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    body = json.dumps({"id": "x", "choices": [{"message": {"content": "hi"}}],
                       "usage": {"prompt_tokens": 3, "completion_tokens": 1}}).encode()
    await _whole(w, body, ctype="application/json")


async def _html_200(w: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    await _whole(w, b"<html><body>Welcome to nginx!</body></html>", ctype="text/html")


async def _no_ctype(w: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    body = stream_body(2)
    w.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    await w.drain()


async def _echo_key(w: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    auth = req["headers"].get("authorization", "")
    body = json.dumps({"error": {"message": f"upstream rejected credentials {auth} (key {SECRET})"}}).encode()
    await _whole(w, body, status=500, ctype="application/json")


async def _echo_bearer(w: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    """An upstream's token, not ours: only its shape says it is a secret."""
    body = json.dumps({"error": {"message": "upstream said: Authorization: Bearer sk-upstream-0a9f8e7d6c5b"}})
    await _whole(w, body.encode(), status=502, ctype="application/json")


async def _huge_error(w: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    body = json.dumps({"error": {"message": "boom " * 200_000}}).encode()
    await _whole(w, body, status=500, ctype="application/json")


async def _rate_limited(w: asyncio.StreamWriter, req: dict[str, Any], retry: str) -> None:
    body = b'{"error":{"message":"slow down"}}'
    await _whole(w, body, status=429, ctype="application/json", extra=f"Retry-After: {retry}")


async def _reset(w: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    await _head(w)
    await _chunked(w, _chunk("a "))
    transport = w.transport
    sock = transport.get_extra_info("socket")
    if sock is not None:
        import socket as _s
        import struct

        sock.setsockopt(_s.SOL_SOCKET, _s.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def _close_before_reply(w: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    w.transport.abort()


async def _bad_status_line(w: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    w.write(b"HTTP/1.1 abc Nope\r\n\r\n")
    await w.drain()


async def _endless_headers(w: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    w.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n")
    for i in range(2000):
        w.write(f"X-Filler-{i}: {'x' * 100}\r\n".encode())
    await w.drain()
    await _hold()


async def _empty_stream(w: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    await _whole(w, b"")


async def _content_not_string(w: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    bad = b'data: {"id":"x","choices":[{"delta":{"content":{"nested":1}}}]}\n\n'
    await _stream(w, _chunk("a ") + bad + DONE)


async def _choices_not_list(w: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    await _stream(w, b'data: {"id":"x","choices":"nope"}\n\n' + DONE)


async def _invalid_utf8(w: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    bad = b'data: {"id":"x","choices":[{"delta":{"content":"\xff\xfe"}}]}\n\n'
    await _stream(w, _chunk("a ") + bad + DONE)


async def _huge_id(w: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    body = b"".join(_chunk("t ") for _ in range(3)).replace(b'"cmpl-h"', json.dumps("i" * 100_000).encode(), 1)
    await _stream(w, body + _chunk(None, finish="stop") + _usage(5, 3) + DONE)


async def _error_in_stream(w: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    err = json.dumps({"error": {"message": f"overloaded; your key {SECRET}", "code": 503}}).encode()
    await _stream(w, _chunk("a ") + b"data: " + err + b"\n\n")


async def _stream_error_bearer(w: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    err = json.dumps({"error": {"message": "proxy: Authorization: Bearer sk-upstream-77aa66bb55cc refused"}})
    await _stream(w, _chunk("a ") + b"data: " + err.encode() + b"\n\n")


async def _data_after_done(w: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    await _stream(w, stream_body(3) + _chunk("late "))


async def _redirect(w: asyncio.StreamWriter, req: dict[str, Any]) -> None:
    w.write(b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:9/elsewhere\r\nContent-Length: 0\r\n\r\n")
    await w.drain()


def _models(ids: Any) -> bytes:
    return json.dumps({"object": "list", "data": ids}).encode()


MODELS: dict[str, bytes] = {
    "many-models": _models([{"id": f"model-{i:05d}-" + "x" * 40} for i in range(5000)]),
    "models-not-list": json.dumps({"object": "list", "data": "none"}).encode(),
    "models-int-ids": _models([{"id": 1}, {"id": 2}]),
    "models-html": b"<html>login</html>",
}

CASES: dict[str, Handler] = {
    "ok": _ok,
    "usage-negative": _usage_case(_usage(-5, -7)),
    "usage-huge": _usage_case(_usage(10**12, 10**12)),
    "usage-over-int64": _usage_case(_usage(12, 2**63 + 5)),
    "usage-float": _usage_case(_usage(12.5, 8.0)),
    "usage-string": _usage_case(_usage("12", "8")),
    "usage-bool": _usage_case(_usage(True, True)),
    "usage-nan": _usage_case(_raw_usage('{"prompt_tokens":NaN,"completion_tokens":Infinity}')),
    "usage-mismatch": _usage_case(_usage(12, 500), n=10),
    "usage-slightly-off": _usage_case(_usage(12, 10), n=8),
    "usage-below-chunks": _usage_case(_usage(12, 2), n=10),
    "usage-prompt-only-bad": _usage_case(_usage(-1, 8)),
    "usage-not-object": _usage_case(_raw_usage("[1,2]")),
    "chunked-broken": _chunked_broken,
    "chunked-short": _chunked_short,
    "chunk-dribble": _chunk_dribble,
    "stall-after-headers": _stall_after_headers,
    "stall-before-headers": _stall_before_headers,
    "keepalive-forever": _keepalive_forever,
    "length-lies": _length_lies,
    "huge-line": _huge_line,
    "json-200": _json_200,
    "html-200": _html_200,
    "no-content-type": _no_ctype,
    "echo-key": _echo_key,
    "huge-error": _huge_error,
    "retry-after": lambda w, r: _rate_limited(w, r, "1"),
    "retry-after-absurd": lambda w, r: _rate_limited(w, r, "99999999999"),
    "retry-after-date": lambda w, r: _rate_limited(w, r, "Wed, 21 Oct 2015 07:28:00 GMT"),
    "retry-after-negative": lambda w, r: _rate_limited(w, r, "-5"),
    "retry-after-nan": lambda w, r: _rate_limited(w, r, "nan"),
    "echo-bearer": _echo_bearer,
    "reset": _reset,
    "close-before-reply": _close_before_reply,
    "bad-status-line": _bad_status_line,
    "endless-headers": _endless_headers,
    "empty-stream": _empty_stream,
    "content-not-string": _content_not_string,
    "choices-not-list": _choices_not_list,
    "invalid-utf8": _invalid_utf8,
    "huge-id": _huge_id,
    "error-in-stream": _error_in_stream,
    "data-after-done": _data_after_done,
    "stream-error-bearer": _stream_error_bearer,
    "redirect": _redirect,
}


class HostileServer:
    """Serve ``CASES`` on 127.0.0.1 (port 0) from a thread; ``url(case)`` is the base URL of one case."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hostile-server", daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self.requests: dict[str, int] = {}

    def url(self, case: str) -> str:
        return f"http://127.0.0.1:{self.port}/{case}/v1"

    def start(self) -> HostileServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the hostile server did not start")
        return self

    def stop(self) -> None:
        def shutdown() -> None:
            for task in list(self._tasks):
                task.cancel()
            if self._server is not None:
                self._server.close()
            self._loop.call_later(0.05, self._loop.stop)

        self._loop.call_soon_threadsafe(shutdown)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        with contextlib.suppress(Exception):
            self._loop.run_until_complete(asyncio.sleep(0))
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            req = await asyncio.wait_for(_read_request(reader), 10)
            if req is None:
                return
            parts = req["path"].split("/")
            case = parts[1] if len(parts) > 1 else ""
            self.requests[case] = self.requests.get(case, 0) + 1
            if req["path"].endswith("/models"):
                body = MODELS.get(case, _models([{"id": MODEL}]))
                ctype = "text/html" if case == "models-html" else "application/json"
                if case == "echo-key":
                    await _echo_key(writer, req)
                elif case == "models-echo-bearer":
                    await _echo_bearer(writer, req)
                elif case == "models-500":  # a broken /models in front of a working completions path
                    await _whole(writer, b'{"error": {"message": "model registry unavailable"}}', status=500,
                                 ctype="application/json")
                else:
                    await _whole(writer, body, ctype=ctype)
            else:
                await CASES.get(case, _ok)(writer, req)
        except (asyncio.CancelledError, ConnectionError, TimeoutError):
            pass
        finally:
            self._tasks.discard(task)
            with contextlib.suppress(Exception):
                writer.close()


async def _read_request(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length", "0") or 0)
    body = await reader.readexactly(length) if length else b""
    return {"method": method, "path": path, "headers": headers, "body": body}


@contextlib.contextmanager
def hostile_server() -> Iterator[HostileServer]:
    server = HostileServer().start()
    try:
        yield server
    finally:
        server.stop()

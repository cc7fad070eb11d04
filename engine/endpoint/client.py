"""One streaming request: HTTP with aiohttp, SSE parsing, perf_counter_ns stamps, usage, error class.

aiohttp carries the hot path because it streams 4-5x more SSE chunks per core than httpx at 32 streams and 10x
more at 256 (tests/bench/client_capacity.py prints both); httpx serves only the
control plane (engine/endpoint/probe.py).
Stamps: ``t_start`` just before the request is handed to the connection pool; every later stamp is the
``perf_counter_ns()`` taken in the connection's ``data_received``, the moment the bytes reach the process, before
any task runs. A server that writes one token to 256 streams at once makes the event loop handle 256 arrivals in a
row; stamping on arrival rather than when each stream's task gets its turn keeps the last of them from being
~10 ms late. Each read of the body is stamped with the arrival of its newest bytes (exact when the task keeps up
with its connection, never later than the read), and every SSE event completed by that read shares the stamp
(``engine/endpoint/sse.py``). Without the hook (an aiohttp that builds its protocol differently) reads are stamped
instead.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import functools
import json
from dataclasses import dataclass
from time import perf_counter_ns
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler

from engine.config import RunConfig
from engine.endpoint.sse import StreamParser, one_line
from engine.records import ErrorClass, RequestRecord, RequestSpec
from engine.redact import redact_text

CONNECT_TIMEOUT_S = 10.0
USAGE_SLACK_TOKENS = 3  # usage may differ from the chunk count by this much before it is called a disagreement
MAX_RETRY_AFTER_S = 60.0
_ERROR_BODY_BYTES = 4096
NOT_STREAMING = "the server did not stream"  # a 200 whose body is not an event stream (detail prefix)
IGNORE_EOS_REJECTED = "the server rejected ignore_eos/min_tokens (HTTP 422); run without --ignore-eos"


_PATHS = {"chat": "/chat/completions", "completions": "/completions", "responses": "/responses"}


def completions_url(config: RunConfig) -> str:
    return config.base_url + _PATHS[config.api]


def request_headers(config: RunConfig) -> dict[str, str]:
    """Headers for every request. Identity encoding: a compressing proxy would buffer chunks and skew timing."""
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream", "Accept-Encoding": "identity"}
    if config.api_key is not None and config.api_key.get_secret_value():
        headers["Authorization"] = f"Bearer {config.api_key.get_secret_value()}"
    return headers


def request_body(config: RunConfig, spec: RequestSpec) -> dict[str, Any]:
    """The JSON body: the spec's fields plus streaming with usage, max_tokens, and ignore_eos when asked."""
    body: dict[str, Any] = {"model": config.model, **spec.fields}
    if config.api == "responses":
        return responses_body(config, body, spec.max_tokens)
    body["max_tokens"] = spec.max_tokens
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    if config.ignore_eos:
        body["ignore_eos"] = True
        body["min_tokens"] = spec.max_tokens
    return body


def responses_body(config: RunConfig, body: dict[str, Any], max_tokens: int) -> dict[str, Any]:
    """The Responses API shape of any spec: ``messages`` or ``prompt`` become ``input``, the length
    ``max_output_tokens``; usage always comes in ``response.completed``, so no stream_options."""
    messages = body.pop("messages", None)
    prompt = body.pop("prompt", None)
    body["input"] = messages if messages is not None else prompt
    body["max_output_tokens"] = max_tokens
    body["stream"] = True
    if config.ignore_eos:
        body["ignore_eos"] = True
        body["min_tokens"] = max_tokens
    return body


class ArrivalStampingHandler(ResponseHandler):
    """aiohttp's connection protocol, plus the perf_counter_ns at which its latest bytes arrived."""

    arrival_ns = 0

    def data_received(self, data: bytes) -> None:
        if data:  # aiohttp also calls this with b"" to resume parsing after a read: not an arrival
            self.arrival_ns = perf_counter_ns()
        super().data_received(data)


def open_session(config: RunConfig, decompress: bool = False) -> aiohttp.ClientSession:
    """One pooled session per worker: no connection limit (the schedule decides how many requests are open),
    connections that stamp their arrivals (when this aiohttp builds protocols the way we expect). ``decompress``:
    for the fallback of ``--http-client auto`` when a server compresses its stream anyway."""
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
    factory = getattr(connector, "_factory", None)
    if isinstance(factory, functools.partial) and factory.func is ResponseHandler:
        # aiohttp's private protocol factory: the one place to stamp chunk arrivals (see ArrivalStampingHandler).
        setattr(connector, "_factory",  # noqa: B010
                functools.partial(ArrivalStampingHandler, *factory.args, **factory.keywords))
    return aiohttp.ClientSession(connector=connector, auto_decompress=decompress, trust_env=False)


class ArrivalStamp:
    """The arrival of a body that was complete before the client looked: every read of it shares this stamp."""

    __slots__ = ("arrival_ns",)

    def __init__(self, arrival_ns: int) -> None:
        self.arrival_ns = arrival_ns


def arrival_clock(resp: aiohttp.ClientResponse) -> ArrivalStampingHandler | ArrivalStamp | None:
    """Where this response's arrival stamps are read, or None when this aiohttp builds protocols differently.

    When the whole body came with the headers (a 1-token answer, every calibration probe), aiohttp has already
    handed the connection back to the pool and ``resp.connection`` is None, but the response keeps its protocol.
    Its latest stamp is then this body's arrival, frozen into an ``ArrivalStamp`` at once: the pooled connection
    may carry another request next, whose bytes must not restamp this one.
    """
    connection = resp.connection
    if connection is not None:
        protocol = connection.protocol
        return protocol if isinstance(protocol, ArrivalStampingHandler) else None
    protocol = getattr(resp, "_protocol", None)  # set by ClientResponse.start, kept after the release
    return ArrivalStamp(protocol.arrival_ns) if isinstance(protocol, ArrivalStampingHandler) else None


class OpenRequest:
    """A request in flight, as the worker's progress report sees it: what of it was handed over already."""

    __slots__ = ("gaps_sent", "output_shipped", "parser", "request_id", "shipped", "t_scheduled_ns")

    def __init__(self, request_id: int, parser: StreamParser, t_scheduled_ns: int) -> None:
        self.request_id = request_id
        self.parser = parser
        self.t_scheduled_ns = t_scheduled_ns
        self.shipped = False  # its first token was handed over
        self.output_shipped = False  # its first answer token (after reasoning) was handed over
        self.gaps_sent = 1  # chunk stamps whose gap to the previous one was handed over (the first has none)


FirstToken = tuple[int, int, int]  # (request id, stamp, scheduled stamp)
# Gaps of ended streams held for the next tick: a worker ticks every ~100 ms (far fewer gaps than this at any
# token rate); a client nobody takes ticks from (the calibration probes) must not grow without bound.
MAX_HELD_GAPS = 1 << 20


@dataclass(frozen=True, slots=True)
class TickFacts:
    """What the open streams of one client did since the previous progress tick (``OpenStreams.take``).

    ``firsts``/``outputs``: first tokens and first answer tokens that arrived, as (request id, stamp, scheduled);
    ``gaps``: every inter-chunk gap (ns) that arrived, of open and of just-ended streams; ``waiting`` and
    ``oldest``: requests still without a first token, and the scheduled stamp of the oldest (None when none)."""

    firsts: tuple[FirstToken, ...] = ()
    outputs: tuple[FirstToken, ...] = ()
    gaps: tuple[int, ...] = ()
    waiting: int = 0
    oldest: int | None = None

    def merged(self, other: TickFacts) -> TickFacts:
        oldest = [t for t in (self.oldest, other.oldest) if t is not None]
        return TickFacts(self.firsts + other.firsts, self.outputs + other.outputs, self.gaps + other.gaps,
                         self.waiting + other.waiting, min(oldest) if oldest else None)


class OpenStreams:
    """A client's requests in flight, so every progress tick can hand over what arrived since the previous one:
    figures enter the live window when their event happened, not when a (maybe minute-long) request ends.

    Not keyed by request id: probes may reuse one id concurrently. ``take`` is O(open requests + new chunks)."""

    __slots__ = ("_ended_gaps", "_open")

    def __init__(self) -> None:
        self._open: set[OpenRequest] = set()
        self._ended_gaps: list[int] = []

    def open(self, request_id: int, parser: StreamParser, t_scheduled_ns: int) -> OpenRequest:
        live = OpenRequest(request_id, parser, t_scheduled_ns)
        self._open.add(live)
        return live

    def close(self, live: OpenRequest) -> None:
        """The request ended: its gaps not yet handed over go with the next tick. Its first tokens do not (its
        record carries them; the aggregator counts either)."""
        self._open.discard(live)
        if len(self._ended_gaps) < MAX_HELD_GAPS:
            _new_gaps(live, self._ended_gaps)

    def take(self) -> TickFacts:
        firsts: list[FirstToken] = []
        outputs: list[FirstToken] = []
        gaps, self._ended_gaps = self._ended_gaps, []
        waiting = 0
        oldest: int | None = None
        for live in self._open:
            parser = live.parser
            first = parser.first_ns
            if first is None:
                waiting += 1
                if oldest is None or live.t_scheduled_ns < oldest:
                    oldest = live.t_scheduled_ns
                continue
            if not live.shipped:
                live.shipped = True
                firsts.append((live.request_id, first, live.t_scheduled_ns))
            if not live.output_shipped and parser.first_output_ns is not None:
                live.output_shipped = True
                outputs.append((live.request_id, parser.first_output_ns, live.t_scheduled_ns))
            _new_gaps(live, gaps)
        if not (firsts or outputs or gaps or waiting):
            return _NOTHING
        return TickFacts(tuple(firsts), tuple(outputs), tuple(gaps), waiting, oldest)


_NOTHING = TickFacts()


def _new_gaps(live: OpenRequest, out: list[int]) -> None:
    """Append the gaps between the chunk stamps of ``live`` not handed over yet (clamped at 0)."""
    times = live.parser.times
    if times is None:
        return
    n = len(times)
    sent = live.gaps_sent
    if n > sent:
        out.extend(max(0, times[i] - times[i - 1]) for i in range(sent, n))
        live.gaps_sent = n


class StreamClient:
    """Runs streaming requests over a shared session; ``chunks`` counts content chunks for progress reports, and
    ``take_tick`` hands over the first tokens and chunk gaps that arrived since it was last called."""

    def __init__(self, config: RunConfig, session: aiohttp.ClientSession, worker: int = 0) -> None:
        self._config = config
        self._session = session
        self._worker = worker
        self._url = completions_url(config)
        self._headers = request_headers(config)
        self._secret = config.api_key.get_secret_value() if config.api_key is not None else ""
        self._keep_times = config.record_token_times
        self._timeout = aiohttp.ClientTimeout(
            total=config.request_timeout_s,
            sock_read=config.read_timeout_s,
            sock_connect=min(config.read_timeout_s, CONNECT_TIMEOUT_S),
        )
        self._progress_ns = round(config.read_timeout_s * 1e9)
        self.chunks = 0  # content chunks received since the owner last reset it
        self.read_stamped = 0  # responses stamped at read time because no arrival stamp could be found
        self._open = OpenStreams()

    def take_tick(self) -> TickFacts:
        """What arrived on the open streams since the previous call (``OpenStreams.take``)."""
        return self._open.take()

    async def run(
        self,
        request_id: int,
        spec: RequestSpec,
        t_scheduled_ns: int | None = None,
        *,
        text_out: list[str] | None = None,
        turn: int = 0,
    ) -> RequestRecord:
        """Send one request and stream its answer; never raises (except cancellation): failures are records.
        ``text_out`` collects the answer's text (multi-turn sessions send it back); ``turn`` labels the record."""
        data = json.dumps(request_body(self._config, spec), separators=(",", ":")).encode()
        parser = StreamParser(self._keep_times, text_out)
        t_headers: int | None = None
        status: int | None = None
        retry_after: float | None = None
        error: tuple[ErrorClass, str] | None = None
        t_start = perf_counter_ns()
        t_scheduled = t_start if t_scheduled_ns is None else t_scheduled_ns
        live = self._open.open(request_id, parser, t_scheduled)
        try:
            async with self._session.post(self._url, data=data, headers=self._headers, timeout=self._timeout) as resp:
                clock = arrival_clock(resp)
                if clock is None:
                    self.read_stamped += 1
                t_headers = clock.arrival_ns if clock is not None else perf_counter_ns()
                status = resp.status
                if status != 200:
                    error = await self._http_error(resp)
                    if status == 429:
                        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                elif "event-stream" not in resp.headers.get("Content-Type", ""):
                    kind = resp.headers.get("Content-Type", "no Content-Type")
                    error = (ErrorClass.MALFORMED, f"{NOT_STREAMING} (HTTP 200 with {one_line(kind, 60)})")
                else:
                    error = await self._read_stream(resp, parser, clock)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every failure becomes a classified record, never an exception
            error = classify_exception(exc, t_headers is not None, self._timeout)
        finally:
            self._open.close(live)
        t_end = perf_counter_ns()
        usage_in, usage_out, rejected = parser.prompt_tokens, parser.completion_tokens, parser.usage_rejected
        if usage_out is not None and not rejected:
            rejected = usage_disagreement(usage_out, parser.chunks, spec.max_tokens)
            if rejected:
                usage_out = None  # the prompt count is a separate fact and stays
        cls, detail = error if error is not None else (None, "")
        if detail:  # error path only: the hot path never pays for it
            detail = redact_text(detail, (self._secret,))
        return RequestRecord(
            worker=self._worker,
            request_id=request_id,
            t_scheduled_ns=t_scheduled,
            t_start_ns=t_start,
            t_headers_ns=t_headers,
            t_first_token_ns=parser.first_ns,
            t_first_output_ns=parser.first_output_ns,
            reasoning_chunks=parser.reasoning_chunks,
            t_end_ns=t_end,
            input_tokens=usage_in,
            output_tokens=parser.chunks if usage_out is None else usage_out,
            output_estimated=usage_out is None,
            chunks=parser.chunks,
            status=status,
            error=cls,
            error_detail=detail,
            response_id=parser.response_id,
            token_times_ns=tuple(parser.times) if parser.times else (),
            usage_rejected=rejected,
            retry_after_s=retry_after,
            turn=turn,
        )

    async def _read_stream(
        self, resp: aiohttp.ClientResponse, parser: StreamParser, clock: ArrivalStampingHandler | ArrivalStamp | None
    ) -> tuple[ErrorClass, str] | None:
        """The hot loop: one stamp per read, the arrival of its newest bytes (or the read's return)."""
        readany = resp.content.readany
        feed = parser.feed
        t = perf_counter_ns()
        # aiohttp's read timeout only sees silence; a server that dribbles bytes that never complete a token
        # (a broken chunk filled slowly, keep-alive comments forever) is caught by this deadline instead.
        progress_ns = self._progress_ns
        deadline = t + progress_ns
        while True:
            data = await readany()
            if not data:
                t = perf_counter_ns()
                break
            t = clock.arrival_ns if clock is not None else perf_counter_ns()
            n = feed(data, t)
            if n:
                self.chunks += n
                deadline = t + progress_ns
            elif t > deadline:
                return ErrorClass.TIMEOUT, (
                    f"no token for {progress_ns / 1e9:g} s although bytes kept arriving (read timeout)"
                )
            if parser.error is not None:
                return parser.error
        before = parser.chunks
        parser.finish(t)
        self.chunks += parser.chunks - before
        if parser.error is not None:
            return parser.error
        if not parser.complete:
            detail = f"the stream ended before [DONE] or a finish_reason ({parser.chunks} chunks)"
            return ErrorClass.STREAM_BROKEN, detail
        return None

    async def _http_error(self, resp: aiohttp.ClientResponse) -> tuple[ErrorClass, str]:
        status = resp.status
        try:
            raw = await resp.content.read(_ERROR_BODY_BYTES)
        except Exception:  # the body is only decoration for the detail line
            raw = b""
        if status == 422 and self._config.ignore_eos:
            return ErrorClass.HTTP_4XX, IGNORE_EOS_REJECTED
        cls = ErrorClass.HTTP_429 if status == 429 else ErrorClass.HTTP_5XX if status >= 500 else ErrorClass.HTTP_4XX
        message = error_message(raw)
        return cls, one_line(f"HTTP {status} {resp.reason or ''}".rstrip() + (f": {message}" if message else ""))


def usage_disagreement(completion: int, chunks: int, max_tokens: int) -> str:
    """Why a usage.completion_tokens cannot describe the stream that carried it ("" when it can). More tokens
    than chunks is normal (servers pack tokens into chunks), fewer is not, and more than max_tokens never is."""
    if completion < chunks - USAGE_SLACK_TOKENS:
        return f"usage says {completion} output tokens but the stream carried {chunks} content chunks"
    if completion > max_tokens + USAGE_SLACK_TOKENS and completion > chunks + USAGE_SLACK_TOKENS:
        return f"usage says {completion} output tokens, more than max_tokens {max_tokens}"
    return ""


def parse_retry_after(value: str | None) -> float | None:
    """A Retry-After header as seconds in [0, MAX_RETRY_AFTER_S]: delta-seconds or an HTTP date; None if neither."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - dt.datetime.now(dt.UTC)).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(MAX_RETRY_AFTER_S, max(0.0, seconds))


def error_message(raw: bytes) -> str:
    """The human part of an error body: OpenAI's error.message, FastAPI's detail, or the first line of text,
    scrubbed of secrets (servers echo keys: "upstream rejected credentials Bearer sk-...")."""
    return redact_text(_error_text(raw[:_ERROR_BODY_BYTES]))


def _error_text(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace").strip()
    try:
        obj = json.loads(text)
    except ValueError:
        return one_line(text, 120)
    if isinstance(obj, dict):
        err = obj.get("error")
        for candidate in (err.get("message") if isinstance(err, dict) else err, obj.get("detail"), obj.get("message")):
            if candidate:
                return one_line(str(candidate), 120)
    return one_line(text, 120)


def classify_exception(exc: BaseException, got_headers: bool, timeout: aiohttp.ClientTimeout) -> tuple[ErrorClass, str]:
    """Map an aiohttp/OS exception to its error class and a one-line detail (no headers, no keys)."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ErrorClass.CONNECT, f"connect timed out after {timeout.sock_connect:g} s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        reason = "connection refused" if isinstance(os_error, ConnectionRefusedError) else os_error.strerror
        reason = reason or str(os_error) or type(os_error).__name__
        return ErrorClass.CONNECT, one_line(f"cannot connect to {exc.host}:{exc.port}: {reason}")
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return ErrorClass.TIMEOUT, f"no data for {timeout.sock_read:g} s (read timeout)"
    if isinstance(exc, TimeoutError):
        return ErrorClass.TIMEOUT, f"the request took longer than {timeout.total:g} s"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        when = "during the stream" if got_headers else "before responding"
        return ErrorClass.STREAM_BROKEN, f"the server closed the connection {when}"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return ErrorClass.STREAM_BROKEN, one_line(f"the response body broke off: {exc}")
    if isinstance(exc, aiohttp.ClientResponseError):
        return ErrorClass.MALFORMED, one_line(f"invalid HTTP response: {exc.message}")
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        return ErrorClass.STREAM_BROKEN, one_line(f"{type(exc).__name__}: {exc}")
    return ErrorClass.STREAM_BROKEN, one_line(f"unexpected {type(exc).__name__}: {exc}")

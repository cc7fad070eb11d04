"""The simulated server's HTTP side (aiohttp): OpenAI endpoints, ground truth, GPU control, faults, metrics.

``run_server`` serves until a future resolves; ``SimServer`` runs it on a background thread with its own event
loop for tests and in-process use (``start_sim_process`` in ``process.py`` keeps the sim's CPU off the caller's GIL).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import math
import random
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType

from aiohttp import web
from pydantic import ValidationError

from engine.sim.faults import NONE, FaultDice, FaultPlan
from engine.sim.gpu import SimGpu
from engine.sim.metrics import dcgm_exposition, vllm_exposition
from engine.sim.model import RUNTIME_FIELDS, SimConfig
from engine.sim.openai_api import ApiError, CompletionRequest, ResponseFrames, completion_body, parse_request
from engine.sim.responses_api import ResponsesFrames, parse_responses_request, response_body
from engine.sim.scheduler import Scheduler, Seq
from engine.sim.stamps import RequestStamps, StampStore
from engine.sim.stream import CollectSink, Frames, StreamSink
from engine.sim.tokens import CYCLE_LEN, OutputText

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
_JSON = "application/json"



def _resolve(future: asyncio.Future[None]) -> None:
    """Settle ``future`` unless something already did (a second signal, EOF after a signal)."""
    if not future.done():
        future.set_result(None)

def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's faster loop where it is installed (a dependency on Linux and macOS), else asyncio's."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def loop_name() -> str:
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return "asyncio"
    return f"uvloop {getattr(uvloop, '__version__', '?')}"


class SimState:
    """Everything one server instance owns; lives on the server's event loop thread only."""

    def __init__(self, cfg: SimConfig) -> None:
        self.cfg = cfg = cfg.model_copy()  # POST /sim/config edits this copy, never the caller's object
        self.gpu = SimGpu(cfg)
        self.scheduler = Scheduler(cfg, self.gpu)
        self.stamps = StampStore(cfg.stamps_max_requests)
        self.text = OutputText(cfg.seed)
        self.faults = FaultDice(cfg.seed)
        self._rng = random.Random(cfg.seed ^ 0x1D5)  # ids, text offsets, early EOS
        self.auth = f"Bearer {cfg.api_key.get_secret_value()}".encode() if cfg.api_key else None
        self.requests_total = 0
        self.errors_total = 0

    def text_offset(self) -> int:
        return self._rng.randrange(CYCLE_LEN)

    def new_id(self, chat: bool) -> str:
        return ("chatcmpl-" if chat else "cmpl-") + f"{self._rng.getrandbits(96):024x}"

    def output_length(self, req: CompletionRequest) -> int:
        """Tokens to generate: max_tokens, or fewer by a seeded geometric EOS when early_eos_prob > 0."""
        p = self.cfg.early_eos_prob
        u = self._rng.random()  # drawn always, so the sequence does not depend on the setting
        if p <= 0 or req.ignore_eos or req.min_tokens >= req.max_tokens:
            return req.max_tokens
        # tokens before EOS when each token ends the output with chance p (inverse-transform geometric draw)
        survived = 0 if p >= 1.0 else math.floor(math.log1p(-u) / math.log1p(-p))
        return max(1, min(req.max_tokens, req.min_tokens + survived + 1))

    def authorized(self, request: web.Request) -> bool:
        if self.auth is None:
            return True
        given = request.headers.get("Authorization", "").encode()
        return hmac.compare_digest(given, self.auth)


STATE = web.AppKey("sim_state", SimState)


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), status=status, content_type=_JSON)


def _error(err: ApiError) -> web.Response:
    return web.Response(body=err.body(), status=err.status, content_type=_JSON, headers=err.headers)


@dataclass(frozen=True, slots=True)
class Accepted:
    """A request that passed validation and the error faults: everything needed to answer it."""

    req: CompletionRequest
    response_id: str
    created: int  # unix seconds, a label as in the OpenAI API; never used for durations
    target: int  # tokens to generate
    text_pos: int  # where its output starts in the seeded text cycle
    faults: FaultPlan
    stamps: RequestStamps
    responses: bool = False  # POST /v1/responses: answered as Response events


def _accept(
    state: SimState, raw: bytes, t_received_ns: int, chat: bool, responses: bool = False
) -> Accepted | web.Response:
    """Validate, then draw faults; an error response when the request ends here."""
    cfg = state.cfg
    try:
        req = parse_responses_request(raw, cfg) if responses else parse_request(raw, chat, cfg)
    except ApiError as err:
        return _error(err)
    target = state.output_length(req)
    faults = state.faults.draw(cfg, -(-target // cfg.tokens_per_chunk))
    if faults.status == 429:
        headers = {"Retry-After": str(cfg.retry_after_s)}
        return _error(ApiError(429, "Too many requests (simulated).", "RateLimitError", headers=headers))
    if faults.status == 500:
        return _error(ApiError(500, "Internal server error (simulated).", "InternalServerError"))
    rid = state.new_id(chat)
    if responses:
        rid = "resp_" + rid.split("-", 1)[1]
    stamps = state.stamps.open(rid, t_received_ns, req.prompt_tokens)
    return Accepted(req, rid, int(time.time()), target, state.text_offset(), faults, stamps, responses)


async def _completions(request: web.Request, chat: bool, responses: bool = False) -> web.StreamResponse:
    state = request.app[STATE]
    state.requests_total += 1
    if not state.authorized(request):
        state.errors_total += 1
        return _error(ApiError(401, "Invalid or missing API key.", "AuthenticationError"))
    raw = await request.read()
    accepted = _accept(state, raw, time.perf_counter_ns(), chat, responses)
    transport = request.transport
    if isinstance(accepted, web.Response):
        state.errors_total += 1
        return accepted
    if transport is None or transport.is_closing():
        return web.Response(status=499)  # never sent: the client is gone
    if accepted.req.stream:
        return await _answer_stream(request, state, accepted, transport)
    return await _answer_whole(request, state, accepted, transport)


async def _run_to_end(state: SimState, seq: Seq) -> None:
    """Queue a request and wait until the engine is done with it; a cancelled handler abandons its request."""
    state.scheduler.submit(seq)
    done = seq.sink.done
    try:
        await done
    finally:
        if not done.done():
            seq.sink.abort()


async def _answer_stream(
    request: web.Request, state: SimState, acc: Accepted, transport: asyncio.Transport
) -> web.StreamResponse:
    """stream=true: headers now (as vLLM sends them before the first token), then the engine writes the events."""
    cfg, req = state.cfg, acc.req
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    with_usage = (req.include_usage or cfg.usage == "always" or acc.responses) and not cfg.no_usage
    frames: Frames = (
        ResponsesFrames(acc.response_id, acc.created, cfg.model)
        if acc.responses
        else ResponseFrames(acc.response_id, acc.created, cfg.model, req.chat)
    )
    sink = StreamSink(
        transport,
        frames,
        state.text,
        acc.text_pos,
        cfg.tokens_per_chunk,
        acc.stamps,
        acc.faults,
        cfg.stall_s,
        req.prompt_tokens if with_usage else None,
        cfg.reasoning_tokens if req.chat or acc.responses else 0,
    )
    await _run_to_end(state, Seq(sink, req.prompt_tokens, req.max_tokens, acc.target, req.blocks))
    if not sink.closed:  # else reset, client gone or shutdown: aiohttp's final write_eof finds a closed transport
        await resp.write_eof()
    return resp


async def _answer_whole(
    request: web.Request, state: SimState, acc: Accepted, transport: asyncio.Transport
) -> web.StreamResponse:
    """stream=false: wait for the whole output, then one JSON body (the stream faults act on that body)."""
    req, faults = acc.req, acc.faults
    sink = CollectSink(transport, acc.stamps)
    await _run_to_end(state, Seq(sink, req.prompt_tokens, req.max_tokens, acc.target, req.blocks))
    if sink.closed or faults.reset_after != NONE:
        transport.abort()
        return web.Response(status=499)  # never sent: the connection is gone
    if faults.stall_after != NONE:
        await asyncio.sleep(state.cfg.stall_s)
    text = state.text.join_text(acc.text_pos, sink.tokens)
    if acc.responses:
        body = response_body(acc.response_id, acc.created, state.cfg.model, text, sink.reason, req.prompt_tokens,
                             sink.tokens)  # fmt: skip
    else:
        body = completion_body(
            acc.response_id, acc.created, state.cfg.model, req.chat, text, sink.reason, req.prompt_tokens, sink.tokens
        )
    if faults.malformed_after != NONE:
        body = body[: len(body) // 2]
    resp = web.StreamResponse(headers={"Content-Type": _JSON})
    resp.content_length = len(body)
    await resp.prepare(request)
    acc.stamps.chunk_write_ns.append(time.perf_counter_ns())
    await resp.write(body)
    await resp.write_eof()
    return resp


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _completions(request, chat=True)


async def completions(request: web.Request) -> web.StreamResponse:
    return await _completions(request, chat=False)


async def responses(request: web.Request) -> web.StreamResponse:
    return await _completions(request, chat=True, responses=True)


async def models(request: web.Request) -> web.Response:
    state = request.app[STATE]
    if not state.authorized(request):
        return _error(ApiError(401, "Invalid or missing API key.", "AuthenticationError"))
    cfg = state.cfg
    entry = {
        "id": cfg.model,
        "object": "model",
        "created": 0,
        "owned_by": "wattload-sim",
        "root": cfg.model,
        "max_model_len": cfg.max_model_len,
    }
    return _json({"object": "list", "data": [entry]})


async def health(request: web.Request) -> web.Response:
    return web.Response(status=200)


async def stamps_of(request: web.Request) -> web.Response:
    rid = request.match_info["response_id"]
    stamps = request.app[STATE].stamps.get(rid)
    if stamps is None:
        return _error(ApiError(404, f"no stamps for response id {rid!r}", "NotFoundError", "response_id"))
    return _json(stamps.to_json(rid))


async def gpu_reading(request: web.Request) -> web.Response:
    return _json(request.app[STATE].gpu.reading())


async def gpu_power_limit(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        body = json.loads(await request.read())
        watts = body["watts"]
        if isinstance(watts, bool) or not isinstance(watts, int | float) or watts != watts:
            raise ValueError
    except (ValueError, KeyError, TypeError):
        return _error(ApiError(400, 'expected a JSON body {"watts": <number>}', "BadRequestError", "watts"))
    state.gpu.set_limit(float(watts))
    return _json(state.gpu.reading())


async def get_config(request: web.Request) -> web.Response:
    return _json(request.app[STATE].cfg.safe_dump())


async def post_config(request: web.Request) -> web.Response:
    """Change fault and behaviour fields at runtime; all-or-nothing, returns the whole new config."""
    state = request.app[STATE]
    try:
        patch = json.loads(await request.read())
        if not isinstance(patch, dict):
            raise ValueError("expected a JSON object")
        fixed = sorted(set(patch) - RUNTIME_FIELDS)
        if fixed:
            raise ValueError(
                f"not changeable at runtime: {', '.join(fixed)}; allowed: {', '.join(sorted(RUNTIME_FIELDS))}"
            )
        new = SimConfig.model_validate({**state.cfg.model_dump(), **patch, "api_key": state.cfg.api_key})
    except (ValueError, ValidationError) as exc:  # ValidationError is a ValueError; named for clarity
        message = str(exc).splitlines()[0] if not isinstance(exc, ValidationError) else _first_error(exc)
        return _error(ApiError(400, message, "BadRequestError"))
    for name in patch:
        setattr(state.cfg, name, getattr(new, name))
    return _json(state.cfg.safe_dump())


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    return f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"


async def metrics(request: web.Request) -> web.Response:
    """vLLM-named Prometheus metrics (running, waiting, KV, prefix cache, tokens, latency histograms) + sim figures."""
    state = request.app[STATE]
    sch = state.scheduler

    def extra() -> list[tuple[str, str, float]]:
        cost = sch.last_cost
        return [
            ("sim:requests_total", "counter", state.requests_total),
            ("sim:request_errors_total", "counter", state.errors_total),
            ("sim:steps_total", "counter", sch.steps),
            ("sim:last_step_seconds", "gauge", cost.duration_s if cost else 0.0),
            ("sim:last_step_cap_stretch", "gauge", cost.stretch if cost else 1.0),
            ("sim:power_limit_watts", "gauge", state.gpu.limit_w),
        ]

    body = vllm_exposition(sch, state.cfg.model, extra)
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


async def dcgm_metrics(request: web.Request) -> web.Response:
    """The simulated GPU in dcgm-exporter's names and format."""
    return web.Response(body=dcgm_exposition(request.app[STATE].gpu), content_type="text/plain", charset="utf-8")


def create_app(cfg: SimConfig) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE] = SimState(cfg)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/responses", responses)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/sim/dcgm/metrics", dcgm_metrics)
    app.router.add_get("/sim/stamps/{response_id}", stamps_of)
    app.router.add_get("/sim/gpu", gpu_reading)
    app.router.add_post("/sim/gpu/power_limit", gpu_power_limit)
    app.router.add_get("/sim/config", get_config)
    app.router.add_post("/sim/config", post_config)
    app.cleanup_ctx.append(_run_scheduler)
    app.on_shutdown.append(_end_streams)
    return app


async def _run_scheduler(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(app[STATE].scheduler.run(), name="sim-scheduler")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _end_streams(app: web.Application) -> None:
    app[STATE].scheduler.close()


async def run_server(
    cfg: SimConfig, host: str, port: int, on_ready: Callable[[str], None], stop: Awaitable[object]
) -> None:
    """Serve until ``stop`` resolves; ``on_ready`` gets the /v1 base URL once the socket listens."""
    runner = web.AppRunner(create_app(cfg), handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=4096, reuse_address=True)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        on_ready(f"http://{shown}:{bound_port}/v1")
        await stop
    finally:
        await runner.cleanup()


class SimServer:
    """The simulator on a background thread with its own event loop; ``start()`` returns the /v1 base URL."""

    def __init__(self, config: SimConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config or SimConfig()
        self.host = host
        self.port = port
        self.url = ""
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Future[None] | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout_s: float = 10.0) -> str:
        self._thread = threading.Thread(target=self._main, name="wattload-sim", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError(f"simulated server did not start within {timeout_s} s")
        if self._error is not None:
            raise RuntimeError(f"simulated server failed to start: {self._error}") from self._error
        return self.url

    def _main(self) -> None:
        loop = self._loop = new_event_loop()
        self._stop = loop.create_future()

        def ready(url: str) -> None:
            self.url = url
            self.port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
            self._ready.set()

        try:
            loop.run_until_complete(run_server(self.config, self.host, self.port, ready, self._stop))
        except BaseException as exc:  # reported by start() when it happens before the socket listens
            self._error = exc
        finally:
            self._ready.set()
            loop.close()

    def stop(self, timeout_s: float = 10.0) -> None:
        loop, stop, thread = self._loop, self._stop, self._thread
        if loop is None or stop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already closed
            loop.call_soon_threadsafe(functools.partial(_resolve, stop))
        thread.join(timeout_s)
        if not thread.is_alive():
            self._thread = None

    def __enter__(self) -> SimServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

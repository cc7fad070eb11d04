"""A small loopback OpenAI-style server that records every request body and streams a known answer.

Multi-turn tests need to see what the client really sent (did turn 3 carry turns 1 and 2 with the server's own
answers?); the simulator does not keep bodies. Answers are ``answer <n> <words>`` (n counts requests), streamed in
a few chunks with usage, in the chat or the Responses shape depending on the path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Iterator
from typing import Any

from aiohttp import web


class ConversationServer:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.answers: list[str] = []
        self.url = ""
        self._lock = threading.Lock()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, responses=False)

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, responses=True)

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "conv-model", "object": "model"}]})

    async def _answer(self, request: web.Request, responses: bool) -> web.StreamResponse:
        body = await request.json()
        with self._lock:
            n = len(self.bodies)
            self.bodies.append(body)
            text = f"answer {n} " + " ".join(f"w{n}x{i}" for i in range(5))
            self.answers.append(text)
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        pieces = [text[i : i + 7] for i in range(0, len(text), 7)]
        for piece in pieces:
            if responses:
                event = {"type": "response.output_text.delta", "delta": piece}
                await resp.write(f"event: response.output_text.delta\ndata: {json.dumps(event)}\n\n".encode())
            else:
                chunk = {"id": f"c{n}", "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
            await asyncio.sleep(0.001)
        usage_in = 10 * (n + 1)
        if responses:
            done = {"type": "response.completed", "response": {"id": f"resp_{n}", "status": "completed",
                    "usage": {"input_tokens": usage_in, "output_tokens": len(pieces)}}}  # fmt: skip
            await resp.write(f"event: response.completed\ndata: {json.dumps(done)}\n\n".encode())
        else:
            fin = {"id": f"c{n}", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            usage = {"id": f"c{n}", "choices": [], "usage": {"prompt_tokens": usage_in,
                                                            "completion_tokens": len(pieces)}}  # fmt: skip
            await resp.write(f"data: {json.dumps(fin)}\n\ndata: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())
        await resp.write_eof()
        return resp

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_get("/v1/models", self._models)
        return app


@contextlib.contextmanager
def conversation_server() -> Iterator[ConversationServer]:
    """The server on its own thread and loop, bound to 127.0.0.1 port 0."""
    server = ConversationServer()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stop = loop.create_future()

    async def main() -> None:
        runner = web.AppRunner(server.app(), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        server.url = f"http://127.0.0.1:{port}/v1"
        ready.set()
        await stop
        await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10), "the conversation server did not start"
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(lambda: stop.done() or stop.set_result(None))
        thread.join(10)

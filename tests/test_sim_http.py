"""The simulated server over real loopback HTTP: OpenAI shapes, validation, faults, ground truth, KV queueing."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field

import aiohttp
import pytest

from engine.sim import SimConfig, SimServer
from engine.sim.tokens import count_text_tokens

MODEL = "sim-llama-3.1-8b"
SIM = SimConfig(speed=50.0)  # fast unless a test says otherwise (conftest.py start_sim)
TIMEOUT = aiohttp.ClientTimeout(total=15)


@pytest.fixture
async def http():
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        yield session


def chat_body(max_tokens: int = 8, **extra) -> dict:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hello, world!"}],
        "max_tokens": max_tokens,
        **extra,
    }


@dataclass
class Stream:
    """One streamed answer as the client saw it."""

    status: int
    headers: dict[str, str]
    events: list = field(default_factory=list)  # parsed JSON, "[DONE]", or raw bytes when not JSON
    arrivals_ns: list[int] = field(default_factory=list)  # per event
    error: dict | None = None

    @property
    def content_events(self) -> list[dict]:
        return [e for e in self.events if isinstance(e, dict) and _text(e)]

    @property
    def content_arrivals_ns(self) -> list[int]:
        return [t for e, t in zip(self.events, self.arrivals_ns, strict=True) if isinstance(e, dict) and _text(e)]

    @property
    def response_id(self) -> str:
        return next(e["id"] for e in self.events if isinstance(e, dict))

    @property
    def usage(self) -> dict | None:
        return next((e["usage"] for e in self.events if isinstance(e, dict) and e.get("usage")), None)


def _text(event: dict) -> str:
    if not event.get("choices"):
        return ""
    choice = event["choices"][0]
    return choice.get("delta", {}).get("content") or choice.get("text") or ""


async def stream(http: aiohttp.ClientSession, url: str, path: str, body: dict, headers: dict | None = None) -> Stream:
    async with http.post(url + path, json={"stream": True, **body}, headers=headers) as resp:
        out = Stream(resp.status, dict(resp.headers))
        if resp.status != 200:
            out.error = await resp.json()
            return out
        async for line in resp.content:
            if not line.startswith(b"data: "):
                continue
            payload = line[6:].strip()
            out.arrivals_ns.append(time.perf_counter_ns())
            if payload == b"[DONE]":
                out.events.append("[DONE]")
                continue
            try:
                out.events.append(json.loads(payload))
            except ValueError:
                out.events.append(payload)
        return out


async def get_json(http: aiohttp.ClientSession, url: str) -> tuple[int, dict]:
    async with http.get(url) as resp:
        return resp.status, await resp.json()


def root(url: str) -> str:
    return url.removesuffix("/v1")


# -- OpenAI shapes ---------------------------------------------------------------------------------------------------


async def test_chat_stream_has_the_openai_shape(start_sim, http):
    url = start_sim().url
    s = await stream(http, url, "/chat/completions", chat_body(5, stream_options={"include_usage": True}))
    assert s.status == 200 and s.headers["Content-Type"].startswith("text/event-stream")
    role, *content, finish, usage, done = s.events
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert len(content) == 5 and all(isinstance(c["choices"][0]["delta"]["content"], str) for c in content)
    assert finish["choices"][0]["finish_reason"] == "length" and finish["choices"][0]["delta"] == {}
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 5
    assert usage["usage"]["total_tokens"] == usage["usage"]["prompt_tokens"] + 5
    assert done == "[DONE]"
    ids = {e["id"] for e in s.events if isinstance(e, dict)}
    assert len(ids) == 1 and ids.pop().startswith("chatcmpl-")
    assert {e["object"] for e in s.events if isinstance(e, dict)} == {"chat.completion.chunk"}
    assert {e["model"] for e in s.events if isinstance(e, dict)} == {MODEL}


async def test_completions_stream_has_the_openai_shape(start_sim, http):
    url = start_sim().url
    body = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 4, "stream_options": {"include_usage": True}}
    s = await stream(http, url, "/completions", body)
    *content, finish, usage, done = s.events
    assert [c["object"] for c in content] == ["text_completion"] * 4
    assert all(c["choices"][0]["text"] and c["choices"][0]["finish_reason"] is None for c in content)
    assert finish["choices"][0]["text"] == "" and finish["choices"][0]["finish_reason"] == "length"
    assert usage["usage"] == {
        "prompt_tokens": 1 + 4,
        "completion_tokens": 4,
        "total_tokens": 9,
    }  # BOS + Once|upon|a|time
    assert s.response_id.startswith("cmpl-") and done == "[DONE]"


async def test_usage_only_when_requested_unless_configured_always(start_sim, http):
    url = start_sim().url
    assert (await stream(http, url, "/chat/completions", chat_body(3))).usage is None
    url_always = start_sim(usage="always").url
    assert (await stream(http, url_always, "/chat/completions", chat_body(3))).usage["completion_tokens"] == 3


async def test_usage_equals_max_tokens_with_ignore_eos_even_when_eos_is_likely(start_sim, http):
    url = start_sim(early_eos_prob=0.3, seed=4).url
    forced = await stream(
        http, url, "/chat/completions", chat_body(40, ignore_eos=True, stream_options={"include_usage": True})
    )
    assert forced.usage["completion_tokens"] == 40 and len(forced.content_events) == 40
    by_min = await stream(
        http, url, "/chat/completions", chat_body(40, min_tokens=40, stream_options={"include_usage": True})
    )
    assert by_min.usage["completion_tokens"] == 40
    free = [
        await stream(http, url, "/chat/completions", chat_body(40, stream_options={"include_usage": True}))
        for _ in range(4)
    ]
    stopped = [s for s in free if s.usage["completion_tokens"] < 40]
    assert stopped, "with early_eos_prob 0.3 some outputs must end before max_tokens"
    assert all(s.events[-3]["choices"][0]["finish_reason"] == "stop" for s in stopped)


async def test_prompt_tokens_follow_the_pseudo_tokenizer(start_sim, http):
    url = start_sim().url
    text = "The quick brown fox jumps over the lazy dog."
    s = await stream(
        http,
        url,
        "/chat/completions",
        {**chat_body(2), "messages": [{"role": "user", "content": text}], "stream_options": {"include_usage": True}},
    )
    assert s.usage["prompt_tokens"] == 1 + 5 + count_text_tokens(text) + 4
    assert s.usage["prompt_tokens"] != len(text.split())


async def test_tokens_per_chunk_packs_tokens_and_usage_counts_tokens(start_sim, http):
    url = start_sim(tokens_per_chunk=4).url
    s = await stream(http, url, "/chat/completions", chat_body(10, stream_options={"include_usage": True}))
    assert len(s.content_events) == 3  # 4 + 4 + 2
    assert s.usage["completion_tokens"] == 10
    assert sum(count_text_tokens(_text(e)) for e in s.content_events) == 10


async def test_non_streaming_answer(start_sim, http):
    url = start_sim().url
    async with http.post(url + "/chat/completions", json=chat_body(6)) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["object"] == "chat.completion" and body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 6
    assert count_text_tokens(body["choices"][0]["message"]["content"]) == 6


async def test_models_and_health(start_sim, http):
    url = start_sim(model="tiny").url
    status, models = await get_json(http, url + "/models")
    assert status == 200 and [m["id"] for m in models["data"]] == ["tiny"]
    async with http.get(root(url) + "/health") as resp:
        assert resp.status == 200


# -- refusals --------------------------------------------------------------------------------------------------------


async def test_unknown_model_is_404(start_sim, http):
    url = start_sim().url
    s = await stream(http, url, "/chat/completions", {**chat_body(), "model": "gpt-9"})
    assert s.status == 404 and "gpt-9" in s.error["error"]["message"] and s.error["error"]["code"] == 404


async def test_invalid_json_is_400(start_sim, http):
    url = start_sim().url
    async with http.post(
        url + "/chat/completions", data=b'{"model": ', headers={"Content-Type": "application/json"}
    ) as r:
        assert r.status == 400
        assert "invalid JSON" in (await r.json())["error"]["message"]
    async with http.post(url + "/completions", json={"model": MODEL}) as r:  # no prompt
        assert r.status == 400


async def test_context_overflow_is_400_like_vllm(start_sim, http):
    url = start_sim(max_model_len=64).url
    s = await stream(http, url, "/chat/completions", chat_body(60))
    assert s.status == 400
    assert "maximum context length is 64 tokens" in s.error["error"]["message"]
    assert (await stream(http, url, "/chat/completions", chat_body(20))).status == 200


async def test_strict_fields_reject_extensions_with_422(start_sim, http):
    url = start_sim(strict_fields=True).url
    s = await stream(http, url, "/chat/completions", chat_body(3, ignore_eos=True, min_tokens=3))
    assert s.status == 422 and "ignore_eos" in s.error["error"]["message"]
    assert (await stream(http, url, "/chat/completions", chat_body(3))).status == 200


async def test_api_key_required_when_set(start_sim, http):
    url = start_sim(api_key="s3cret").url
    assert (await stream(http, url, "/chat/completions", chat_body(2))).status == 401
    wrong = {"Authorization": "Bearer nope"}
    assert (await stream(http, url, "/chat/completions", chat_body(2), headers=wrong)).status == 401
    right = {"Authorization": "Bearer s3cret"}
    assert (await stream(http, url, "/chat/completions", chat_body(2), headers=right)).status == 200
    async with http.get(url + "/models") as resp:
        assert resp.status == 401
    status, config = await get_json(http, root(url) + "/sim/config")
    assert status == 200 and "s3cret" not in json.dumps(config)


# -- faults ----------------------------------------------------------------------------------------------------------


async def test_error_rate_gives_500(start_sim, http):
    url = start_sim(error_rate=1.0).url
    s = await stream(http, url, "/chat/completions", chat_body())
    assert s.status == 500 and s.error["error"]["code"] == 500


async def test_rate_429_gives_retry_after(start_sim, http):
    url = start_sim(rate_429=1.0, retry_after_s=3).url
    s = await stream(http, url, "/chat/completions", chat_body())
    assert s.status == 429 and s.headers["Retry-After"] == "3"


async def test_reset_aborts_mid_stream(start_sim, http):
    url = start_sim(reset_rate=1.0).url
    received = 0
    with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, ConnectionResetError)):
        async with http.post(url + "/chat/completions", json=chat_body(20, stream=True)) as resp:
            assert resp.status == 200
            async for line in resp.content:
                received += line.startswith(b"data: ") and b'"content":"' in line and b'"role"' not in line
    assert 1 <= received < 20


async def test_malformed_chunk_then_stream_goes_on(start_sim, http):
    url = start_sim(malformed_rate=1.0).url
    s = await stream(http, url, "/chat/completions", chat_body(10))
    bad = [e for e in s.events if isinstance(e, bytes)]
    assert len(bad) == 1
    assert len(s.content_events) == 10 and s.events[-1] == "[DONE]"


async def test_stall_holds_output_for_stall_s(start_sim, http):
    url = start_sim(stall_rate=1.0, stall_s=0.3).url
    s = await stream(http, url, "/chat/completions", chat_body(10))
    assert len(s.content_events) == 10
    _, truth = await get_json(http, f"{root(url)}/sim/stamps/{s.response_id}")
    gaps = [b - a for a, b in zip(truth["chunk_write_ns"], truth["chunk_write_ns"][1:], strict=False)]
    assert max(gaps) >= 0.3e9  # the server really wrote nothing for stall_s


async def test_no_usage_fault_drops_the_usage_chunk(start_sim, http):
    url = start_sim(no_usage=True).url
    s = await stream(http, url, "/chat/completions", chat_body(3, stream_options={"include_usage": True}))
    assert s.usage is None and len(s.content_events) == 3 and s.events[-1] == "[DONE]"


async def test_faults_change_at_runtime(start_sim, http):
    url = start_sim().url
    async with http.post(root(url) + "/sim/config", json={"error_rate": 1.0}) as resp:
        assert resp.status == 200 and (await resp.json())["error_rate"] == 1.0
    assert (await stream(http, url, "/chat/completions", chat_body())).status == 500
    async with http.post(root(url) + "/sim/config", json={"error_rate": 0}) as resp:
        assert resp.status == 200
    assert (await stream(http, url, "/chat/completions", chat_body())).status == 200
    for bad in ({"error_rate": 2}, {"speed": 3}, [1]):
        async with http.post(root(url) + "/sim/config", json=bad) as resp:
            assert resp.status == 400


# -- ground truth ----------------------------------------------------------------------------------------------------


async def test_stamps_one_per_content_chunk_and_before_arrival(start_sim, http):
    url = start_sim(tokens_per_chunk=2).url
    s = await stream(http, url, "/chat/completions", chat_body(9, stream_options={"include_usage": True}))
    status, truth = await get_json(http, f"{root(url)}/sim/stamps/{s.response_id}")
    assert status == 200
    stamps = truth["chunk_write_ns"]
    assert len(stamps) == len(s.content_events) == 5
    assert truth["completion_tokens"] == 9 and truth["prompt_tokens"] == s.usage["prompt_tokens"]
    assert truth["t_received_ns"] <= stamps[0] and stamps == sorted(stamps)
    # same clock (perf_counter_ns) on both sides: a chunk cannot arrive before the server wrote it
    assert all(w <= a for w, a in zip(stamps, s.content_arrivals_ns, strict=True))
    status, _ = await get_json(http, f"{root(url)}/sim/stamps/chatcmpl-unknown")
    assert status == 404


# -- KV capacity -----------------------------------------------------------------------------------------------------


async def _first_chunk_then_rest(http, url, body, first: asyncio.Event | None = None) -> Stream:
    """Stream like ``stream`` but signal ``first`` once the first content chunk arrived."""
    async with http.post(url + "/completions", json={"stream": True, **body}) as resp:
        out = Stream(resp.status, dict(resp.headers))
        async for line in resp.content:
            if line.startswith(b"data: {"):
                event = json.loads(line[6:])
                out.events.append(event)
                out.arrivals_ns.append(time.perf_counter_ns())
                if first is not None and _text(event):
                    first.set()
        return out


@pytest.mark.parametrize("kv_full", [True, False])
async def test_kv_capacity_makes_the_next_request_wait(start_sim, http, kv_full):
    body = {"model": MODEL, "prompt": [7] * 10, "max_tokens": 150, "ignore_eos": True}
    per_request = 10 + 150
    url = start_sim(speed=10.0, kv_capacity_tokens=4 * per_request if kv_full else 100 * per_request).url
    firsts = [asyncio.Event() for _ in range(4)]
    running = [asyncio.create_task(_first_chunk_then_rest(http, url, body, ev)) for ev in firsts]
    await asyncio.wait_for(asyncio.gather(*(ev.wait() for ev in firsts)), 10)
    late = asyncio.create_task(_first_chunk_then_rest(http, url, body))
    if kv_full:  # the fifth request is queued, visibly
        waiting = 0.0
        for _ in range(100):
            async with http.get(root(url) + "/metrics") as resp:
                text = await resp.text()
            waiting = float(
                next(ln for ln in text.splitlines() if ln.startswith("vllm:num_requests_waiting")).split()[-1]
            )
            if waiting or late.done():
                break
            await asyncio.sleep(0.005)
        assert waiting == 1.0
    done = await asyncio.wait_for(asyncio.gather(*running, late), 20)
    truth = []
    for s in done:
        _, t = await get_json(http, f"{root(url)}/sim/stamps/{s.response_id}")
        truth.append(t)
    first_finish = min(t["chunk_write_ns"][-1] for t in truth[:4])
    late_first_token = truth[4]["chunk_write_ns"][0]
    if kv_full:  # its first token only after a running request finished and freed its KV
        assert late_first_token > first_finish
    else:
        assert late_first_token < first_finish


async def _running(http, url) -> float:
    async with http.get(root(url) + "/metrics") as resp:
        text = await resp.text()
    return float(next(ln for ln in text.splitlines() if ln.startswith("vllm:num_requests_running")).split()[-1])


async def test_client_disconnect_frees_the_request(start_sim, http):
    body = {"model": MODEL, "prompt": [3] * 10, "max_tokens": 20_000, "ignore_eos": True, "stream": True}
    url = start_sim(speed=1.0, kv_capacity_tokens=20_010).url  # room for exactly one such request
    async with http.post(url + "/completions", json=body) as resp:
        await resp.content.readline()  # streaming has begun: it holds the whole KV cache
        assert await _running(http, url) == 1
    # leaving the block closed the connection mid-stream; the engine must notice and free the KV
    for _ in range(200):
        if await _running(http, url) == 0:
            break
        await asyncio.sleep(0.01)
    assert await _running(http, url) == 0
    quick = await stream(http, url, "/completions", {**body, "max_tokens": 2})
    assert len(quick.content_events) == 2


def test_stop_ends_open_streams():
    server = SimServer(SimConfig())
    url = server.start()

    async def hold_open() -> BaseException | None:
        body = {"model": MODEL, "prompt": "x", "max_tokens": 20_000, "ignore_eos": True, "stream": True}
        async with aiohttp.ClientSession(timeout=TIMEOUT) as http, http.post(url + "/completions", json=body) as resp:
            await resp.content.readline()
            await asyncio.get_running_loop().run_in_executor(None, server.stop)
            try:
                await resp.read()
            except aiohttp.ClientError as exc:
                return exc
        return None

    assert isinstance(asyncio.run(hold_open()), aiohttp.ClientPayloadError)
    assert not server.running

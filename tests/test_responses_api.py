"""The OpenAI Responses API: the SSE parser on its typed events, and the client end to end on the simulator."""

from __future__ import annotations

import json

import httpx
import pytest
from engine_helpers import CollectingSink, config, root_of, run_to_end, sim_server, sim_stamps

from engine.endpoint.client import request_body
from engine.endpoint.sse import StreamParser
from engine.load.controller import Controller
from engine.records import ErrorClass
from engine.workload.synthetic import RequestSpec


def event(kind: str, **fields: object) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **fields})}\n\n".encode()


def openai_stream(texts: list[str], final: str = "response.completed", usage: bool = True) -> bytes:
    """Shaped like api.openai.com's: sequence numbers on every event, items and parts around the deltas."""
    resp = {"id": "resp_abc", "object": "response", "status": "in_progress"}
    body = event("response.created", sequence_number=0, response=resp)
    body += event("response.output_item.added", sequence_number=1, output_index=0, item={"id": "msg_1"})
    for i, text in enumerate(texts):
        body += event("response.output_text.delta", sequence_number=2 + i, item_id="msg_1", output_index=0,
                      content_index=0, delta=text, logprobs=[])  # fmt: skip
    done: dict[str, object] = {"id": "resp_abc", "status": final.split(".")[1]}
    if usage:
        done["usage"] = {"input_tokens": 21, "output_tokens": len(texts), "total_tokens": 21 + len(texts)}
    return body + event(final, sequence_number=99, response=done)


@pytest.mark.parametrize("cut", [None, 1, 7, 64])
def test_text_deltas_usage_and_the_end_are_read_wherever_the_bytes_break(cut):
    body = openai_stream([" Hello", ",", ' "world"', " caf\u00e9", ""])
    text: list[str] = []
    p = StreamParser(text=text)
    pieces = [body] if cut is None else [body[i : i + cut] for i in range(0, len(body), cut)]
    for i, piece in enumerate(pieces):
        p.feed(piece, i + 1)
    p.finish(len(pieces) + 1)
    assert p.error is None and p.complete
    assert p.chunks == 4 and "".join(text) == ' Hello, "world" caf\u00e9'
    assert (p.prompt_tokens, p.completion_tokens, p.response_id) == (21, 5, "resp_abc")
    assert p.first_ns is not None and p.first_ns >= 1


def test_incomplete_at_max_output_tokens_is_a_complete_stream():
    p = StreamParser()
    p.feed(openai_stream([" a", " b"], final="response.incomplete"), 5)
    assert p.error is None and p.complete and p.completion_tokens == 2


def test_reasoning_deltas_count_for_the_first_token_but_not_the_answer_text():
    text: list[str] = []
    p = StreamParser(text=text)
    p.feed(event("response.reasoning_text.delta", delta="thinking") + event("response.output_text.delta", delta="42"),
           3)  # fmt: skip
    p.feed(event("response.completed", response={"id": "r", "usage": {"input_tokens": 1, "output_tokens": 2}}), 9)
    assert p.first_ns == 3 and p.chunks == 2 and text == ["42"]


@pytest.mark.parametrize(
    ("body", "cls", "detail"),
    [
        (event("response.failed", response={"id": "r", "error": {"message": "overloaded", "code": 503}}),
         ErrorClass.HTTP_5XX, "overloaded"),
        (event("error", error={"message": "rate limited", "code": 429}), ErrorClass.HTTP_429, "rate limited"),
        (event("response.output_text.delta", delta=7), ErrorClass.MALFORMED, "without a string delta"),
        (event("response.completed", response={"id": "r", "usage": [1]}), ErrorClass.MALFORMED, "'usage'"),
    ],
)  # fmt: skip
def test_failures_become_error_classes(body, cls, detail):
    p = StreamParser()
    p.feed(body, 1)
    assert p.error is not None and p.error[0] is cls and detail in p.error[1]


def test_a_stream_cut_before_response_completed_is_not_complete():
    p = StreamParser()
    p.feed(openai_stream([" a"])[:-60], 1)
    p.finish(2)
    assert not p.complete


def test_the_request_body_has_input_and_max_output_tokens_and_no_stream_options():
    cfg = config("http://127.0.0.1:9/v1", api="responses", ignore_eos=True)
    body = request_body(cfg, RequestSpec(fields={"messages": [{"role": "user", "content": "hi"}]}, max_tokens=9,
                                         input_tokens=3))  # fmt: skip
    assert body["input"] == [{"role": "user", "content": "hi"}] and "messages" not in body
    assert body["max_output_tokens"] == 9 and body["stream"] is True and "stream_options" not in body
    assert "max_tokens" not in body and body["min_tokens"] == 9


def test_the_simulator_serves_responses_end_to_end():
    with sim_server(speed=20) as url:
        cfg = config(url, api="responses", max_requests=12, concurrency=3, ignore_eos=True, max_tokens=24)
        sink = CollectingSink()
        run_to_end(Controller(cfg, sinks=[sink]), timeout_s=60)
        assert len(sink.records) >= 12 and all(r.ok for r in sink.records), sink.records[0].error_detail
        for r in sink.records[:4]:
            assert r.response_id is not None and r.response_id.startswith("resp_")
            assert r.output_tokens == r.chunks == 24 and not r.output_estimated
            truth = sim_stamps(url, r.response_id)
            assert r.input_tokens == truth["prompt_tokens"] and r.t_first_token_ns is not None
        # the non-streaming shape too: one Response object with usage
        reply = httpx.post(f"{root_of(url)}/v1/responses", json={"model": cfg.model, "input": "Hi there",
                                                                  "max_output_tokens": 3}, timeout=10)  # fmt: skip
        data = reply.json()
        assert reply.status_code == 200 and data["object"] == "response" and data["status"] == "incomplete"
        assert data["usage"]["output_tokens"] == 3 and data["output"][0]["content"][0]["text"]

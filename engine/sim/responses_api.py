"""The OpenAI Responses API as the simulator serves it: ``POST /v1/responses`` with ``stream: true``.

A request's ``input`` (a string, or a list of ``{role, content}`` messages whose content is a string or
``input_text`` parts) and ``max_output_tokens`` are mapped onto the chat/completions validation, so lengths,
context limits, faults and the prefix cache behave exactly as on the other endpoints. The stream is typed events:
``response.created``, one ``response.output_text.delta`` per chunk, then ``response.completed`` (or
``response.incomplete`` when ``max_output_tokens`` ended it) carrying ``usage.input_tokens/output_tokens``.
"""

from __future__ import annotations

import json

from engine.sim.model import SimConfig
from engine.sim.openai_api import ApiError, CompletionRequest, parse_request

RESPONSES_FIELDS = frozenset(
    {
        "model", "input", "instructions", "stream", "max_output_tokens", "temperature", "top_p", "user", "store",
        "metadata", "previous_response_id", "reasoning", "tools", "tool_choice", "text", "truncation",
        "parallel_tool_calls", "service_tier", "include",
    }
)  # fmt: skip


def parse_responses_request(raw: bytes, cfg: SimConfig) -> CompletionRequest:
    """Validate a /v1/responses body; the returned request has ``chat`` True for message input."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"invalid JSON body: {exc}", "BadRequestError") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", "BadRequestError")
    if cfg.strict_fields:
        unknown = sorted(set(body) - RESPONSES_FIELDS)
        if unknown:
            raise ApiError(422, f"Extra inputs are not permitted: {', '.join(unknown)}", "extra_forbidden", unknown[0])
    if "input" not in body:
        raise ApiError(400, "'input' is required", "BadRequestError", "input")
    given = body.pop("input")
    mapped: dict[str, object] = {k: v for k, v in body.items() if k not in ("max_output_tokens", "instructions")}
    mapped["stream_options"] = {"include_usage": True}
    if "max_output_tokens" in body:
        mapped["max_tokens"] = body["max_output_tokens"]
    instructions = body.get("instructions")
    if isinstance(given, str):
        mapped["prompt"] = f"{instructions}\n\n{given}" if isinstance(instructions, str) else given
        chat = False
    else:
        if isinstance(given, list) and isinstance(instructions, str):
            given = [{"role": "system", "content": instructions}, *given]
        mapped["messages"] = given
        chat = True
    return parse_request(json.dumps(mapped).encode(), chat, cfg.model_copy(update={"strict_fields": False}))


class ResponsesFrames:
    """The SSE events of one streamed Response; the same interface as ``ResponseFrames``."""

    __slots__ = ("_created", "_model", "_rid", "content_prefix", "content_suffix", "reasoning_prefix", "role")

    def __init__(self, response_id: str, created: int, model: str) -> None:
        self._rid, self._created, self._model = response_id, created, json.dumps(model)
        item = "msg_" + response_id.removeprefix("resp_")
        self.content_prefix = (
            b"event: response.output_text.delta\ndata: "
            b'{"type":"response.output_text.delta","item_id":"' + item.encode() + b'","output_index":0,'
            b'"content_index":0,"delta":'
        )
        reasoning = "rs_" + response_id.removeprefix("resp_")
        self.reasoning_prefix = (
            b"event: response.reasoning_text.delta\ndata: "
            b'{"type":"response.reasoning_text.delta","item_id":"' + reasoning.encode() + b'","output_index":0,'
            b'"content_index":0,"delta":'
        )
        self.content_suffix = b"}\n\n"
        self.role: bytes | None = self._event("response.created", "in_progress", None)

    def _event(self, kind: str, status: str, usage: dict[str, int] | None, extra: str = "") -> bytes:
        response = (
            f'{{"id":"{self._rid}","object":"response","created_at":{self._created},"status":"{status}",'
            f'"model":{self._model}{extra}'
        )
        if usage is not None:
            response += ',"usage":' + json.dumps(usage, separators=(",", ":"))
        return f'event: {kind}\ndata: {{"type":"{kind}","response":{response}}}}}\n\n'.encode()

    def content(self, quoted_text: bytes, reasoning: bool = False) -> bytes:
        return (self.reasoning_prefix if reasoning else self.content_prefix) + quoted_text + self.content_suffix

    def tail(self, reason: str, usage_prompt_tokens: int | None, tokens: int) -> bytes:
        usage = None
        if usage_prompt_tokens is not None:
            usage = {"input_tokens": usage_prompt_tokens, "output_tokens": tokens,
                     "total_tokens": usage_prompt_tokens + tokens}  # fmt: skip
        if reason == "length":
            extra = ',"incomplete_details":{"reason":"max_output_tokens"}'
            return self._event("response.incomplete", "incomplete", usage, extra)
        return self._event("response.completed", "completed", usage)

    def malformed(self) -> bytes:
        return self.content_prefix + b'"cut off\n\n'


def response_body(response_id: str, created: int, model: str, text: str, reason: str, prompt: int, out: int) -> bytes:
    """The stream=false answer: one Response object."""
    status = "incomplete" if reason == "length" else "completed"
    message = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}
    return json.dumps(
        {
            "id": response_id,
            "object": "response",
            "created_at": created,
            "status": status,
            "model": model,
            "output": [message],
            "usage": {"input_tokens": prompt, "output_tokens": out, "total_tokens": prompt + out},
        }
    ).encode()

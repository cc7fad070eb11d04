"""The OpenAI wire format as the simulator speaks it: request validation, error bodies, pre-built SSE events.

Events are assembled from per-response byte prefixes so that the hot path (one event per token per stream) only
concatenates bytes; the JSON stays exactly what ``json.dumps`` of the OpenAI chunk objects would give.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from engine.sim.model import SimConfig
from engine.sim.prefix_cache import NO_BLOCKS, PromptBlocks, prompt_blocks
from engine.sim.tokens import PromptError, count_chat_tokens, count_completion_tokens

# Fields of the OpenAI API; anything else (ignore_eos, min_tokens, ...) is an extension that strict servers reject.
_COMMON_FIELDS = frozenset(
    {
        "model", "stream", "stream_options", "max_tokens", "temperature", "top_p", "n", "stop", "presence_penalty",
        "frequency_penalty", "logit_bias", "logprobs", "user", "seed",
    }
)  # fmt: skip
CHAT_FIELDS = _COMMON_FIELDS | {
    "messages", "max_completion_tokens", "top_logprobs", "response_format", "tools", "tool_choice",
    "parallel_tool_calls", "metadata", "store", "service_tier", "modalities", "reasoning_effort", "prediction",
}  # fmt: skip
COMPLETION_FIELDS = _COMMON_FIELDS | {"prompt", "suffix", "echo", "best_of"}

DONE_EVENT = b"data: [DONE]\n\n"


class ApiError(Exception):
    """An error answer in the OpenAI shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(
        self, status: int, message: str, type_: str, param: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param
        self.headers = headers or {}

    def body(self) -> bytes:
        return json.dumps(
            {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.status}}
        ).encode()


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """A validated /v1/chat/completions or /v1/completions request, reduced to what the simulation needs."""

    chat: bool
    model: str
    stream: bool
    include_usage: bool
    prompt_tokens: int
    max_tokens: int
    min_tokens: int
    ignore_eos: bool
    blocks: PromptBlocks = NO_BLOCKS  # prefix-cache keys of the prompt (engine/sim/prefix_cache.py)


def _bad(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, "BadRequestError", param)


def _int_field(body: dict[str, Any], name: str, minimum: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise _bad(f"'{name}' must be an integer >= {minimum}", name)
    return value


def parse_request(raw: bytes, chat: bool, cfg: SimConfig) -> CompletionRequest:
    """Validate a request body like vLLM does; raises ApiError (400, 404, 422) for what vLLM would refuse."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(f"invalid JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object")
    if cfg.strict_fields:
        unknown = sorted(set(body) - (CHAT_FIELDS if chat else COMPLETION_FIELDS))
        if unknown:
            raise ApiError(422, f"Extra inputs are not permitted: {', '.join(unknown)}", "extra_forbidden", unknown[0])
    model = body.get("model", cfg.model)
    if model != cfg.model:
        raise ApiError(404, f"The model `{model}` does not exist.", "NotFoundError", "model")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _bad("'stream' must be a boolean", "stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _bad("'stream_options' must be an object", "stream_options")
    include_usage = bool(options and options.get("include_usage"))
    n = _int_field(body, "n", 1)
    if n not in (None, 1):
        raise _bad("the simulator serves n=1 only", "n")
    try:
        prompt_tokens = count_chat_tokens(body.get("messages")) if chat else count_completion_tokens(body.get("prompt"))
    except PromptError as exc:
        raise _bad(str(exc), "messages" if chat else "prompt") from None
    max_tokens = _int_field(body, "max_completion_tokens", 1) if chat else None
    if max_tokens is None:
        max_tokens = _int_field(body, "max_tokens", 1)
    if prompt_tokens >= cfg.max_model_len or (
        max_tokens is not None and prompt_tokens + max_tokens > cfg.max_model_len
    ):
        asked = prompt_tokens + (max_tokens or 0)
        raise _bad(
            f"This model's maximum context length is {cfg.max_model_len} tokens. However, you requested {asked} "
            f"tokens ({prompt_tokens} in the messages, {max_tokens or 0} in the completion). Please reduce the "
            "length of the messages or completion.",
            "messages" if chat else "prompt",
        )
    if max_tokens is None:  # vLLM's default: whatever the context window leaves
        max_tokens = cfg.max_model_len - prompt_tokens
    if prompt_tokens + max_tokens > cfg.kv_capacity_tokens:
        raise _bad(
            f"prompt + max_tokens ({prompt_tokens + max_tokens}) exceeds the KV cache ({cfg.kv_capacity_tokens})",
            "max_tokens",
        )
    min_tokens = _int_field(body, "min_tokens", 0) or 0
    ignore_eos = body.get("ignore_eos", False)
    if not isinstance(ignore_eos, bool):
        raise _bad("'ignore_eos' must be a boolean", "ignore_eos")
    blocks = prompt_blocks(body.get("messages"), body.get("prompt")) if cfg.prefix_cache_tokens else NO_BLOCKS
    return CompletionRequest(
        chat, model, stream, include_usage, prompt_tokens, max_tokens, min_tokens, ignore_eos, blocks
    )


class ResponseFrames:
    """The SSE events of one streamed response, with everything but the token text prepared once."""

    __slots__ = ("_head", "chat", "content_prefix", "content_suffix", "reasoning_prefix", "role")

    def __init__(self, response_id: str, created: int, model: str, chat: bool) -> None:
        self.chat = chat
        obj = "chat.completion.chunk" if chat else "text_completion"
        self._head = f'data: {{"id":"{response_id}","object":"{obj}","created":{created},"model":{json.dumps(model)}'
        head = self._head.encode()
        if chat:
            self.content_prefix = head + b',"choices":[{"index":0,"delta":{"content":'
            self.reasoning_prefix = head + b',"choices":[{"index":0,"delta":{"reasoning_content":'
            self.content_suffix = b'},"logprobs":null,"finish_reason":null}]}\n\n'
            self.role: bytes | None = (
                head + b',"choices":[{"index":0,"delta":{"role":"assistant","content":""},'
                b'"logprobs":null,"finish_reason":null}]}\n\n'
            )
        else:
            self.content_prefix = head + b',"choices":[{"index":0,"text":'
            self.reasoning_prefix = self.content_prefix  # completions carry no reasoning
            self.content_suffix = b',"logprobs":null,"finish_reason":null}]}\n\n'
            self.role = None

    def content(self, quoted_text: bytes, reasoning: bool = False) -> bytes:
        return (self.reasoning_prefix if reasoning else self.content_prefix) + quoted_text + self.content_suffix

    def finish(self, reason: str) -> bytes:
        delta = '"delta":{}' if self.chat else '"text":""'
        return (
            f'{self._head},"choices":[{{"index":0,{delta},"logprobs":null,"finish_reason":"{reason}"}}]}}\n\n'.encode()
        )

    def usage(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        usage = usage_dict(prompt_tokens, completion_tokens)
        return f'{self._head},"choices":[],"usage":{json.dumps(usage, separators=(",", ":"))}}}\n\n'.encode()

    def tail(self, reason: str, usage_prompt_tokens: int | None, tokens: int) -> bytes:
        """What ends the stream: the finish chunk, the usage chunk (when asked for) and [DONE]."""
        tail = self.finish(reason)
        if usage_prompt_tokens is not None:
            tail += self.usage(usage_prompt_tokens, tokens)
        return tail + DONE_EVENT

    def malformed(self) -> bytes:
        """A chunk cut off mid-object: valid SSE framing, invalid JSON."""
        return (self._head + ',"choices":[{"index":0,"delta":{"content":"\n\n').encode()


def usage_dict(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion_body(
    response_id: str, created: int, model: str, chat: bool, text: str, reason: str, prompt_tokens: int, tokens: int
) -> bytes:
    """The stream=false answer: one JSON object with the whole text and usage."""
    if chat:
        choice: dict[str, object] = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": None,
            "finish_reason": reason,
        }
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
        obj = "text_completion"
    return json.dumps(
        {
            "id": response_id,
            "object": obj,
            "created": created,
            "model": model,
            "choices": [choice],
            "usage": usage_dict(prompt_tokens, tokens),
        }
    ).encode()

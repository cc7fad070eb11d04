"""Server-sent events of an OpenAI-style stream, parsed straight from the raw bytes as they arrive.

This is the client's hot path (tens of thousands of chunks per second per process), so it avoids work:

- Events are cut with one ``bytes.split(b"\\n\\n")`` per read; every event completed by a read gets that read's
  arrival stamp (the bytes arrived together, so they share it).
- ``json.loads`` runs only where it must. The first content chunk of a stream is parsed fully; its raw bytes then
  serve as a *template*: a later payload that is byte-identical except for the content string (same prefix,
  same suffix, and a middle that is one plain JSON string: quotes only at its ends, no escapes) is the same kind
  of chunk with new, non-empty content, so it is counted without parsing. Anything else (role chunks, finish
  chunks, usage, errors, escaped text, a server whose ``created`` ticks over) takes the full parse, which also
  re-learns the template. The final usage chunk is therefore always parsed.

Errors are recorded as ``(ErrorClass, one-line detail)`` and stop the parse; the client ends the request.

Nothing a server sends is believed unchecked, and every check sits off the per-chunk path: usage counts must be
integers in ``[0, MAX_USAGE_TOKENS]`` (else ``usage_rejected`` says why and the counts stay unknown), a response
id longer than ``MAX_ID_CHARS`` is dropped, and an event that grows past ``MAX_EVENT_BYTES`` without its blank
line fails the request instead of the worker's memory.
"""

from __future__ import annotations

import json
from typing import Any

from engine.records import ErrorClass

DONE = b"[DONE]"
MAX_USAGE_TOKENS = 10_000_000  # per request: above any model's context window; beyond it a count is not a count
MAX_ID_CHARS = 200
MAX_EVENT_BYTES = 1 << 20  # one SSE event; OpenAI-style chunks are a few hundred bytes
_CONTENT_KEYS = ("content", "reasoning_content", "reasoning")
_RESPONSES_PREFIXES = ("response.", "error")
_RESPONSES_TEXT = frozenset({"response.output_text.delta"})
_RESPONSES_REASONING = frozenset({"response.reasoning_text.delta", "response.reasoning_summary_text.delta"})
_QUOTE = 34
_BACKSLASH = 92
_DETAIL_BYTES = 80


class StreamParser:
    """Parses one response stream; read the results from its attributes when the stream ends."""

    __slots__ = (
        "_buf",
        "_event_prefix",
        "_event_suffix",
        "_le",
        "_lp",
        "_ls",
        "_prefix",
        "_reasoning",
        "_suffix",
        "chunks",
        "completion_tokens",
        "done",
        "error",
        "finished",
        "first_ns",
        "first_output_ns",
        "prompt_tokens",
        "reasoning_chunks",
        "response_id",
        "text",
        "times",
        "usage_rejected",
    )

    def __init__(self, keep_times: bool = True, text: list[str] | None = None) -> None:
        self._buf = b""
        self._prefix: bytes | None = None
        self._suffix = b""
        self._lp = 0
        self._ls = 0
        self._event_prefix: bytes | None = None  # b"data: " + prefix, when a whole read can be matched at once
        self._event_suffix = b""
        self._le = 0
        self._reasoning = False  # the learnt template is a reasoning chunk (its matches count as reasoning)
        self.chunks = 0  # content chunks (non-empty content or reasoning content)
        self.first_ns: int | None = None  # first chunk of any content, reasoning included (TTFT)
        self.first_output_ns: int | None = None  # first chunk of the answer itself, after any reasoning (TTFO)
        self.reasoning_chunks = 0  # chunks that carried reasoning content (counted in ``chunks`` too)
        self.times: list[int] | None = [] if keep_times else None
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None
        self.response_id: str | None = None
        self.finished = False  # a choice carried a finish_reason
        self.done = False  # "data: [DONE]" arrived
        self.error: tuple[ErrorClass, str] | None = None
        self.usage_rejected = ""  # why the server's usage was not believed (then both counts stay None)
        self.text = text  # when given, the answer's text pieces are appended (multi-turn sessions need it)

    @property
    def complete(self) -> bool:
        """The stream ended the way a healthy stream ends ([DONE] or a finish_reason)."""
        return self.done or self.finished

    def feed(self, data: bytes, t_ns: int) -> int:
        """Take the bytes of one read, stamped ``t_ns`` on arrival; returns the content chunks they completed."""
        head = self._event_prefix
        if head is not None and not self._buf and data.startswith(head) and data.endswith(self._event_suffix):
            # The commonest read of all: exactly one event, a template chunk ("data: " + prefix + a plain JSON
            # string + suffix + blank line, no line break inside), counted without splitting (issue 17's profile).
            middle = data[self._le : len(data) - self._ls - 2]
            if (
                len(middle) > 2
                and middle[0] == _QUOTE
                and middle[-1] == _QUOTE
                and middle.count(b'"') == 2
                and _BACKSLASH not in middle
                and b"\n" not in middle
                and b"\r" not in middle
            ):
                self.chunks += 1
                if self.times is not None:
                    self.times.append(t_ns)
                if self._reasoning:
                    self.reasoning_chunks += 1
                elif self.text is not None:
                    self.text.append(json.loads(middle))
                return 1
        buf = self._buf + data if self._buf else data
        if b"\r" in buf:
            buf = _normalize_newlines(buf)
        if b"\n\n" not in buf:
            self._buf = buf
            if len(buf) > MAX_EVENT_BYTES:
                self._too_long()
            return 0
        events = buf.split(b"\n\n")
        rest = self._buf = events.pop()
        if rest and len(rest) > MAX_EVENT_BYTES:  # usually b"": reads end where events end
            self._too_long()
            return 0
        before = self.chunks
        prefix = self._prefix
        payload: bytes | None
        for event in events:
            if event[:6] == b"data: " and b"\n" not in event:
                payload = event[6:]
            else:
                joined = _data_of(event)
                if joined is None:
                    continue  # a comment, a keep-alive or an event without data
                payload = joined
            if prefix is not None and payload.startswith(prefix) and payload.endswith(self._suffix):
                middle = payload[self._lp : len(payload) - self._ls]
                if (
                    len(middle) > 2
                    and middle[0] == _QUOTE
                    and middle[-1] == _QUOTE
                    and middle.count(b'"') == 2
                    and _BACKSLASH not in middle
                ):
                    self.chunks += 1
                    if self.times is not None:
                        self.times.append(t_ns)
                    if self._reasoning:
                        self.reasoning_chunks += 1
                    elif self.text is not None:
                        self.text.append(json.loads(middle))
                    continue
            self._parse(payload, t_ns)
            if self.error is not None:
                break
            prefix = self._prefix
        return self.chunks - before

    def _parse(self, payload: bytes, t_ns: int) -> None:
        """The full parse of one event's data: the slow path, also the only one that can find errors."""
        if payload == DONE:
            self.done = True
            return
        try:
            obj = json.loads(payload)
        except ValueError:
            self._fail(ErrorClass.MALFORMED, f"invalid JSON in the stream: {_snippet(payload)}")
            return
        if not isinstance(obj, dict):
            self._fail(ErrorClass.MALFORMED, f"a stream chunk is not a JSON object: {_snippet(payload)}")
            return
        if obj.get("error"):
            self._fail(*_stream_error(obj["error"]))
            return
        kind = obj.get("type")
        if isinstance(kind, str) and kind.startswith(_RESPONSES_PREFIXES):
            self._parse_response_event(obj, kind, payload, t_ns)
            return
        if self.response_id is None and isinstance(obj.get("id"), str) and len(obj["id"]) <= MAX_ID_CHARS:
            self.response_id = obj["id"]
        usage = obj.get("usage")
        if usage is not None and not self._take_usage(usage):
            return
        choices = obj.get("choices")
        if choices is None:
            if usage is None:
                self._fail(ErrorClass.MALFORMED, f"a stream chunk has neither choices nor usage: {_snippet(payload)}")
            return
        if not isinstance(choices, list) or (choices and not isinstance(choices[0], dict)):
            self._fail(ErrorClass.MALFORMED, f"'choices' is not a list of objects: {_snippet(payload)}")
            return
        if not choices:
            return
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finished = True
        text, reasoning = self._content_of(choice, payload)
        if text:
            self._content(text, t_ns, reasoning)
            self._learn(payload, text, reasoning)

    def _content(self, text: str, t_ns: int, reasoning: bool) -> None:
        self.chunks += 1
        if self.first_ns is None:
            self.first_ns = t_ns
        if self.times is not None:
            self.times.append(t_ns)
        if reasoning:
            self.reasoning_chunks += 1
        else:
            if self.first_output_ns is None:
                self.first_output_ns = t_ns
            if self.text is not None:
                self.text.append(text)

    def _parse_response_event(self, obj: dict[str, Any], kind: str, payload: bytes, t_ns: int) -> None:
        """The Responses API (``POST /v1/responses``): typed events; text in ``response.output_text.delta``
        (reasoning in ``response.reasoning*.delta``, which counts for the first token as reasoning_content does),
        usage and the end in ``response.completed`` (or ``response.incomplete`` when max_output_tokens cut it)."""
        if kind in _RESPONSES_TEXT or kind in _RESPONSES_REASONING:
            delta = obj.get("delta")
            if not isinstance(delta, str):
                self._fail(ErrorClass.MALFORMED, f"a delta event without a string delta: {_snippet(payload)}")
                return
            if delta:
                reasoning = kind in _RESPONSES_REASONING
                self._content(delta, t_ns, reasoning)
                self._learn(payload, delta, reasoning)
            return
        response = obj.get("response")
        if isinstance(response, dict) and self.response_id is None and isinstance(response.get("id"), str):
            self.response_id = response["id"]
        if kind in ("response.completed", "response.incomplete"):
            usage = response.get("usage") if isinstance(response, dict) else None
            if usage is not None:
                if not isinstance(usage, dict):
                    self._fail(ErrorClass.MALFORMED, "'usage' is not an object")
                    return
                self._take_usage({"prompt_tokens": usage.get("input_tokens"),
                                  "completion_tokens": usage.get("output_tokens")})  # fmt: skip
            self.finished = True
        elif kind == "response.failed":
            error = response.get("error") if isinstance(response, dict) else None
            self._fail(*_stream_error(error or "response.failed"))

    def _content_of(self, choice: dict[str, Any], payload: bytes) -> tuple[str | None, bool]:
        """The chunk's text and whether it is reasoning (``reasoning_content``/``reasoning``, as vLLM, SGLang and
        DeepSeek send it before the answer) rather than the answer's ``content``."""
        delta = choice.get("delta")
        key = "content"
        if delta is None:
            value = choice.get("text")
        elif isinstance(delta, dict):
            key, value = next(((k, v) for k in _CONTENT_KEYS if (v := delta.get(k))), ("content", None))
        else:
            self._fail(ErrorClass.MALFORMED, f"'delta' is not an object: {_snippet(payload)}")
            return None, False
        if value is not None and not isinstance(value, str):
            self._fail(ErrorClass.MALFORMED, f"chunk content is not a string: {_snippet(payload)}")
            return None, False
        return value, key != "content"

    def _take_usage(self, usage: object) -> bool:
        if not isinstance(usage, dict):
            self._fail(ErrorClass.MALFORMED, "'usage' is not an object")
            return False
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        why = _bad_count("prompt_tokens", prompt) or _bad_count("completion_tokens", completion)
        if why:  # one bad number discredits the whole usage object: neither count is used
            self.usage_rejected = why
            self.prompt_tokens = self.completion_tokens = None
            return True
        if prompt is not None:
            self.prompt_tokens = prompt
        if completion is not None:
            self.completion_tokens = completion
        return True

    def _learn(self, payload: bytes, text: str, reasoning: bool) -> None:
        """Remember this chunk's bytes around its content string, so identical chunks skip ``json.loads``; a
        template learnt from a reasoning chunk matches only reasoning chunks (the key is part of its prefix)."""
        self._prefix = self._event_prefix = None
        self._reasoning = reasoning
        for encoded in (json.dumps(text).encode(), json.dumps(text, ensure_ascii=False).encode()):
            at = payload.find(encoded)
            if at > 0 and payload.find(encoded, at + 1) < 0 and payload[:at].rstrip().endswith(b":"):
                self._prefix, self._suffix = payload[:at], payload[at + len(encoded) :]
                self._lp, self._ls = at, len(self._suffix)
                single_line = not any(c in self._prefix + self._suffix for c in (b"\n", b"\r"))
                self._event_prefix = b"data: " + self._prefix if single_line else None
                self._event_suffix = self._suffix + b"\n\n"
                self._le = at + 6
                return

    def _too_long(self) -> None:
        self._buf = b""
        self._fail(ErrorClass.MALFORMED, f"an event of the stream grew past {MAX_EVENT_BYTES >> 20} MiB without ending")

    def _fail(self, cls: ErrorClass, detail: str) -> None:
        if self.error is None:
            self.error = (cls, detail)

    def finish(self, t_ns: int) -> None:
        """The body ended at ``t_ns``: a last event without its blank line still counts (some servers omit it)."""
        rest, self._buf = self._buf.strip(), b""
        if rest and self.error is None:
            payload = _data_of(rest)
            if payload is not None:
                self._parse(payload, t_ns)


def _bad_count(name: str, value: object) -> str:
    """Why ``value`` cannot be a token count ("" when it can, or when it is absent)."""
    if value is None:
        return ""
    if type(value) is not int:  # bool, float, str, NaN/Infinity (json.loads gives floats for those)
        return f"usage.{name} is not an integer ({one_line(repr(value), 40)})"
    if value < 0:
        return f"usage.{name} is negative ({value})"
    if value > MAX_USAGE_TOKENS:
        return f"usage.{name} is absurd ({value:.3g} tokens for one request)"
    return ""


def _normalize_newlines(buf: bytes) -> bytes:
    """CRLF and CR line ends become LF (the SSE spec allows all three); a trailing CR waits for its LF."""
    if buf.endswith(b"\r"):
        return buf[:-1].replace(b"\r\n", b"\n").replace(b"\r", b"\n") + b"\r"
    return buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def _data_of(event: bytes) -> bytes | None:
    """The data of a general SSE event: its ``data:`` lines joined by LF; None when it has none."""
    lines = [line[5:] for line in event.split(b"\n") if line.startswith(b"data:")]
    if not lines:
        return None
    return b"\n".join(line[1:] if line[:1] == b" " else line for line in lines)


def _stream_error(error: object) -> tuple[ErrorClass, str]:
    """An error object sent inside a 200 stream (vLLM does this): classify by its code, default server error."""
    message, code = str(error), None
    if isinstance(error, dict):
        message = str(error.get("message") or error)
        raw = error.get("code")
        code = raw if isinstance(raw, int) else None
    if code == 429:
        cls = ErrorClass.HTTP_429
    elif code is not None and 400 <= code < 500:
        cls = ErrorClass.HTTP_4XX
    else:
        cls = ErrorClass.HTTP_5XX
    return cls, one_line(f"error in the stream: {message}")


def _snippet(payload: bytes) -> str:
    text = payload[:_DETAIL_BYTES].decode("utf-8", "replace")
    return one_line(text + ("..." if len(payload) > _DETAIL_BYTES else ""))


def one_line(text: str, limit: int = 200) -> str:
    """Collapse whitespace so a detail is exactly one line, and keep it short."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."

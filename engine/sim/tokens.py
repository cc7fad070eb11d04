"""The simulator's pseudo-tokenizer and its output text.

A real tokenizer would make the simulator slow and pull in model files; a word count would let a client get exact
input lengths without calibrating. This rule is cheap, deterministic and deliberately unlike words, so a client
that needs exact prompt lengths must calibrate from ``usage.prompt_tokens`` as it would against a real server:

* text: one token per match of ``\\w{1,4}|[^\\w\\s]`` (runs of up to 4 word characters, or one punctuation mark);
  whitespace is free. "Hello, world!" -> Hell|o|,|worl|d|! = 6 tokens.
* /v1/completions: 1 (BOS) + tokens(prompt); a prompt given as token ids counts one per id.
* /v1/chat/completions: 1 (BOS) + sum over messages of (5 + tokens(content)) + 4 (assistant header), like the
  Llama-3 chat template's per-message header and end tokens.

Output text is drawn from words of at most 4 letters with a leading space, so each output token is exactly one
token under the same rule: re-tokenizing a response gives its ``usage.completion_tokens``.
"""

from __future__ import annotations

import json
import random
import re

_TOKEN_RE = re.compile(r"\w{1,4}|[^\w\s]")

BOS_TOKENS = 1
CHAT_MESSAGE_OVERHEAD = 5
CHAT_ASSISTANT_PRIMER = 4


def count_text_tokens(text: str) -> int:
    """Pseudo-tokens in a piece of text (see the module docstring)."""
    return len(_TOKEN_RE.findall(text))


class PromptError(ValueError):
    """The prompt or messages field has a shape the simulator cannot count."""


def _content_tokens(content: object) -> int:
    if content is None:
        return 0
    if isinstance(content, str):
        return count_text_tokens(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            if not isinstance(part, dict):
                raise PromptError("each content part must be an object")
            text = part.get("text")
            if isinstance(text, str):
                total += count_text_tokens(text)
        return total
    raise PromptError("message content must be a string or a list of parts")


def count_chat_tokens(messages: object) -> int:
    """Prompt tokens of a chat request, template overhead included."""
    if not isinstance(messages, list) or not messages:
        raise PromptError("'messages' must be a non-empty list")
    total = BOS_TOKENS + CHAT_ASSISTANT_PRIMER
    for message in messages:
        if not isinstance(message, dict):
            raise PromptError("each message must be an object")
        total += CHAT_MESSAGE_OVERHEAD + _content_tokens(message.get("content"))
    return total


def count_completion_tokens(prompt: object) -> int:
    """Prompt tokens of a completions request: a string, token ids, or a one-element list of either."""
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str | list):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return BOS_TOKENS + count_text_tokens(prompt)
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        return len(prompt)
    raise PromptError("'prompt' must be a string or a list of token ids (batched prompts are not supported)")


_WORDS = (
    "the of and a to in is it was for on are with as his they at be this have from or one had by word but not "
    "what all were we when your can said use an each she do how if will up out many then them so "
    "some her make like him into time has look two more go see way been call who oil its now find long down day "
    "did get come made may part over new take only work know year live me back give most very "
    "our just name good man say help low line turn much mean move same tell does set want air well also "
    "play home read hand port even land here must big high such act why ask men went kind off need "
).split()
assert all(len(w) <= 4 for w in _WORDS), "output words must be single pseudo-tokens"

CYCLE_LEN = 4096


class OutputText:
    """A seeded cycle of output tokens, pre-encoded so the hot path only indexes and joins bytes."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed ^ 0x5EED_7E47)
        words = [" " + w for w in _WORDS]
        self.text: list[str] = [rng.choice(words) for _ in range(CYCLE_LEN)]
        self.raw: list[bytes] = [t.encode() for t in self.text]  # JSON-safe as-is: letters and a space
        self.quoted: list[bytes] = [json.dumps(t).encode() for t in self.text]

    def join_quoted(self, start: int, count: int) -> bytes:
        """``count`` tokens from cycle position ``start`` as one JSON string literal."""
        if count == 1:
            return self.quoted[start % CYCLE_LEN]
        raw = self.raw
        return b'"' + b"".join(raw[(start + i) % CYCLE_LEN] for i in range(count)) + b'"'

    def join_text(self, start: int, count: int) -> str:
        text = self.text
        return "".join(text[(start + i) % CYCLE_LEN] for i in range(count))

"""Automatic prefix caching, as vLLM does it: a prompt whose leading blocks were prefilled recently skips them.

The prompt's text (chat messages with their roles, or the completions prompt) is cut into blocks of
``BLOCK_CHARS`` characters (~32 pseudo-tokens); block k's key hashes its text together with block k-1's key, so a
key stands for the whole prefix up to it (two prompts share a key only if everything before it is identical).
Characters rather than tokens keep this to a few string hashes per request (tokenizing again would double the
simulator's per-request parsing); the cached token count is the prompt's tokens times the cached share of its
characters. The cache is an LRU of keys bounded in tokens; a request admitted with a cached prefix starts its
prefill after it (always leaving at least one token to compute, as vLLM does), so its TTFT falls by what those
tokens would have cost. Blocks are cached once the request's prefill is done.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

BLOCK_CHARS = 128
_TOKENS_PER_BLOCK = 32  # for sizing the LRU: roughly what BLOCK_CHARS of prompt text holds


@dataclass(frozen=True, slots=True)
class PromptBlocks:
    """A prompt's chained block keys and its length in characters."""

    keys: tuple[int, ...] = ()
    chars: int = 0


NO_BLOCKS = PromptBlocks()


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def prompt_blocks(messages: object = None, prompt: object = None) -> PromptBlocks:
    """The chained keys of a prompt's full blocks (chat messages with their roles, or completions text)."""
    if isinstance(messages, list):
        text = "".join(f"<|{m.get('role')}|>{_text_of(m.get('content'))}" for m in messages if isinstance(m, dict))
    elif isinstance(prompt, str):
        text = prompt
    elif isinstance(prompt, list):
        text = ",".join(map(str, prompt))
    else:
        return NO_BLOCKS
    keys: list[int] = []
    key = 0
    for i in range(0, len(text) - BLOCK_CHARS + 1, BLOCK_CHARS):
        key = hash((key, text[i : i + BLOCK_CHARS]))
        keys.append(key)
    return PromptBlocks(tuple(keys), len(text))


class PrefixCache:
    """LRU of prefix-block keys, at most ``capacity_tokens`` worth; counts queries and hits in tokens (vLLM's
    ``prefix_cache_queries`` and ``prefix_cache_hits``)."""

    def __init__(self, capacity_tokens: int) -> None:
        self._blocks: OrderedDict[int, None] = OrderedDict()
        self._capacity = capacity_tokens // _TOKENS_PER_BLOCK
        self.queries_tokens = 0
        self.hits_tokens = 0

    def lookup(self, blocks: PromptBlocks, prompt_tokens: int) -> int:
        """Tokens of the prompt's prefix that are cached (at most prompt_tokens - 1)."""
        hit = 0
        if self._capacity > 0:
            for key in blocks.keys:
                if key not in self._blocks:
                    break
                self._blocks.move_to_end(key)
                hit += 1
        cached = 0
        if hit and blocks.chars:
            cached = min(prompt_tokens * hit * BLOCK_CHARS // blocks.chars, max(0, prompt_tokens - 1))
        self.queries_tokens += prompt_tokens
        self.hits_tokens += cached
        return cached

    def insert(self, blocks: PromptBlocks) -> None:
        if self._capacity <= 0:
            return
        cache = self._blocks
        for key in blocks.keys:
            cache[key] = None
            cache.move_to_end(key)
        while len(cache) > self._capacity:
            cache.popitem(last=False)

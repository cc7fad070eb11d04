"""Automatic prefix caching, as vLLM does it: a prompt whose leading blocks were prefilled recently skips them.

A prompt is cut into blocks of ``BLOCK_TOKENS`` pseudo-tokens; block k's key hashes block k's tokens together with
block k-1's key, so a key stands for the whole prefix up to it (two prompts share a key only if everything before
it is identical). The cache is an LRU of keys bounded in tokens; a request admitted with its first n blocks cached
starts its prefill at n * BLOCK_TOKENS (always leaving at least one token to compute, as vLLM does), so its TTFT
falls by what those tokens would have cost. Only blocks that were fully prefilled are cached.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from engine.sim.tokens import TOKEN_RE

BLOCK_TOKENS = 32


def _tokens_of(content: object) -> list[str]:
    if isinstance(content, str):
        return TOKEN_RE.findall(content)
    if isinstance(content, list):
        out: list[str] = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                out += TOKEN_RE.findall(part["text"])
        return out
    return []


def prompt_blocks(messages: object = None, prompt: object = None) -> tuple[int, ...]:
    """The chained keys of a prompt's full blocks (chat messages with their roles, or completions text)."""
    tokens: list[str] = []
    if isinstance(messages, list):
        for m in messages:
            if isinstance(m, dict):
                tokens.append(f"<|{m.get('role')}|>")
                tokens += _tokens_of(m.get("content"))
    elif isinstance(prompt, str):
        tokens = TOKEN_RE.findall(prompt)
    elif isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        tokens = [str(t) for t in prompt]
    keys: list[int] = []
    key = 0
    for i in range(0, len(tokens) - BLOCK_TOKENS + 1, BLOCK_TOKENS):
        key = hash((key, *tokens[i : i + BLOCK_TOKENS]))
        keys.append(key)
    return tuple(keys)


class PrefixCache:
    """LRU of prefix-block keys, at most ``capacity_tokens`` worth; counts queries and hits in tokens (vLLM's
    ``prefix_cache_queries`` and ``prefix_cache_hits``)."""

    def __init__(self, capacity_tokens: int) -> None:
        self._blocks: OrderedDict[int, None] = OrderedDict()
        self._capacity = capacity_tokens // BLOCK_TOKENS
        self.queries_tokens = 0
        self.hits_tokens = 0

    def lookup(self, keys: Iterable[int], prompt_tokens: int) -> int:
        """Tokens of the prompt's prefix that are cached (at most prompt_tokens - 1)."""
        hit = 0
        if self._capacity > 0:
            for key in keys:
                if key not in self._blocks:
                    break
                self._blocks.move_to_end(key)
                hit += 1
        cached = min(hit * BLOCK_TOKENS, max(0, prompt_tokens - 1))
        self.queries_tokens += prompt_tokens
        self.hits_tokens += cached
        return cached

    def insert(self, keys: Iterable[int]) -> None:
        if self._capacity <= 0:
            return
        blocks = self._blocks
        for key in keys:
            blocks[key] = None
            blocks.move_to_end(key)
        while len(blocks) > self._capacity:
            blocks.popitem(last=False)

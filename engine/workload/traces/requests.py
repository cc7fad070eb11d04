"""Trace rows as requests: lengths hit through the calibrated token model, ``hash_ids`` blocks as shared text.

A Mooncake or Bailian row lists one id per 512-token block of its prompt; rows that share an id shared that block
in production. Each id maps to its own fixed run of random vocabulary words (seeded by the id), sized by the
calibrated tokens per word, so two prompts whose ``hash_ids`` start alike start with identical text and a prefix
cache sees the hits production saw. Words past the listed blocks are drawn from the row's own RNG.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.workload.calibration import TokenModel
from engine.workload.prompts import VOCABULARY
from engine.workload.synthetic import Api, RequestSpec
from engine.workload.traces.detect import TraceSource, TraceStart
from engine.workload.traces.rows import BLOCK_TOKENS, TraceRow, TraceWindow


@functools.lru_cache(maxsize=8192)
def block_words(seed: int, hash_id: int, words: int) -> tuple[str, ...]:
    """The text of block ``hash_id``: the same words for the same id, in every request and every worker."""
    return tuple(random.Random(f"block:{seed}:{hash_id}").choices(VOCABULARY, k=words))


def prompt_words(row: TraceRow, model: TokenModel, seed: int, body_tokens: int | None = None) -> list[str]:
    """The body words of a row's prompt: its blocks first, then the row's own filler words."""
    total = model.words_for(row.input_tokens if body_tokens is None else body_tokens)
    per_block = max(1, round(BLOCK_TOKENS / model.tokens_per_word))
    words: list[str] = []
    for hash_id in row.hash_ids:
        if len(words) >= total:
            break
        words.extend(block_words(seed, hash_id, per_block))
    del words[total:]
    if len(words) < total:
        words.extend(random.Random(f"row:{seed}:{row.row}").choices(VOCABULARY, k=total - len(words)))
    return words


def api_fields(api: Api, messages: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    """A conversation as the body fields of ``api``: chat and responses send messages, completions one text."""
    if api == "completions":
        if len(messages) == 1 and messages[0]["role"] == "user":
            return {"prompt": messages[0]["content"]}
        return {"prompt": "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)}
    return {"messages": [dict(m) for m in messages]}


@dataclass(frozen=True, slots=True)
class TraceFactory:
    """Request specs for the rows of a trace; plain data, pickled into each worker (which streams the file itself).

    Worker ``i`` of ``n`` replays rows ``i, i + n, ...`` of the trace; conversations (session traces) all go to
    worker 0, which alone can hold each conversation's earlier answers.
    """

    source: TraceSource
    token_model: TokenModel
    api: Api = "chat"
    seed: int = 0
    window: TraceWindow = field(default_factory=TraceWindow)
    max_context: int | None = None
    start: TraceStart | None = None
    """Where the window's first row is in the file (found by the validating pass): workers seek there."""

    @property
    def start_t(self) -> float:
        return self.window.start_s

    def timeline(self, worker: int, workers: int) -> Iterator[TraceRow]:
        if self.source.sessions:
            if worker == 0:
                yield from self.source.rows(self.window, self.max_context, start=self.start)
            return
        for i, row in enumerate(self.source.rows(self.window, self.max_context, start=self.start)):
            if i % workers == worker:
                yield row

    def spec_for(
        self, row: TraceRow, history: Sequence[Mapping[str, str]] = (), history_tokens: int = 0
    ) -> RequestSpec:
        """The request of one row. ``history`` is the conversation so far (answers included) for a later turn;
        then only the new user turn is synthesised, sized to what the row's input length leaves."""
        if history:
            new_tokens = max(1, row.input_tokens - history_tokens)
            words = random.Random(f"turn:{self.seed}:{row.row}").choices(
                VOCABULARY, k=max(1, round(new_tokens / self.token_model.tokens_per_word))
            )
        else:
            words = prompt_words(row, self.token_model, self.seed)
        messages = [*history, {"role": "user", "content": " ".join(words)}]
        return RequestSpec(
            fields=api_fields(self.api, messages),
            max_tokens=max(1, row.output_tokens),
            input_tokens=row.input_tokens,
            extra={"trace_row": row.row, "turn": row.turn, "messages": tuple(messages)},
        )

    def make(self, seq: int, rng: random.Random) -> RequestSpec:
        """The closed-loop interface (``RequestFactory``): replays rows by number, cycling; the trace's clock is
        used only in rate mode (``TraceFeed``)."""
        raise NotImplementedError("a trace is replayed on its own clock (open loop), not by a closed loop")

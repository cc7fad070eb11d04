"""Multi-turn sessions: conversations where every turn sends the whole conversation so far.

A profile's ``[session]`` section makes each closed-loop slot a conversation instead of a request:

    [session]
    turns = 3                 # turns per conversation (a number or a distribution)
    input = 200               # tokens of each later user turn (turn 1 uses the profile's input)
    output = 128              # max_tokens of each later turn (turn 1 uses the profile's output)
    think_time_s = 1.0        # pause between an answer and the next user turn
    think_time_max_s = 3.0    # optional: uniform between think_time_s and this

Turn k's prompt holds turns 1..k-1 with the server's real answers (as a chat client or an agent loop would send
them), so the context grows turn by turn and a server with prefix caching computes only the new part: TTFT by
turn number shows the cache at work. ``--concurrency N`` keeps N conversations open; each turn is one request
(``--requests`` counts turns), labelled with its turn number for the per-turn figures.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.workload.prompts import VOCABULARY, ProfileRequestFactory
from engine.workload.session_shape import SessionShape
from engine.workload.synthetic import RequestSpec
from engine.workload.traces.requests import api_fields


@dataclass(frozen=True, slots=True)
class SessionFactory:
    """Conversations on top of a profile's (calibrated) factory; plain data, pickled into every worker."""

    base: ProfileRequestFactory
    shape: SessionShape

    def make(self, seq: int, rng: random.Random) -> RequestSpec:
        """Turn 1 (also what a caller that knows nothing of sessions gets)."""
        return self.base.make(seq, rng)

    def turn_count(self, rng: random.Random) -> int:
        return max(1, self.shape.turns.sample(rng))

    def think_s(self, rng: random.Random) -> float:
        low, high = self.shape.think_time_s, self.shape.think_time_max_s
        return low if high is None else rng.uniform(low, high)

    def opening(self, seq: int, rng: random.Random) -> tuple[RequestSpec, list[dict[str, str]]]:
        """Turn 1's request and the conversation it starts (as messages, whatever the API)."""
        spec = self.base.make(seq, rng)
        messages = spec.fields.get("messages")
        if messages is not None:
            return spec, [dict(m) for m in messages]
        return spec, [{"role": "user", "content": str(spec.fields.get("prompt", ""))}]

    def next_turn(
        self, messages: Sequence[Mapping[str, str]], history_tokens: int, turn: int, rng: random.Random
    ) -> tuple[RequestSpec, list[dict[str, str]]]:
        """Turn ``turn`` (>= 2): the conversation so far plus a new user message of the session's input length."""
        inp = self.shape.input or self.base.input
        out = self.shape.output or self.base.output
        new_tokens = inp.sample(rng)
        words = max(1, round(new_tokens / self.base.token_model.tokens_per_word))
        conversation = [dict(m) for m in messages]
        conversation.append({"role": "user", "content": " ".join(rng.choices(VOCABULARY, k=words))})
        fields: dict[str, Any] = api_fields(self.base.api, conversation)
        spec = RequestSpec(
            fields=fields,
            max_tokens=out.sample(rng),
            input_tokens=history_tokens + new_tokens,  # an estimate: the template adds a few tokens per message
            extra={"turn": turn},
        )
        return spec, conversation


def is_session_factory(factory: object) -> bool:
    return callable(getattr(factory, "next_turn", None)) and callable(getattr(factory, "opening", None))

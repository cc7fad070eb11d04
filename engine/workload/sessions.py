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
    script: tuple[tuple[tuple[str, int], ...], ...] | None = None
    """ShareGPT sessions: conversation ``(seq - 1) % len`` supplies each turn's user text and output length."""

    def make(self, seq: int, rng: random.Random) -> RequestSpec:
        """Turn 1 (also what a caller that knows nothing of sessions gets)."""
        return self.base.make(seq, rng)

    def _scripted(self, seq: int) -> tuple[tuple[str, int], ...] | None:
        return self.script[(seq - 1) % len(self.script)] if self.script else None  # conversations count from 1

    def turn_count(self, seq: int, rng: random.Random) -> int:
        scripted = self._scripted(seq)
        return len(scripted) if scripted is not None else max(1, self.shape.turns.sample(rng))

    def think_s(self, rng: random.Random) -> float:
        low, high = self.shape.think_time_s, self.shape.think_time_max_s
        return low if high is None else rng.uniform(low, high)

    def opening(self, seq: int, rng: random.Random) -> tuple[RequestSpec, list[dict[str, str]]]:
        """Turn 1's request and the conversation it starts (as messages, whatever the API)."""
        scripted = self._scripted(seq)
        if scripted is not None:
            messages = [{"role": "system", "content": self.base.system_prompt}] if self.base.system_prompt else []
            messages.append({"role": "user", "content": scripted[0][0]})
            spec = RequestSpec(fields=api_fields(self.base.api, messages), max_tokens=scripted[0][1],
                               input_tokens=round(self.base.token_model.tokens_for(len(scripted[0][0].split()))),
                               extra={"turn": 1})  # fmt: skip
            return spec, messages
        spec = self.base.make(seq, rng)
        sent = spec.fields.get("messages")
        if sent is not None:
            return spec, [dict(m) for m in sent]
        return spec, [{"role": "user", "content": str(spec.fields.get("prompt", ""))}]

    def next_turn(
        self, seq: int, messages: Sequence[Mapping[str, str]], history_tokens: int, turn: int, rng: random.Random
    ) -> tuple[RequestSpec, list[dict[str, str]]]:
        """Turn ``turn`` (>= 2): the conversation so far plus a new user message of the session's input length
        (or the script's next human turn)."""
        conversation = [dict(m) for m in messages]
        scripted = self._scripted(seq)
        if scripted is not None:
            text, max_tokens = scripted[min(turn, len(scripted)) - 1]
            new_tokens = round(self.base.token_model.tokens_per_word * len(text.split()))
        else:
            inp = self.shape.input or self.base.input
            out = self.shape.output or self.base.output
            new_tokens = inp.sample(rng)
            words = max(1, round(new_tokens / self.base.token_model.tokens_per_word))
            text, max_tokens = " ".join(rng.choices(VOCABULARY, k=words)), out.sample(rng)
        conversation.append({"role": "user", "content": text})
        fields: dict[str, Any] = api_fields(self.base.api, conversation)
        spec = RequestSpec(
            fields=fields,
            max_tokens=max_tokens,
            input_tokens=history_tokens + new_tokens,  # an estimate: the template adds a few tokens per message
            extra={"turn": turn},
        )
        return spec, conversation


def is_session_factory(factory: object) -> bool:
    return callable(getattr(factory, "next_turn", None)) and callable(getattr(factory, "opening", None))

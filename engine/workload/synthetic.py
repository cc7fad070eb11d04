"""What each request asks for: a small, picklable factory the worker processes call once per request.

The interface is deliberately tiny (``make(seq, rng) -> RequestSpec``) so workload profiles and input-length
calibration can replace the synthetic factory without touching the client or the workers. A factory is pickled
into every worker process, so it must hold only plain data (no open files, no clients).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from engine.records import RequestSpec

__all__ = ["Api", "RequestFactory", "RequestSpec", "SyntheticFactory", "request_rng"]

Api = Literal["chat", "completions", "responses"]

# Short common English words: most tokenizers map " word" to one token, so N words ~ N input tokens. The exact
# count comes from the server's usage; calibrating this guess per model is a workload-profile concern.
_WORDS = (
    "the of and to in is it you that he was for on are as with his they at be this have from or one had by word "
    "but not what all were we when your can said there use an each which she do how their if will up other about "
    "out many then them these so some her would make like him into time has look two more write go see number no "
    "way could people my than first water been call who oil its now find long down day did get come made may part"
).split()


@runtime_checkable
class RequestFactory(Protocol):
    """Makes request ``seq`` (unique per worker) from a per-request RNG, so runs are reproducible by seed."""

    def make(self, seq: int, rng: random.Random) -> RequestSpec: ...


def request_rng(seed: int, worker: int, seq: int) -> random.Random:
    """The RNG for one request: depends only on (run seed, worker, seq), never on timing or batching."""
    return random.Random((seed * 65_536 + worker) * 4_294_967_296 + seq)


@dataclass(frozen=True, slots=True)
class SyntheticFactory:
    """Random common words of a fixed length: no prefix is shared between requests, so no prefix-cache hits."""

    api: Api = "chat"
    input_tokens: int = 128
    max_tokens: int = 128

    def make(self, seq: int, rng: random.Random) -> RequestSpec:
        words = rng.choices(_WORDS, k=max(1, self.input_tokens - 1))
        text = f"{seq} " + " ".join(words)
        fields: dict[str, Any]
        if self.api != "completions":  # chat and responses send messages
            fields = {"messages": [{"role": "user", "content": text}]}
        else:
            fields = {"prompt": text}
        return RequestSpec(fields=fields, max_tokens=self.max_tokens, input_tokens=self.input_tokens)

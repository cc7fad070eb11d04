"""Input-length calibration: hit a target prompt length in the server's tokens without having its tokenizer.

Synthetic prompts are random words from a fixed vocabulary; the server counts tokens and says how many in every
response (``usage.prompt_tokens``). Calibration learns, from a few probe requests with ``max_tokens=1``:

    prompt_tokens = overhead + prefix_tokens + tokens_per_word * body_words

* ``tokens_per_word`` is the vocabulary's mean, measured exactly by the *doubling trick*: a chunk of words C sent
  once and twice in a row costs ``overhead + T(C)`` and ``overhead + 2 T(C)``, so ``T(C)`` is their difference,
  whatever the chat template adds. The chunks cover the vocabulary once, so the mean is the expectation of a
  random word, not a noisy sample of one prompt.
* ``overhead`` (template, system prompt) falls out of the same probes; each shared prefix's tokens are measured
  the same way.
* Then the loop that converges: batches of probes built for the target length, pooled; when their mean misses
  by more than the tolerance and more than the noise of random words (a tokenizer that is not additive across
  words), the ratio is rescaled by what they measured and a new pool starts.

Every run still reports its measured input length against the target, so a miss shows, never silently.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Sequence

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_TOKENS_PER_WORD = 1.3  # English text under BPE tokenizers; only a guess before any probe
DEFAULT_TOLERANCE = 0.01
VERIFY_PROBES = 8
MAX_VERIFY_PROBES = 32
MAX_CHUNK_WORDS = 64
MAX_CHUNKS = 12  # at most 2 + 2 * 12 probes for the vocabulary


class TokenModel(BaseModel):
    """Prompt tokens as a linear function of the body words we send; carried (pickled) by the request factory."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    overhead_tokens: float = 0.0
    """Tokens that do not come from our words: the chat template, BOS, the system prompt."""
    tokens_per_word: float = Field(default=DEFAULT_TOKENS_PER_WORD, gt=0)
    """Mean tokens of one random vocabulary word."""
    prefix_tokens: tuple[float, ...] = ()
    """Tokens of each shared-prefix group's text (empty: no shared prefix, or not measured yet)."""

    def prefix(self, group: int) -> float:
        return self.prefix_tokens[group % len(self.prefix_tokens)] if self.prefix_tokens else 0.0

    def words_for(self, target_tokens: float, group: int | None = None, rng: random.Random | None = None) -> int:
        """Body words to send so that the whole prompt counts ``target_tokens`` (at least one word).

        With ``rng`` the fraction is rounded at random (2.3 words: 2 or 3, 3 with chance 0.3), so when a word is
        worth two tokens and the target is odd, the *mean* still lands on the target instead of half a word off.
        """
        fixed = self.overhead_tokens + (self.prefix(group) if group is not None else 0.0)
        exact = (target_tokens - fixed) / self.tokens_per_word
        if rng is None:
            return max(1, round(exact))
        whole = math.floor(exact)
        return max(1, whole + (1 if rng.random() < exact - whole else 0))

    def tokens_for(self, words: int, group: int | None = None) -> float:
        fixed = self.overhead_tokens + (self.prefix(group) if group is not None else 0.0)
        return fixed + self.tokens_per_word * words


class CalibrationResult(BaseModel):
    """How the token model was found; stored with every result so the calibration itself can be checked."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: TokenModel
    target_tokens: float
    measured_tokens: float | None = None
    """Mean prompt_tokens of the last verification batch (built for the target)."""
    error_pct: float | None = None
    """(measured - target) / target of that batch, in percent."""
    probes: int = 0
    rounds: int = 0
    converged: bool = False
    message: str = ""


WordsProbe = Callable[[Sequence[str]], Awaitable[int]]
"""Send a prompt whose body is exactly these words (system prompt, no shared prefix); return prompt_tokens."""
TargetProbe = Callable[[TokenModel], Awaitable[tuple[int, float]]]
"""Send one request built by the factory under this model; return (prompt_tokens, target tokens it aimed at)."""


async def measure_vocabulary(
    probe: WordsProbe, vocabulary: Sequence[str], target_tokens: float, max_chunk: int = MAX_CHUNK_WORDS
) -> tuple[TokenModel, int]:
    """Mean tokens per vocabulary word and the fixed overhead, by the doubling trick. Returns (model, probes).

    A first pair of one-word probes sizes the chunks so that every doubled chunk stays under the target length:
    a prompt the server must hold anyway, so calibration never trips a context limit the run itself would not.
    """
    first = list(vocabulary[:1])
    one, two = await asyncio.gather(probe(first), probe(first + first))
    word, overhead = max(1, two - one), one - max(1, two - one)
    room = max(1.0, target_tokens - overhead)
    chunk_words = max(1, min(max_chunk, len(vocabulary), int(room / (2 * word))))
    # Short targets mean small chunks; past MAX_CHUNKS a spread-out subset of the vocabulary stands for it (the
    # verification that follows catches what the sample misses).
    used = vocabulary
    if len(vocabulary) > chunk_words * MAX_CHUNKS:
        stride = len(vocabulary) / (chunk_words * MAX_CHUNKS)
        used = [vocabulary[int(i * stride)] for i in range(chunk_words * MAX_CHUNKS)]
    chunks = [list(used[i : i + chunk_words]) for i in range(0, len(used), chunk_words)]
    singles = await asyncio.gather(*(probe(c) for c in chunks))
    doubles = await asyncio.gather(*(probe(c + c) for c in chunks))
    chunk_tokens = [d - s for s, d in zip(singles, doubles, strict=True)]
    overheads = [s - t for s, t in zip(singles, chunk_tokens, strict=True)]
    total = sum(chunk_tokens)
    if total <= 0:
        raise ValueError("the server's prompt_tokens did not grow with the prompt; lengths cannot be calibrated")
    model = TokenModel(overhead_tokens=sum(overheads) / len(overheads), tokens_per_word=total / len(used))
    return model, 2 + 2 * len(chunks)


async def measure_text(probe: WordsProbe, words: Sequence[str]) -> float:
    """Tokens of a fixed text (a shared prefix) as the server counts it inside a prompt, by the doubling trick."""
    single, double = await asyncio.gather(probe(words), probe([*words, *words]))
    return float(double - single)


async def converge(
    probe: TargetProbe,
    model: TokenModel,
    target_tokens: float,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    batch: int = VERIFY_PROBES,
    max_probes: int = MAX_VERIFY_PROBES,
) -> CalibrationResult:
    """Verify the model with batches of target-length requests; rescale the ratio only on a significant miss.

    Random words make each prompt differ by a few tokens, so one batch's mean is noisy: batches are pooled until
    the mean is within the tolerance, or clearly (3 standard errors) off, which rescales the ratio and starts a
    new pool, or the probe budget is spent.
    """
    probes = 0
    rounds = 0
    pool: list[tuple[int, float]] = []
    while probes < max_probes:
        pool += await asyncio.gather(*(probe(model) for _ in range(batch)))
        probes += batch
        mean_actual = sum(a for a, _ in pool) / len(pool)
        mean_target = sum(t for _, t in pool) / len(pool)
        diff = mean_actual - mean_target
        # A prompt is made of whole words: nothing finer than half a word can be asked of it.
        if abs(diff) <= max(tolerance * mean_target, model.tokens_per_word / 2):
            return _verified(model, target_tokens, pool, probes, rounds, converged=True)
        if abs(diff) <= 3 * _standard_error([a - t for a, t in pool]):
            continue  # inside the noise: more probes, not a new ratio
        prefix = sum(model.prefix_tokens) / len(model.prefix_tokens) if model.prefix_tokens else 0.0
        fixed = model.overhead_tokens + prefix
        if mean_target - fixed <= 0 or mean_actual - fixed <= 0:
            break
        # What the words really cost, the fixed parts kept: scale the ratio so the same words hit the target.
        ratio = model.tokens_per_word * (mean_actual - fixed) / (mean_target - fixed)
        if probes >= max_probes:
            break  # keep the fit the last pool verified rather than an unverified one
        model = model.model_copy(update={"tokens_per_word": ratio})
        rounds += 1
        pool = []
    return _verified(model, target_tokens, pool, probes, rounds, converged=False)


def _verified(
    model: TokenModel, target: float, pool: list[tuple[int, float]], probes: int, rounds: int, *, converged: bool
) -> CalibrationResult:
    mean_actual = sum(a for a, _ in pool) / len(pool) if pool else None
    mean_target = sum(t for _, t in pool) / len(pool) if pool else target
    err = None if mean_actual is None else (mean_actual - mean_target) / mean_target
    msg = f"{model.tokens_per_word:.3f} tokens/word + {model.overhead_tokens:.1f} fixed"
    if mean_actual is not None and err is not None:
        msg += f"; {len(pool)} probes at the target measured {mean_actual:.1f} for {mean_target:g} ({err * 100:+.1f}%)"
    return CalibrationResult(
        model=model,
        target_tokens=target,
        measured_tokens=mean_actual,
        error_pct=None if err is None else err * 100,
        probes=probes,
        rounds=rounds,
        converged=converged,
        message=msg,
    )


def _standard_error(diffs: Sequence[float]) -> float:
    n = len(diffs)
    if n < 2:
        return 0.0
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1)
    return float((var / n) ** 0.5)

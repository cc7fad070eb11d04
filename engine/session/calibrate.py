"""Calibrating a profile's prompt lengths on the server, and checking that a request shape fits its context.

The arithmetic is ``engine.workload.calibration`` (pure, the probe is a callable); the requests are
``engine.endpoint.length_probe`` (the load's own client, so bodies, headers and usage parsing are identical to what
the workers send; only ``max_tokens`` is 1, so a probe costs one prefill). This module joins the two.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

from engine.config import RunConfig
from engine.endpoint.client import StreamClient, open_session
from engine.endpoint.errors import PROBE_TIMEOUT_S, ExceedsContext, ProbeError
from engine.endpoint.length_probe import check_fits, prompt_tokens_of
from engine.workload.calibration import (
    DEFAULT_TOLERANCE,
    CalibrationResult,
    TokenModel,
    WordsProbe,
    converge,
    measure_text,
    measure_vocabulary,
)
from engine.workload.profile import LoadedProfile
from engine.workload.prompts import VOCABULARY, ProfileRequestFactory, build_factory, prefix_words

__all__ = ["ExceedsContext", "ProbeError", "calibrate_profile", "check_cell_fits"]


def _probe_config(config: RunConfig) -> RunConfig:
    return config.model_copy(update={"request_timeout_s": min(config.request_timeout_s, PROBE_TIMEOUT_S)})


async def calibrate_profile(
    config: RunConfig, loaded: LoadedProfile, seed: int = 0, *, tolerance: float = DEFAULT_TOLERANCE
) -> tuple[ProfileRequestFactory, CalibrationResult | None]:
    """Fit the words->tokens model for this profile on this server and return the calibrated factory.

    Dataset profiles need no calibration (their prompts are what they are); their factory is returned as is.
    Raises ExceedsContext when even the probes do not fit, ProbeError when the server fails them.
    """
    factory = build_factory(loaded, seed=seed)
    if loaded.dataset is not None:
        return factory, None
    cfg = _probe_config(config)
    target = loaded.profile.input.expected()
    rng = random.Random(f"calibrate:{seed}")
    async with open_session(cfg) as session:
        client = StreamClient(cfg, session)

        async def probe_words(words: Sequence[str]) -> int:
            return await prompt_tokens_of(client, factory.spec_for_body(words, 1))

        model, probes = await measure_vocabulary(probe_words, VOCABULARY, loaded.profile.input.bounds()[0])
        groups = prefix_words(loaded, model, seed)
        if groups:
            sizes = [await _prefix_tokens(probe_words, words, model) for words in groups]
            probes += 2 * len(groups)
            model = model.model_copy(update={"prefix_tokens": tuple(sizes)})
        seq = 0

        async def probe_target(m: TokenModel) -> tuple[int, float]:
            nonlocal seq
            seq += 1
            spec = replace(factory, token_model=m, prefixes=_prefixes(groups)).make(seq, rng)
            return await prompt_tokens_of(client, spec), float(spec.input_tokens)

        result = await converge(probe_target, model, target, tolerance=tolerance)
    result = result.model_copy(update={"probes": result.probes + probes})
    return replace(factory, token_model=result.model, prefixes=_prefixes(groups)), result


async def _prefix_tokens(probe: WordsProbe, words: Sequence[str], model: TokenModel) -> float:
    """A shared prefix's tokens; estimated from the ratio when the doubled probe does not fit the context."""
    try:
        return await measure_text(probe, words)
    except ExceedsContext:
        return model.tokens_per_word * len(words)


def _prefixes(groups: list[list[str]]) -> tuple[str, ...]:
    return tuple(" ".join(w) for w in groups)


async def check_cell_fits(
    config: RunConfig, factory: ProfileRequestFactory, input_tokens: int, max_tokens: int
) -> None:
    """Does a request of this shape fit the server? (Matrix cells: a small server cannot serve the big cells.)"""
    words = factory.token_model.words_for(input_tokens)
    spec = factory.spec_for_body(random.Random(0).choices(VOCABULARY, k=words), max_tokens)
    await check_fits(_probe_config(config), spec)

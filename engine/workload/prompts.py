"""The profile-driven request factory: turns a workload profile (and its calibration) into request bodies.

Implements ``engine.workload.synthetic.RequestFactory`` (``make(seq, rng) -> RequestSpec``), so the controller's
workers use it exactly like the built-in synthetic factory. It is a frozen dataclass of plain data (profile
models, the token model, precomputed prefix texts, dataset lines) because it is pickled into every worker process.

Synthetic prompts are random common words; the calibrated ``TokenModel`` says how many words make the target
number of the *server's* tokens. The shared prefix (if any) and the system prompt count inside the target length.
"""

from __future__ import annotations

import multiprocessing
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.workload.calibration import TokenModel
from engine.workload.distributions import Distribution
from engine.workload.profile import DatasetEntry, LoadedProfile
from engine.workload.synthetic import Api, RequestFactory, RequestSpec

# Common lower-case English words of 5 to 8 letters. Real tokenizers (BPE with a leading space) map nearly all of
# them to one token each, and the simulator's pseudo-tokenizer (runs of up to 4 word characters) to exactly two, so
# the token count of a prompt hardly depends on which words were drawn: each request, not just the mean, lands on
# its target length once the ratio is calibrated.
VOCABULARY: tuple[str, ...] = tuple(
    """
    about after again almost always animal answer around before began being better beyond black bought bring
    brother brought build built called cannot carry cause center change charge check child choice circle class
    clean clear close color common contain control corner could country course cover create cross dance danger
    decide degree design detail differ direct doctor dollar during early earth eight either energy engine enough
    enter equal event every example except expect family famous father feeling field figure final finger finish
    first flower follow force forest forward found friend front garden gather general gentle glass grass great
    green ground group guess happen happy heard heart heavy history horse house human hundred island itself
    kitchen known labor large laugh learn least leave length letter light listen little machine market master
    matter measure middle might minute moment money month morning mother motion mountain music nation nature never
    night north notice number object ocean offer office often order other paper party pattern people period person
    picture piece place plain plane plant point position pound power press pretty print problem produce product
    public quick quiet quite radio raise reach ready reason record region remember repeat reply report result
    river round sample school science score season second section seven shape share sharp short should shoulder
    simple since single sister skill small smell smile solve sound south space speak special speed spell spend
    spring square stand start state station steel stick still stone store story straight strange stream street
    strong student study subject success sudden summer supply surface system table teach teeth thank their there
    these thick thing think third those though thought thousand three through together total touch toward track
    trade train travel trouble under until usual valley value visit voice watch water weather weight wheel where
    which while white whole window winter woman women world would write written young
    """.split()
)


@dataclass(frozen=True, slots=True)
class ProfileRequestFactory:
    """Requests shaped by a workload profile. Build it with :func:`build_factory`."""

    api: Api
    input: Distribution
    output: Distribution
    token_model: TokenModel
    system_prompt: str = ""
    prefixes: tuple[str, ...] = ()  # one text per prefix group; empty when there is no shared prefix
    dataset: tuple[DatasetEntry, ...] | None = None
    shuffle: bool = False

    def make(self, seq: int, rng: random.Random) -> RequestSpec:
        if self.dataset is not None:
            return self._from_dataset(seq, rng)
        target = self.input.sample(rng)
        max_tokens = self.output.sample(rng)
        group = seq % len(self.prefixes) if self.prefixes else None
        words = self.token_model.words_for(target, group, rng)
        body = rng.choices(VOCABULARY, k=words)
        return self.spec_for_body(body, max_tokens, group, target=target)

    def spec_for_body(
        self, body: Sequence[str], max_tokens: int, group: int | None = None, *, target: int | None = None
    ) -> RequestSpec:
        """A synthetic request whose variable part is exactly ``body``, after shared prefix ``group`` if given.
        The calibration probes use it too, so they measure exactly what the load sends."""
        text = " ".join(body)
        if group is not None and self.prefixes:
            text = f"{self.prefixes[group % len(self.prefixes)]} {text}"
        if target is None:
            target = round(self.token_model.tokens_for(len(body), group))
        return RequestSpec(
            fields=self._fields(text),
            max_tokens=max_tokens,
            input_tokens=target,
            extra={"words": len(body), "prefix_group": group},
        )

    def _from_dataset(self, seq: int, rng: random.Random) -> RequestSpec:
        assert self.dataset is not None
        index = rng.randrange(len(self.dataset)) if self.shuffle else seq % len(self.dataset)
        entry = self.dataset[index]
        max_tokens = entry.output_tokens if entry.output_tokens is not None else self.output.sample(rng)
        if entry.messages is not None:
            messages = [m.model_dump() for m in entry.messages]
        else:
            messages = [{"role": "user", "content": entry.prompt or ""}]
        fields: dict[str, Any]
        if self.api != "completions":  # chat and responses send messages
            if self.system_prompt and messages[0]["role"] != "system":
                messages.insert(0, {"role": "system", "content": self.system_prompt})
            fields = {"messages": messages}
        else:
            text = _flatten(messages)
            fields = {"prompt": f"{self.system_prompt}\n\n{text}" if self.system_prompt else text}
        words = sum(len(m["content"].split()) for m in messages)
        return RequestSpec(
            fields=fields,
            max_tokens=max_tokens,
            input_tokens=round(self.token_model.tokens_for(words)),  # an estimate: datasets have no target
            extra={"dataset_line": index},
        )

    def _fields(self, text: str) -> dict[str, Any]:
        if self.api != "completions":  # chat and responses send messages
            messages: list[dict[str, str]] = []
            if self.system_prompt:
                messages.append({"role": "system", "content": self.system_prompt})
            messages.append({"role": "user", "content": text})
            return {"messages": messages}
        return {"prompt": f"{self.system_prompt}\n\n{text}" if self.system_prompt else text}


def _flatten(messages: list[dict[str, str]]) -> str:
    """A conversation as completions text: a lone user turn as is, otherwise ``role: content`` paragraphs."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)


def build_factory(loaded: LoadedProfile, token_model: TokenModel | None = None, seed: int = 0) -> ProfileRequestFactory:
    """The factory for a profile. Shared prefixes are drawn once from ``seed`` so every request (and every worker)
    sends the same prefix text, which is what lets a server's prefix cache hit."""
    p = loaded.profile
    model = token_model or TokenModel()
    return ProfileRequestFactory(
        api=p.api,
        input=p.input,
        output=p.output,
        token_model=model,
        system_prompt=p.system_prompt,
        prefixes=tuple(" ".join(w) for w in prefix_words(loaded, model, seed)),
        dataset=loaded.dataset,
        shuffle=p.shuffle,
    )


def prefix_words(loaded: LoadedProfile, model: TokenModel, seed: int) -> list[list[str]]:
    """The words of each shared-prefix group, sized with the model's tokens per word."""
    p = loaded.profile
    if p.shared_prefix_tokens <= 0 or loaded.dataset is not None:
        return []
    n = max(1, round(p.shared_prefix_tokens / model.tokens_per_word))
    return [random.Random(f"prefix:{seed}:{g}").choices(VOCABULARY, k=n) for g in range(p.prefix_groups)]


class SwitchableFactory:
    """Several factories behind one, switched from the parent process: a matrix runs all its cells on one set of
    workers (spawning workers per cell would cost a second or more each).

    The index lives in shared memory created from the spawn context, so it reaches the workers by inheritance
    when the controller starts them (it cannot be pickled any other way). Switch only while no request is in
    flight (concurrency 0, drained), so every request belongs to exactly one cell.
    """

    def __init__(self, factories: Sequence[RequestFactory]) -> None:
        if not factories:
            raise ValueError("SwitchableFactory needs at least one factory")
        self.factories = tuple(factories)
        self._index = multiprocessing.get_context("spawn").Value("i", 0, lock=False)

    @property
    def index(self) -> int:
        return int(self._index.value)

    def select(self, index: int) -> None:
        if not 0 <= index < len(self.factories):
            raise IndexError(f"no factory {index} (have {len(self.factories)})")
        self._index.value = index

    def make(self, seq: int, rng: random.Random) -> RequestSpec:
        return self.factories[int(self._index.value)].make(seq, rng)

"""Workload profiles: what each request looks like (lengths, prompt source, API shape), loaded from TOML.

A profile is a file the user can read and diff, so a result can say exactly what load produced it: loading keeps
the file's sha256 next to the parsed model. Built-in profiles live in ``profiles/workloads/`` inside the installed
package (found through ``profiles.__file__``, so they work from a wheel as well as from a checkout).

Every problem in a profile or its dataset becomes a ``ProfileError`` whose text is one line naming the file and
line, e.g. ``rag.toml:4: input.min (300) > input.max (200)``; the CLI prints it as is.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

import profiles
from engine.workload.distributions import Distribution, Fixed, coerce_distribution
from engine.workload.fingerprint import DataFingerprint, LengthStats
from engine.workload.session_shape import SessionShape

WORKLOADS_DIR = Path(profiles.__file__).parent / "workloads"
_KIND_TAGS = frozenset({"fixed", "uniform", "normal", "lognormal", "empirical"})


class ProfileError(ValueError):
    """A profile or dataset the user must fix; ``str()`` is the one line to print (file:line: what is wrong)."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MatrixSpec(_Model):
    """A grid of fixed input x output lengths; ``wattload sweep`` finds the ceiling of every cell."""

    inputs: list[int] = Field(min_length=1)
    """Input lengths in tokens (rows)."""
    outputs: list[int] = Field(min_length=1)
    """Output lengths in tokens (columns)."""

    @field_validator("inputs", "outputs")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        for n in v:
            if n < 1:
                raise ValueError(f"lengths must be at least 1 token, got {n}")
        return v


class SweepDefaults(_Model):
    """Sweep settings a profile may suggest (the command line overrides each one)."""

    start: int | None = Field(default=None, ge=1)
    max: int | None = Field(default=None, ge=1)
    factor: float | None = Field(default=None, gt=1)
    linear: int | None = Field(default=None, ge=1)
    step_time_s: float | None = Field(default=None, gt=0)
    window_s: float | None = Field(default=None, gt=0)
    threshold: float | None = Field(default=None, gt=0, lt=1)


class WorkloadProfile(_Model):
    """What every request of a run looks like. Token counts are targets for the server's own tokenizer."""

    name: str = ""
    """Defaults to the file's stem."""
    description: str = ""
    api: Literal["chat", "completions", "responses"] = "chat"
    """``chat`` sends ``messages`` to /chat/completions; ``completions`` sends ``prompt`` to /completions."""
    input: Distribution = Field(default_factory=lambda: Fixed(value=128))
    """Input (prompt) length in tokens, system prompt and shared prefix included."""
    output: Distribution = Field(default_factory=lambda: Fixed(value=128))
    """Output length in tokens, sent as ``max_tokens`` (a dataset line's ``output_tokens`` wins)."""
    ignore_eos: bool = True
    """Also send ``ignore_eos`` and ``min_tokens`` so the server cannot stop early (vLLM, SGLang honour it)."""
    system_prompt: str = ""
    """Chat: a system message; completions: text put before the prompt."""
    shared_prefix_tokens: int = Field(default=0, ge=0)
    """Tokens of identical text at the start of every prompt (exercises prefix caching)."""
    prefix_groups: int = Field(default=1, ge=1)
    """How many distinct shared prefixes there are; request ``seq`` uses prefix ``seq % prefix_groups``."""
    dataset: str | None = None
    """A JSONL file of prompts or conversations (relative to this profile); replaces synthetic text."""
    shuffle: bool = False
    """Dataset order: False cycles through lines in order, True draws lines with the request's RNG."""
    dataset_sessions: bool = False
    """ShareGPT datasets: replay each whole conversation as a multi-turn session (the server's answers in
    between), instead of its first human turn as one prompt."""
    dataset_rows: int | None = Field(default=None, ge=1)
    """ShareGPT datasets: conversations kept (default 10,000; the file is streamed, never loaded whole)."""
    seed: int | None = None
    """Default seed for runs with this profile (``--seed`` wins)."""
    matrix: MatrixSpec | None = None
    sweep: SweepDefaults = SweepDefaults()
    session: SessionShape | None = None
    """Multi-turn conversations (``engine/workload/sessions.py``): each turn resends the conversation so far."""

    @field_validator("input", "output", mode="before")
    @classmethod
    def _shorthand(cls, v: object) -> object:
        return coerce_distribution(v)

    @model_validator(mode="after")
    def _prefix_fits(self) -> WorkloadProfile:
        # Inputs shorter than the prefix still get one unique word; only a prefix as long as the typical input
        # is a mistake (every request would be nearly identical).
        if self.dataset is None and self.shared_prefix_tokens and self.shared_prefix_tokens >= self.input.expected():
            raise ValueError(
                f"shared_prefix_tokens ({self.shared_prefix_tokens}) must be shorter than the mean input "
                f"({self.input.expected():g})"
            )
        return self

    def cell(self, input_tokens: int, output_tokens: int) -> WorkloadProfile:
        """One matrix cell: this profile with fixed lengths and no matrix."""
        return self.model_copy(
            update={
                "name": f"{self.name}[{input_tokens}x{output_tokens}]",
                "input": Fixed(value=input_tokens),
                "output": Fixed(value=output_tokens),
                "matrix": None,
                "shared_prefix_tokens": min(self.shared_prefix_tokens, input_tokens - 1),
            }
        )


class Message(_Model):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str


class DatasetEntry(BaseModel):
    """One JSONL line: a ``prompt`` string or a ``messages`` conversation, optionally its output length."""

    model_config = ConfigDict(frozen=True, extra="ignore")  # datasets carry ids, labels... keep what we use

    prompt: str | None = None
    messages: tuple[Message, ...] | None = None
    output_tokens: int | None = Field(default=None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: object) -> object:
        if isinstance(data, dict) and "output_tokens" not in data and "max_tokens" in data:
            data = {**data, "output_tokens": data["max_tokens"]}
        return data

    @model_validator(mode="after")
    def _one_source(self) -> DatasetEntry:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError('needs exactly one of "prompt" (a string) or "messages" (a list of role/content)')
        if self.messages is not None and not self.messages:
            raise ValueError('"messages" is empty')
        return self


class ProfileInfo(_Model):
    """What a result records about its workload: enough to reproduce it and to see that it changed."""

    name: str
    path: str
    sha256: str
    dataset_sha256: str | None = None
    profile: dict[str, Any]
    data: DataFingerprint | None = None
    """The dataset's fingerprint (sha256, rows, length statistics), when the profile has one."""


class LoadedProfile(_Model):
    """A parsed profile with where it came from, its content hash and its dataset (if any)."""

    profile: WorkloadProfile
    path: Path
    sha256: str
    dataset: tuple[DatasetEntry, ...] | None = None
    dataset_sha256: str | None = None
    conversations: tuple[tuple[tuple[str, int], ...], ...] | None = None
    """ShareGPT sessions: each conversation's (human text, answer tokens) turns."""
    data: DataFingerprint | None = None

    def info(self) -> ProfileInfo:
        return ProfileInfo(
            name=self.profile.name,
            path=str(self.path),
            sha256=self.sha256,
            dataset_sha256=self.dataset_sha256,
            profile=self.profile.model_dump(mode="json"),
            data=self.data,
        )

    def with_profile(self, profile: WorkloadProfile) -> LoadedProfile:
        """The same source and hash with a derived profile (a matrix cell, an override from the command line)."""
        return self.model_copy(update={"profile": profile})


def available_profiles() -> list[str]:
    return sorted(p.stem for p in WORKLOADS_DIR.glob("*.toml"))


def resolve_profile_path(name_or_path: str) -> Path:
    """A built-in name (``chat``) or a path to a TOML file; an unknown name lists the built-in ones."""
    candidate = Path(name_or_path).expanduser()
    if candidate.suffix == ".toml" or "/" in name_or_path or candidate.is_file():
        if not candidate.is_file():
            raise ProfileError(f"{name_or_path}: no such workload profile file")
        return candidate
    builtin = WORKLOADS_DIR / f"{name_or_path}.toml"
    if builtin.is_file():
        return builtin
    raise ProfileError(f"unknown workload profile {name_or_path!r}; available: {', '.join(available_profiles())}")


def load_profile(name_or_path: str) -> LoadedProfile:
    """Read, validate and hash a profile (and read and validate its dataset)."""
    path = resolve_profile_path(name_or_path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    profile = parse_profile(raw, path)
    dataset: tuple[DatasetEntry, ...] | None = None
    dataset_sha: str | None = None
    conversations: tuple[tuple[tuple[str, int], ...], ...] | None = None
    data: DataFingerprint | None = None
    if profile.dataset is not None:
        data_path = Path(profile.dataset).expanduser()
        if not data_path.is_absolute():
            data_path = path.parent / data_path
        if not data_path.is_file():
            line = _locate_key(raw.decode("utf-8", "replace"), ("dataset",))
            raise ProfileError(f"{path}:{line}: dataset: no such file {data_path}")
        from engine.workload import sharegpt

        if sharegpt.is_sharegpt(data_path):
            rows = profile.dataset_rows or sharegpt.DEFAULT_MAX_ROWS
            entries, scripts, data = sharegpt.load_sharegpt(data_path, max_rows=rows, sessions=profile.dataset_sessions)
            dataset_sha = data.sha256
            if scripts:  # sessions carry their own turns; turn 1 is also a dataset entry (calibration, make())
                conversations = scripts
                dataset = tuple(DatasetEntry(prompt=c[0][0], output_tokens=c[0][1]) for c in scripts)
            else:
                dataset = entries
        else:
            dataset, dataset_sha = load_dataset(data_path)
            data = _jsonl_fingerprint(data_path, dataset, dataset_sha)
    return LoadedProfile(
        profile=profile,
        path=path.resolve(),
        sha256=hashlib.sha256(raw).hexdigest(),
        dataset=dataset,
        dataset_sha256=dataset_sha,
        conversations=conversations,
        data=data,
    )


def _jsonl_fingerprint(path: Path, entries: Sequence[DatasetEntry], sha: str) -> DataFingerprint:
    """Rows and output-length statistics of a JSONL dataset (input lengths are text: estimated as chars / 4)."""
    ins = [max(1, round(len(e.prompt or " ".join(m.content for m in e.messages or ())) / 4)) for e in entries]
    outs = [e.output_tokens for e in entries if e.output_tokens is not None]
    return DataFingerprint(kind="jsonl", path=str(path.resolve()), sha256=sha, rows=len(entries),
                           input=_stats(ins), output=_stats(outs))  # fmt: skip


def _stats(values: Sequence[int]) -> LengthStats:
    if not values:
        return LengthStats()
    return LengthStats(min=min(values), mean=sum(values) / len(values), max=max(values), total=sum(values))


def parse_profile(raw: bytes, path: Path) -> WorkloadProfile:
    """Validate TOML bytes into a profile; errors name the file and the line of the offending key."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(_toml_error_line(path, str(exc))) from None
    data.setdefault("name", path.stem)
    try:
        return WorkloadProfile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(str(p) for p in err["loc"] if str(p) not in _KIND_TAGS)
        if len(loc) == 2 and loc[1] == "value" and isinstance(data.get(loc[0]), int):
            loc = loc[:1]  # the shorthand `output = -5` has no "value" key to name
        # A whole-profile check has no location; its message starts with the key it is about.
        hint = loc or tuple(str(err.get("msg", "")).removeprefix("Value error, ").split(" ", 1)[:1])
        line = _locate_key(text, hint)
        where = f"{path}:{line}" if line is not None else str(path)
        field = f"{'.'.join(loc)}: " if loc else ""
        raise ProfileError(f"{where}: {field}{_clean_message(err)}") from None


def load_dataset(path: Path) -> tuple[tuple[DatasetEntry, ...], str]:
    """Read a JSONL dataset; the first bad line raises with its line number. Returns entries and sha256."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read dataset: {exc.strerror or exc}") from None
    entries: list[DatasetEntry] = []
    for lineno, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ProfileError(f"{path}:{lineno}: not valid JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise ProfileError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        try:
            entries.append(DatasetEntry.model_validate(obj))
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            prefix = f"{field}: " if field else ""
            raise ProfileError(f"{path}:{lineno}: {prefix}{_clean_message(err)}") from None
    if not entries:
        raise ProfileError(f"{path}: the dataset has no prompts")
    return tuple(entries), hashlib.sha256(raw).hexdigest()


def _clean_message(err: ErrorDetails) -> str:
    msg = str(err.get("msg", "invalid"))
    msg = msg.removeprefix("Value error, ")
    if err.get("type") == "extra_forbidden":
        return "unknown key"
    if err.get("type") == "greater_than_equal" and "input" in err:
        return f"must be at least {err['ctx']['ge']} (got {err['input']!r})"
    if "input" in err and err.get("type") not in ("missing",) and not isinstance(err["input"], dict | list):
        return f"{msg} (got {err['input']!r})"
    return msg


def _toml_error_line(path: Path, message: str) -> str:
    m = re.search(r"\(at line (\d+), column (\d+)\)", message)
    if m is None:
        return f"{path}: invalid TOML: {message}"
    return f"{path}:{m.group(1)}: invalid TOML: {message[: m.start()].strip()} (column {m.group(2)})"


_HEADER = re.compile(r"^\s*\[\s*([A-Za-z0-9_.\-\s\"]+?)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"]+(?:\s*\.\s*[A-Za-z0-9_\-\"]+)*)\s*=")


def _locate_key(text: str, loc: Sequence[str]) -> int | None:
    """The 1-based line that defines the longest prefix of ``loc`` (tomllib keeps no positions)."""
    best_line: int | None = None
    best_len = 0
    table: tuple[str, ...] = ()
    for lineno, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            table = _split_dotted(header.group(1))
            path = table
        else:
            key = _KEY.match(line)
            if key is None:
                continue
            path = table + _split_dotted(key.group(1))
        n = _common_prefix(path, loc)
        if n == len(path) and n > best_len:
            best_line, best_len = lineno, n
    return best_line


def _split_dotted(key: str) -> tuple[str, ...]:
    return tuple(part.strip().strip('"') for part in key.split("."))


def _common_prefix(a: Iterable[str], b: Iterable[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n

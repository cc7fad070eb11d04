"""ShareGPT datasets: ``[{"id", "conversations": [{"from": "human"|"gpt", "value"}, ...]}, ...]``.

The file is one JSON array (ShareGPT_V3 is ~670 MB), so it is streamed with ijson and at most ``max_rows``
conversations are kept. Two uses:

* prompts: each conversation's first human turn is a prompt, the gpt answer after it sets the output length;
* sessions: the whole conversation is a multi-turn session, its human turns sent in order with the *server's*
  answers in between, each turn's output length taken from the gpt answer it replaces.

Output lengths are estimated as characters / 4 (the usual rule of thumb for English under BPE tokenizers): the
dataset holds text, not token counts; the run's length check then says what the server really produced.
Conversations without a human turn followed by a gpt answer are skipped and counted.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import ijson

from engine.workload.fingerprint import DataFingerprint, LengthStats
from engine.workload.profile import DatasetEntry, ProfileError

DEFAULT_MAX_ROWS = 10_000
CHARS_PER_TOKEN = 4.0

Script = tuple[tuple[str, int], ...]
"""One conversation as (human text, output tokens of the answer) per turn."""


def estimate_tokens(text: str) -> int:
    return max(1, round(len(text) / CHARS_PER_TOKEN))


def is_sharegpt(path: Path) -> bool:
    """A JSON array (rather than JSONL objects): the first non-blank character is '['."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError:
        return False
    return head[:1] == b"["


def _script(item: Any) -> Script | str:
    """A conversation's (human, answer length) turns, or why it cannot be used."""
    if not isinstance(item, dict):
        return "not an object"
    turns = item.get("conversations")
    if not isinstance(turns, list):
        return 'no "conversations" list'
    out: list[tuple[str, int]] = []
    pending: str | None = None
    for msg in turns:
        if not isinstance(msg, dict) or not isinstance(msg.get("value"), str):
            return 'a turn without a string "value"'
        who = msg.get("from")
        if who in ("human", "user") and pending is None:
            pending = msg["value"]
        elif who in ("gpt", "chatgpt", "assistant") and pending is not None:
            if pending.strip() and msg["value"].strip():
                out.append((pending, estimate_tokens(msg["value"])))
            pending = None
    return tuple(out) if out else "no human turn answered by gpt"


def load_sharegpt(
    path: Path, *, max_rows: int = DEFAULT_MAX_ROWS, sessions: bool = False
) -> tuple[tuple[DatasetEntry, ...], tuple[Script, ...], DataFingerprint]:
    """Stream the file; returns prompt entries (first turns), conversation scripts (when ``sessions``), and the
    fingerprint. A file that is not a JSON array of objects raises one ProfileError line."""
    digest = hashlib.sha256()
    entries: list[DatasetEntry] = []
    scripts: list[Script] = []
    skipped: Counter[str] = Counter()
    ins: list[int] = []
    outs: list[int] = []
    try:
        with open(path, "rb") as f:
            reader = _HashingReader(f, digest)
            for item in ijson.items(reader, "item"):
                if len(entries) + len(scripts) >= max_rows:
                    skipped[f"beyond the first {max_rows:,} conversations"] += 1
                    continue
                script = _script(item)
                if isinstance(script, str):
                    skipped[script] += 1
                    continue
                if sessions:
                    scripts.append(script)
                else:
                    entries.append(DatasetEntry(prompt=script[0][0], output_tokens=script[0][1]))
                ins.append(estimate_tokens(script[0][0]))
                outs.append(script[0][1])
            reader.drain()
    except ijson.JSONError as exc:
        raise ProfileError(f"{path}: not a ShareGPT JSON array: {str(exc).splitlines()[0]}") from None
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read dataset: {exc.strerror or exc}") from None
    if not entries and not scripts:
        raise ProfileError(f"{path}: no usable conversations (a human turn answered by gpt)")
    fingerprint = DataFingerprint(
        kind="sharegpt-sessions" if sessions else "sharegpt",
        path=str(path.resolve()),
        sha256=digest.hexdigest(),
        rows=len(entries) + len(scripts),
        skipped=dict(skipped),
        input=_stats(ins),
        output=_stats(outs),
        conversations=len(scripts) if sessions else None,
    )
    return tuple(entries), tuple(scripts), fingerprint


def _stats(values: list[int]) -> LengthStats:
    if not values:
        return LengthStats()
    return LengthStats(min=min(values), mean=sum(values) / len(values), max=max(values), total=sum(values))


class _HashingReader:
    """A binary file wrapper that hashes what ijson reads (one pass: parse and fingerprint together)."""

    def __init__(self, f: Any, digest: Any) -> None:
        self._f = f
        self._digest = digest

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._digest.update(data)
        return bytes(data)

    def drain(self) -> None:
        while self.read(1 << 20):
            pass

"""Fingerprints of the data a run replayed: the file's sha256, the rows used and skipped, length statistics.

Results (``run --json``) and recordings carry one, so two runs can be checked to have used the same data: equal
sha256 means the same file, equal rows and window means the same slice of it.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from engine.workload.traces.detect import Skips, TraceSource
from engine.workload.traces.rows import TraceError, TraceWindow

_HASH_CHUNK = 1 << 20


class LengthStats(BaseModel):
    """Token lengths over the rows used (exact mean, min and max; streamed, no list of values kept)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min: int = 0
    mean: float = 0.0
    max: int = 0
    total: int = 0


class DataFingerprint(BaseModel):
    """What a result records about a trace or dataset file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    """The detected format: mooncake, azure, burstgpt, bailian, sharegpt, jsonl."""
    path: str
    sha256: str
    rows: int
    """Rows (requests, or conversations for ShareGPT sessions) that the run uses."""
    skipped: dict[str, int] = {}
    window_s: tuple[float, float | None] | None = None
    duration_s: float | None = None
    """Trace time from the first to the last row used (at speed 1)."""
    input: LengthStats = LengthStats()
    output: LengthStats = LengthStats()
    conversations: int | None = None
    """Session traces and ShareGPT sessions: how many distinct conversations."""

    def line(self) -> str:
        """One human line for the terminal."""
        text = f"{self.kind} {Path(self.path).name}: {self.rows:,} rows, sha256 {self.sha256[:12]}"
        if self.rows:
            text += f", input {self.input.mean:.0f} (max {self.input.max}), output {self.output.mean:.0f} tokens"
        if self.duration_s is not None:
            text += f", {self.duration_s:,.1f} s of trace"
        return text


class _Stats:
    __slots__ = ("max", "min", "n", "total")

    def __init__(self) -> None:
        self.n = 0
        self.total = 0
        self.min = math.inf
        self.max = 0

    def add(self, v: int) -> None:
        self.n += 1
        self.total += v
        self.min = min(self.min, v)
        self.max = max(self.max, v)

    def model(self) -> LengthStats:
        if not self.n:
            return LengthStats()
        return LengthStats(min=int(self.min), mean=self.total / self.n, max=self.max, total=self.total)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise TraceError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return digest.hexdigest()


def scan_trace(
    source: TraceSource, window: TraceWindow | None = None, max_context: int | None = None
) -> tuple[DataFingerprint, Skips]:
    """One validating pass over the rows a replay will send (the first bad row raises its one-line TraceError)."""
    skips = Skips()
    ins, outs = _Stats(), _Stats()
    first: float | None = None
    last = 0.0
    conversations = 0
    for row in source.rows(window, max_context, skips):
        ins.add(row.input_tokens)
        outs.add(row.output_tokens)
        if first is None:
            first = row.t_s
        last = row.t_s
        if source.sessions and row.parent_chat_id is None:
            conversations += 1
    window_s = None
    if window is not None and (window.start_s > 0 or math.isfinite(window.end_s)):
        window_s = (window.start_s, window.end_s if math.isfinite(window.end_s) else None)
    fingerprint = DataFingerprint(
        kind=source.format,
        path=str(Path(source.path).resolve()),
        sha256=file_sha256(source.path),
        rows=ins.n,
        skipped=dict(skips.counts),
        window_s=window_s,
        duration_s=None if first is None else last - first,
        input=ins.model(),
        output=outs.model(),
        conversations=conversations if source.sessions else None,
    )
    return fingerprint, skips

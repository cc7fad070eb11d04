"""Fingerprints of the data a run used (a trace or a dataset): the file's sha256, rows used and skipped, lengths.

Results (``run --json``) and recordings carry one, so two runs can be checked to have used the same data: equal
sha256 means the same file, equal rows and window the same slice of it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import BaseModel, ConfigDict

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


def file_sha256(path: str | Path) -> str:
    """Streamed in 1 MiB chunks (a trace may be gigabytes); OSError propagates to the caller."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()

"""Fingerprints of the data a run replayed: the file's sha256, the rows used and skipped, length statistics.

Results (``run --json``) and recordings carry one, so two runs can be checked to have used the same data: equal
sha256 means the same file, equal rows and window means the same slice of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from engine.workload.fingerprint import DataFingerprint, LengthStats, file_sha256
from engine.workload.traces.detect import Skips, TraceSource, TraceStart
from engine.workload.traces.rows import TraceError, TraceWindow

__all__ = ["DataFingerprint", "LengthStats", "scan_trace"]


def _sha256(path: str) -> str:
    try:
        return file_sha256(path)
    except OSError as exc:
        raise TraceError(f"{path}: cannot read: {exc.strerror or exc}") from None


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


def scan_trace(
    source: TraceSource,
    window: TraceWindow | None = None,
    max_context: int | None = None,
    found: Callable[[TraceStart], None] | None = None,
) -> tuple[DataFingerprint, Skips]:
    """One validating pass over the rows a replay will send (the first bad row raises its one-line TraceError)."""
    skips = Skips()
    ins, outs = _Stats(), _Stats()
    first: float | None = None
    last = 0.0
    conversations = 0
    for row in source.rows(window, max_context, skips, found=found):
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
        sha256=_sha256(source.path),
        rows=ins.n,
        skipped=dict(skips.counts),
        window_s=window_s,
        duration_s=None if first is None else last - first,
        input=ins.model(),
        output=outs.model(),
        conversations=conversations if source.sessions else None,
    )
    return fingerprint, skips

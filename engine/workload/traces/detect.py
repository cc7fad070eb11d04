"""Which format a trace file is (by its fields, never by its name), and the checked stream of its rows.

Every pass over a trace goes through ``TraceSource.rows``: it puts the first row at t = 0, refuses a trace whose
timestamps go backwards (one line naming the row), replays only the rows inside a window, and skips, counting each
reason, rows that cannot be replayed: failures in the source (0 output tokens) and rows longer than the server's
context. Nothing is held but the current row, so a million-row file costs no more memory than a ten-row one.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from engine.workload.traces import readers
from engine.workload.traces.rows import TraceError, TraceRow, TraceWindow

TraceFormat = Literal["mooncake", "azure", "burstgpt", "bailian"]
TRACE_FORMATS: dict[TraceFormat, str] = {
    "mooncake": "Mooncake JSONL (timestamp ms, input_length, output_length, hash_ids)",
    "azure": "Azure LLM inference CSV (TIMESTAMP, ContextTokens, GeneratedTokens)",
    "burstgpt": "BurstGPT CSV (Timestamp s, Request tokens, Response tokens)",
    "bailian": "Bailian session JSONL (chat_id, parent_chat_id, turn, timestamp s, lengths, hash_ids)",
}
_READERS: dict[TraceFormat, Callable[[str, Any], Iterator[TraceRow]]] = {
    "mooncake": readers.read_mooncake,
    "azure": readers.read_azure,
    "burstgpt": readers.read_burstgpt,
    "bailian": readers.read_bailian,
}
SKIP_FAILED = "failed in the source (0 output tokens)"
SKIP_CONTEXT = "longer than the server's context"


@dataclass
class Skips:
    """Rows left out of a pass, by reason (filled while iterating)."""

    counts: Counter[str] = field(default_factory=Counter)
    first_row: dict[str, int] = field(default_factory=dict)

    def add(self, reason: str, row: int) -> None:
        self.counts[reason] += 1
        self.first_row.setdefault(reason, row)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        """``skipped 12 rows: 10 failed in the source (0 output tokens) (first at row 7), 2 ...``; "" if none."""
        if not self.counts:
            return ""
        parts = [f"{n} {reason} (first at row {self.first_row[reason]})" for reason, n in self.counts.most_common()]
        return f"skipped {self.total} row{'s' if self.total != 1 else ''}: " + ", ".join(parts)


@dataclass(frozen=True, slots=True)
class TraceSource:
    """A detected trace file; plain data, so it can be pickled into worker processes (which re-read the file)."""

    path: str
    format: TraceFormat

    @property
    def sessions(self) -> bool:
        """Rows are turns of conversations (replayed with the server's earlier answers in each prompt)."""
        return self.format == "bailian"

    @property
    def description(self) -> str:
        return TRACE_FORMATS[self.format]

    def rows(
        self,
        window: TraceWindow | None = None,
        max_context: int | None = None,
        skips: Skips | None = None,
        *,
        start: TraceStart | None = None,
        found: Callable[[TraceStart], None] | None = None,
    ) -> Iterator[TraceRow]:
        """Rows in file order with ``t_s`` from the first row (so a window is in the trace's own seconds).

        ``found`` is told where the first row of the window starts in the file; a later pass given that as
        ``start`` seeks straight there (a window deep in a large file costs no re-reading of what precedes it).
        """
        window = window or TraceWindow()
        skips = skips if skips is not None else Skips()
        t0: float | None = start.t0 if start is not None else None
        previous = start.t0 if start is not None else -float("inf")
        try:
            with open(self.path, "rb") as f:
                lines = _Lines(f, start, header=self.format in ("azure", "burstgpt"))
                for row in _READERS[self.format](self.path, lines):
                    if row.t_s < previous:
                        raise TraceError(
                            f"{self.path}:{row.row}: timestamp goes backwards ({previous - row.t_s:.3f} s before "
                            "the previous row); sort the trace by time first"
                        )
                    previous = row.t_s
                    if t0 is None:
                        t0 = row.t_s
                    t = row.t_s - t0
                    if t >= window.end_s:
                        return
                    if t < window.start_s:
                        continue
                    if found is not None:
                        found(TraceStart(lines.line_start, row.row, t0))
                        found = None
                    if row.output_tokens == 0:
                        skips.add(SKIP_FAILED, row.row)
                        continue
                    if max_context is not None and row.input_tokens + row.output_tokens > max_context:
                        skips.add(SKIP_CONTEXT, row.row)
                        continue
                    yield _at(row, t)
        except UnicodeDecodeError as exc:
            raise TraceError(f"{self.path}: not UTF-8 text (byte {exc.start})") from None
        except csv.Error as exc:
            raise TraceError(f"{self.path}: invalid CSV: {exc}") from None
        except OSError as exc:
            raise TraceError(f"{self.path}: cannot read: {exc.strerror or exc}") from None


@dataclass(frozen=True, slots=True)
class TraceStart:
    """Where a window's first row starts: its byte offset and line number, and the trace's first timestamp."""

    offset: int
    line: int
    t0: float


class _Lines:
    """The file's lines as text, numbered, with the byte offset where the current line starts; from ``start``
    it yields the header (CSV) and then seeks to the start's offset."""

    def __init__(self, f: IO[bytes], start: TraceStart | None, header: bool) -> None:
        self._f = f
        self._start = start
        self.line_start = 0
        self._offset = 0
        self.first_line = 1 if start is None else start.line  # JSONL: the number of the first line yielded
        self.line_shift = 0 if start is None or not header else start.line - 2  # CSV: add to csv's line_num
        self._header_pending = start is not None and header
        if start is not None and not header:
            f.seek(start.offset)
            self._offset = start.offset

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self._header_pending and self._start is not None:
            self._header_pending = False
            header = self._f.readline()
            self._f.seek(self._start.offset)
            self._offset = self._start.offset
            return header.decode("utf-8-sig")
        self.line_start = self._offset
        line = self._f.readline()
        if not line:
            raise StopIteration
        self._offset += len(line)
        return line.decode("utf-8-sig" if self.line_start == 0 else "utf-8")


def _at(row: TraceRow, t_s: float) -> TraceRow:
    return TraceRow(row.row, t_s, row.input_tokens, row.output_tokens, row.hash_ids, row.chat_id,
                    row.parent_chat_id, row.turn)  # fmt: skip


def open_trace(path: str | Path) -> TraceSource:
    """Detect the format from the first line's fields; a file that matches none says which fields it has."""
    text_path = str(path)
    try:
        with open(text_path, encoding="utf-8-sig", newline="") as f:
            first = ""
            for line in f:
                if line.strip():
                    first = line
                    break
    except UnicodeDecodeError as exc:
        raise TraceError(f"{text_path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise TraceError(f"{text_path}: cannot read trace: {exc.strerror or exc}") from None
    if not first:
        raise TraceError(f"{text_path}: the trace is empty")
    fields = _fields_of(first)
    fmt = detect_format(fields)
    if fmt is None:
        known = "; ".join(TRACE_FORMATS.values())
        found = ", ".join(sorted(fields)) or "none"
        raise TraceError(f"{text_path}:1: not a known trace format (fields: {found}); known: {known}")
    return TraceSource(text_path, fmt)


def _fields_of(first_line: str) -> set[str]:
    stripped = first_line.lstrip("\ufeff").strip()
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError:
            return set()
        return set(obj) if isinstance(obj, dict) else set()
    header = next(csv.reader(io.StringIO(stripped)), [])
    return {h.strip() for h in header}


def detect_format(fields: set[str]) -> TraceFormat | None:
    if set(readers.BAILIAN_FIELDS) <= fields:
        return "bailian"
    if set(readers.MOONCAKE_FIELDS) <= fields:
        return "mooncake"
    if set(readers.AZURE_FIELDS) <= fields:
        return "azure"
    if set(readers.BURSTGPT_FIELDS) <= fields:
        return "burstgpt"
    return None

"""One reader per trace format. Each streams its file line by line and yields raw ``TraceRow``s (absolute time in
the source's own unit turned into seconds); ordering, windows and skips are checked once, in ``detect.py``.

Formats and the public traces they come from:

* Mooncake JSONL (github.com/kvcache-ai/Mooncake, ``FAST25-release/traces``): ``timestamp`` (ms from the trace
  start), ``input_length``, ``output_length``, ``hash_ids`` (one id per 512-token block).
* Azure LLM inference CSV, 2023 and 2024 (github.com/Azure/AzurePublicDataset, ``AzureLLMInferenceTrace_*``):
  ``TIMESTAMP`` (an absolute datetime), ``ContextTokens``, ``GeneratedTokens``.
* BurstGPT CSV (github.com/HPMLL/BurstGPT): ``Timestamp`` (s), ``Model``, ``Request tokens``, ``Response tokens``,
  ``Log Type`` and, in later releases, ``Session ID``; ``Response tokens`` = 0 marks a failed request.
* Alibaba Bailian session traces JSONL (github.com/alibaba-edu/qwen-bailian-usagetraces-anon): ``chat_id``,
  ``parent_chat_id`` (-1 for a first turn), ``timestamp`` (s), ``input_length``, ``output_length``, ``turn``,
  ``hash_ids``.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterable, Iterator
from typing import Any

from engine.workload.traces.rows import TraceError, TraceRow, finite_number, positive_length

MOONCAKE_FIELDS = ("timestamp", "input_length", "output_length")
BAILIAN_FIELDS = ("chat_id", "parent_chat_id", "turn", "timestamp", "input_length", "output_length")
AZURE_FIELDS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
BURSTGPT_FIELDS = ("Timestamp", "Request tokens", "Response tokens")


def _json_objects(path: str, f: Iterable[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    for lineno, line in enumerate(f, start=getattr(f, "first_line", 1)):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TraceError(f"{path}:{lineno}: not valid JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise TraceError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
        yield lineno, obj


def _need(path: str, lineno: int, obj: dict[str, Any], fields: tuple[str, ...]) -> None:
    missing = [name for name in fields if name not in obj]
    if missing:
        raise TraceError(f"{path}:{lineno}: missing {', '.join(repr(m) for m in missing)}")


def _hash_ids(path: str, lineno: int, value: object) -> tuple[int, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(h, int) and not isinstance(h, bool) for h in value):
        raise TraceError(f"{path}:{lineno}: hash_ids must be a list of integers")
    return tuple(value)


def read_mooncake(path: str, f: Iterable[str]) -> Iterator[TraceRow]:
    for lineno, obj in _json_objects(path, f):
        _need(path, lineno, obj, MOONCAKE_FIELDS)
        yield TraceRow(
            row=lineno,
            t_s=finite_number(path, lineno, "timestamp", obj["timestamp"]) / 1000.0,
            input_tokens=positive_length(path, lineno, "input_length", obj["input_length"]),
            output_tokens=positive_length(path, lineno, "output_length", obj["output_length"], allow_zero=True),
            hash_ids=_hash_ids(path, lineno, obj.get("hash_ids")),
        )


def read_bailian(path: str, f: Iterable[str]) -> Iterator[TraceRow]:
    for lineno, obj in _json_objects(path, f):
        _need(path, lineno, obj, BAILIAN_FIELDS)
        chat = int(finite_number(path, lineno, "chat_id", obj["chat_id"]))
        parent = int(finite_number(path, lineno, "parent_chat_id", obj["parent_chat_id"]))
        yield TraceRow(
            row=lineno,
            t_s=finite_number(path, lineno, "timestamp", obj["timestamp"]),
            input_tokens=positive_length(path, lineno, "input_length", obj["input_length"]),
            output_tokens=positive_length(path, lineno, "output_length", obj["output_length"], allow_zero=True),
            hash_ids=_hash_ids(path, lineno, obj.get("hash_ids")),
            chat_id=chat,
            parent_chat_id=None if parent < 0 else parent,
            turn=positive_length(path, lineno, "turn", obj["turn"]),
        )


def _csv_rows(path: str, f: Iterable[str], fields: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    shift = getattr(f, "line_shift", 0)  # resuming mid-file: csv counts from the header it was given again
    reader = csv.reader(f)
    header = [h.strip() for h in next(reader, [])]
    missing = [name for name in fields if name not in header]
    if missing:
        raise TraceError(f"{path}:1: missing column(s) {', '.join(missing)} (found: {', '.join(header) or 'none'})")
    index = {name: header.index(name) for name in fields}
    for row in reader:
        lineno = reader.line_num + shift
        if not row or not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise TraceError(f"{path}:{lineno}: {len(row)} cells, the header has {len(header)}")
        yield lineno, {name: row[i].strip() for name, i in index.items()}


def parse_datetime(path: str, lineno: int, text: str) -> float:
    """Azure's TIMESTAMP ("2023-11-16 18:15:46.6805900", 7 fractional digits) as POSIX seconds."""
    try:
        stamp = dt.datetime.fromisoformat(text)
    except ValueError:
        raise TraceError(f"{path}:{lineno}: TIMESTAMP is not a date and time ({text!r})") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


def read_azure(path: str, f: Iterable[str]) -> Iterator[TraceRow]:
    for lineno, cells in _csv_rows(path, f, AZURE_FIELDS):
        yield TraceRow(
            row=lineno,
            t_s=parse_datetime(path, lineno, cells["TIMESTAMP"]),
            input_tokens=positive_length(path, lineno, "ContextTokens", cells["ContextTokens"]),
            output_tokens=positive_length(path, lineno, "GeneratedTokens", cells["GeneratedTokens"], allow_zero=True),
        )


def read_burstgpt(path: str, f: Iterable[str]) -> Iterator[TraceRow]:
    for lineno, cells in _csv_rows(path, f, BURSTGPT_FIELDS):
        yield TraceRow(
            row=lineno,
            t_s=finite_number(path, lineno, "Timestamp", cells["Timestamp"]),
            input_tokens=positive_length(path, lineno, "Request tokens", cells["Request tokens"]),
            output_tokens=positive_length(path, lineno, "Response tokens", cells["Response tokens"], allow_zero=True),
        )

"""Opening a recording and reading its facts by time range, whatever state the file is in.

- Not a recording (a text file, an SQLite file without wattload's meta table), or a file from a newer schema:
  ``RecordingError`` with one line, before anything else is read.
- Killed mid-run (no ``closed`` marker) or physically truncated/damaged: opens, and replays the part that is
  readable, with one warning saying so.
- A row whose values cannot be a fact: skipped and counted (``corrupt_rows``), never fatal.

Memory stays bounded for any file size: facts are read in pages by rowid, and a time is found by a binary search
on the rowid (the fact tables are written in arrival order, so ``t_us`` never decreases with the id).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pydantic import ValidationError

from engine import __version__
from engine.records import ControlEvent, RequestRecord, StreamProgress, TelemetrySample
from engine.storage.schema import (
    EVENTS,
    FACT_TABLES,
    FORMAT_TAG,
    META,
    PROGRESS,
    REQUESTS,
    SCHEMA_VERSION,
    SNAPSHOTS,
    STRINGS,
    TELEMETRY,
    Table,
)
from engine.storage.store import (
    CorruptRow,
    RecordingError,
    RecordingMeta,
    decode_event,
    decode_progress,
    decode_request,
    decode_telemetry,
    decode_token_times,
)
from engine.telemetry.samples import ServerSample

PAGE_ROWS = 4096
FIRST_PAGE_ROWS = 128  # after a seek only a few seconds of rows are wanted: start small, double up to PAGE_ROWS
_SQLITE_MAGIC = b"SQLite format 3\x00"


class _Damaged(Exception):
    """A page could not be read: the table ends here for this reader."""


@dataclass
class _Health:
    """Problems found while reading, shared by every connection to one file (the player reads from two threads)."""

    corrupt: set[tuple[str, Any]] = field(default_factory=set)  # (table, id): several readers, each row once
    damaged_at_us: int | None = None  # reading stopped early at this time in some table
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count_corrupt(self, table: str, row_id: Any) -> None:
        with self.lock:
            self.corrupt.add((table, row_id))

    @property
    def corrupt_rows(self) -> int:
        return len(self.corrupt)


def _connect(path: Path, immutable: bool = False, lenient: bool = False) -> sqlite3.Connection:
    """Read-only. ``lenient`` reads a file shorter than its header says (cut while copying): SQLite refuses
    such a file outright unless the schema is "writable", which on a read-only connection changes nothing else."""
    flag = "immutable=1" if immutable else "mode=ro"
    conn = sqlite3.connect(f"file:{quote(str(path.resolve()))}?{flag}", uri=True, check_same_thread=False)
    conn.execute("PRAGMA query_only=1")
    if lenient:
        conn.execute("PRAGMA writable_schema=ON")
    return conn


def _one_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class Recording:
    """A read-only view of one recording file. Use ``open_recording``; ``reopen`` gives a second connection (for
    another thread) that shares the validated metadata and the damage counters."""

    def __init__(self, path: Path, conn: sqlite3.Connection, meta: RecordingMeta, limits: dict[str, int | None],
                 last_t_us: dict[str, int], health: _Health, notes: list[str], strings: dict[int, str],
                 immutable: bool = False, lenient: bool = False) -> None:
        self.path = path
        self.immutable = immutable
        self.lenient = lenient
        self.meta = meta
        self._conn = conn
        self._limits = limits
        self._last_t_us = last_t_us
        self._health = health
        self._notes = notes
        self._strings = strings
        self._events: list[tuple[int, ControlEvent]] | None = None
        self._server_samples: list[tuple[int, ServerSample]] | None = None

    # ------------------------------------------------------------------------------------------ overview

    @property
    def duration_us(self) -> int:
        return max(self._last_t_us.values(), default=0)

    @property
    def duration_s(self) -> float:
        return self.duration_us / 1e6

    @property
    def closed_cleanly(self) -> bool:
        return self.meta.closed is not None and not self.meta.closed.failed

    @property
    def corrupt_rows(self) -> int:
        return self._health.corrupt_rows

    @property
    def warnings(self) -> list[str]:
        """One line per problem: the open-time note (killed, truncated, failed) and skipped rows, if any."""
        out = list(self._notes)
        h = self._health
        if h.damaged_at_us is not None and not self._notes:
            out.append(f"{self.path.name} is damaged after {h.damaged_at_us / 1e6:.1f} s: replaying what is readable")
        if h.corrupt_rows:
            out.append(f"{h.corrupt_rows} corrupt row{'s' if h.corrupt_rows != 1 else ''} skipped")
        return out

    @property
    def warning(self) -> str:
        return "; ".join(self.warnings)

    def row_count(self, table: str) -> int:
        limit = self._limits.get(table)
        try:
            if limit is None:
                row = self._conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            else:
                row = self._conn.execute(f"SELECT count(*) FROM {table} WHERE id <= ?", (limit,)).fetchone()
        except sqlite3.DatabaseError:
            return 0
        return int(row[0])

    def reopen(self) -> Recording:
        conn = _connect(self.path, immutable=self.immutable, lenient=self.lenient)
        return Recording(self.path, conn, self.meta, self._limits, self._last_t_us, self._health, self._notes,
                         self._strings, self.immutable, self.lenient)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------ facts

    def events(self) -> list[tuple[int, ControlEvent]]:
        """Every control event as (arrival µs, event with its stamp in ns since t0); small, so read once."""
        if self._events is None:
            self._events = [(row[1], ev) for row, ev in self._decoded(EVENTS, decode_event)]
        return self._events

    def cursor(self, table: str) -> FactCursor:
        """A forward reader over one fact table (requests, progress or telemetry), positioned at the start."""
        if table == "requests":
            return FactCursor(self, table, self._request_select(), self._decode_request_row, "r.id")
        if table == "progress":
            # older files lack later columns: they read as their defaults (no first tokens, no ITL on ticks)
            select = f"SELECT {PROGRESS.column_list_for(self._columns('progress'))} FROM progress"
            return FactCursor(self, table, select, decode_progress)
        if table == "telemetry":
            return FactCursor(self, table, TELEMETRY.select(), decode_telemetry)
        raise ValueError(f"not a paged fact table: {table}")

    def _columns(self, table: str) -> set[str]:
        return {row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")}

    @property
    def itl_on_ticks(self) -> bool:
        """Progress ticks carry ITL gaps (schema 3 on); older files have ITL only in ``token_times``."""
        return "itl" in self._columns("progress")

    def requests(self, t_from_us: int | None = None, t_to_us: int | None = None) -> Iterator[RequestRecord]:
        """Requests that arrived in (t_from_us, t_to_us], in arrival order (stamps in ns since t0)."""
        yield from self._range("requests", t_from_us, t_to_us)

    def progress(self, t_from_us: int | None = None, t_to_us: int | None = None) -> Iterator[StreamProgress]:
        yield from self._range("progress", t_from_us, t_to_us)

    def telemetry(self, t_from_us: int | None = None, t_to_us: int | None = None) -> Iterator[TelemetrySample]:
        yield from self._range("telemetry", t_from_us, t_to_us)

    def server_samples(self) -> list[tuple[int, ServerSample]]:
        """Every server-metrics sample as (arrival µs, sample with its stamp in ns since t0); read once. Empty for
        recordings made before the table existed, or without server metrics."""
        if self._server_samples is None:
            from engine.storage.server_rows import read_server_samples

            self._server_samples, _bad = read_server_samples(self._conn)
        return self._server_samples

    def snapshots(self) -> list[tuple[int, dict[str, Any]]]:
        """The stored snapshots as (µs since t0, JSON data); unreadable ones are skipped and counted."""
        out: list[tuple[int, dict[str, Any]]] = []
        try:
            rows = self._conn.execute(SNAPSHOTS.select() + " ORDER BY id").fetchall()
        except sqlite3.DatabaseError:
            return out
        for sid, t, text in rows:
            try:
                out.append((int(t), json.loads(text)))
            except (TypeError, ValueError):
                self._health.count_corrupt("snapshots", sid)
        return out

    def _range(self, table: str, t_from_us: int | None, t_to_us: int | None) -> Iterator[Any]:
        cur = self.cursor(table)
        if t_from_us is not None:
            cur.seek(t_from_us)
        end = self.duration_us if t_to_us is None else t_to_us
        while chunk := cur.take(end, max_rows=PAGE_ROWS):  # empty only at the end (corrupt rows are skipped inside)
            yield from chunk

    def _decoded(self, table: Table, decode: Callable[[Any], Any]) -> list[tuple[Any, Any]]:
        """A whole (small) table, decoded; rows after a damaged page are lost, not fatal."""
        out = []
        limit = self._limits.get(table.name)
        sql = table.select() + ("" if limit is None else f" WHERE id <= {int(limit)}")
        try:
            for row in self._conn.execute(sql + " ORDER BY id"):
                try:
                    out.append((row, decode(row)))
                except (CorruptRow, TypeError, ValueError):
                    self._health.count_corrupt(table.name, row[0])
        except sqlite3.DatabaseError:
            pass  # the open-time scan already said the file is damaged
        return out

    def _rows(self, select: str, table: str, after_id: int, limit_rows: int | None = None,
              id_col: str = "id") -> list[tuple[Any, ...]]:
        """Rows with id > after_id (up to the readable limit), in id order."""
        limit = self._limits.get(table)
        sql = f"{select} WHERE {id_col} > ?"
        args: list[Any] = [after_id]
        if limit is not None:
            sql += f" AND {id_col} <= ?"
            args.append(limit)
        sql += f" ORDER BY {id_col}"
        if limit_rows is not None:
            sql += " LIMIT ?"
            args.append(limit_rows)
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise _Damaged(_one_line(exc)) from None

    def _request_select(self) -> str:
        # schema <= 2 files lack turn (read as 0: single requests), ttfo_us (NULL) and rchunks (0)
        cols = REQUESTS.column_list_for(self._columns("requests"), skip=("detail",), prefix="r.")
        if self.meta.record_tokens:
            return f"SELECT {cols}, r.detail, tt.gaps, tt.response_id FROM requests r " \
                   "LEFT JOIN token_times tt ON tt.request = r.id"
        return f"SELECT {cols}, r.detail, NULL, NULL FROM requests r"

    def _decode_request_row(self, row: tuple[Any, ...]) -> RequestRecord:
        *base, detail_id, gaps, response_id = row
        detail = "" if detail_id is None else self._strings.get(detail_id, "")
        record = decode_request(base, detail)
        if gaps is None:
            return record if response_id is None else _with(record, response_id=response_id)
        times = decode_token_times(gaps, record.t_scheduled_ns)
        return _with(record, token_times_ns=times, response_id=response_id if isinstance(response_id, str) else None)

    def _find_first_after(self, table: str, t_us: int) -> int | None:
        """The smallest id whose t_us > t_us (binary search on the rowid; ~20 point lookups for any size)."""
        limit = self._limits.get(table)
        try:
            row = self._conn.execute(f"SELECT max(id) FROM {table}").fetchone()
        except sqlite3.DatabaseError:
            row = (limit,)
        hi = (row[0] or 0) if limit is None else min(row[0] or 0, limit)
        lo, hi = 1, hi + 1
        found: int | None = None
        sql = f"SELECT id, t_us FROM {table} WHERE id >= ? AND id < ? ORDER BY id LIMIT 1"
        while lo < hi:
            mid = (lo + hi) // 2
            try:
                hit = self._conn.execute(sql, (mid, hi)).fetchone()
            except sqlite3.DatabaseError:
                hit = None
            if hit is None:
                hi = mid
                continue
            rid, t = hit
            if type(t) is int and t > t_us:
                found = rid if found is None else min(found, rid)
                hi = mid
            else:
                lo = rid + 1
        return found


def _with(record: RequestRecord, **changes: Any) -> RequestRecord:
    return replace(record, **changes)


class FactCursor:
    """Reads one fact table forward in pages; ``take(t)`` returns the decoded facts that arrived up to t."""

    def __init__(self, rec: Recording, table: str, select: str, decode: Callable[[Any], Any],
                 id_col: str = "id") -> None:
        self._rec = rec
        self._table = table
        self._id_col = id_col
        self._select = select
        self._decode = decode
        self._after_id = 0
        self._buffer: list[tuple[Any, ...]] = []
        self._pos = 0
        self._page = FIRST_PAGE_ROWS
        self.exhausted = False

    def seek(self, t_us: int) -> None:
        """Position so that the next fact is the first that arrived after ``t_us``."""
        first = self._rec._find_first_after(self._table, t_us)
        self._buffer, self._pos, self._page = [], 0, FIRST_PAGE_ROWS
        if first is None:
            self._after_id, self.exhausted = 0, True
        else:
            self._after_id, self.exhausted = first - 1, False

    def rewind(self) -> None:
        self._after_id, self._buffer, self._pos, self.exhausted = 0, [], 0, False
        self._page = FIRST_PAGE_ROWS

    def take(self, t_us: int, max_rows: int | None = None) -> list[Any]:
        """Decoded facts that arrived at or before ``t_us`` (at most ``max_rows``); corrupt rows are counted."""
        out: list[Any] = []
        health = self._rec._health
        while self._fill():
            row = self._buffer[self._pos]
            t = row[1]
            if type(t) is not int:
                self._pos += 1
                health.count_corrupt(self._table, row[0])
                continue
            if t > t_us or (max_rows is not None and len(out) >= max_rows):
                break
            self._pos += 1
            try:
                out.append(self._decode(row))
            except (CorruptRow, TypeError, ValueError, OverflowError):
                health.count_corrupt(self._table, row[0])
        return out

    def _fill(self) -> bool:
        if self._pos < len(self._buffer):
            return True
        if self.exhausted:
            return False
        try:
            rows = self._rec._rows(self._select, self._table, self._after_id, self._page, self._id_col)
            self._page = min(PAGE_ROWS, 2 * self._page)
        except _Damaged:
            rows = []
            h = self._rec._health
            with h.lock:
                last = self._buffer[-1][1] if self._buffer and type(self._buffer[-1][1]) is int else 0
                h.damaged_at_us = last if h.damaged_at_us is None else min(h.damaged_at_us, last)
        self._buffer, self._pos = rows, 0
        if not rows:
            self.exhausted = True
            return False
        self._after_id = rows[-1][0]
        return True


# ---------------------------------------------------------------------------------------------- opening


def open_recording(path: str | Path) -> Recording:
    """Open and validate a recording; raises ``RecordingError`` (one line) when it cannot be replayed at all."""
    p = Path(path)
    _check_header(p)
    last_error: sqlite3.DatabaseError | None = None
    # read-only; then leniently (a cut file); then the main file alone (a read-only directory cannot hold the
    # WAL index, so a WAL left by a killed recorder is ignored there)
    for immutable, lenient in ((False, False), (False, True), (True, True)):
        try:
            conn = _connect(p, immutable=immutable, lenient=lenient)
        except sqlite3.DatabaseError as exc:
            last_error = exc
            continue
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            conn.close()
            last_error = exc
            continue
        try:
            rec = _validate(p, conn, damaged=lenient)
        except BaseException:
            conn.close()
            raise
        rec.immutable, rec.lenient = immutable, lenient
        return rec
    raise RecordingError(f"{p}: cannot open ({_one_line(last_error or Exception('unknown error'))})")


def _check_header(p: Path) -> None:
    try:
        with p.open("rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except FileNotFoundError:
        raise RecordingError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise RecordingError(f"{p}: is a directory, not a recording") from None
    except OSError as exc:
        raise RecordingError(f"{p}: cannot read ({exc.strerror})") from None
    if not head:
        raise RecordingError(f"{p} is not a wattload recording (empty file)")
    if head != _SQLITE_MAGIC:
        raise RecordingError(f"{p} is not a wattload recording (not an SQLite file)")


def _validate(p: Path, conn: sqlite3.Connection, damaged: bool = False) -> Recording:
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        user_version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise RecordingError(f"{p} is not a readable wattload recording ({_one_line(exc)})") from None
    if "meta" not in tables:
        raise RecordingError(f"{p} is not a wattload recording (an SQLite file without wattload's meta table)")
    raw = _read_meta(p, conn)
    if raw.get("format") != FORMAT_TAG:
        raise RecordingError(f"{p} is not a wattload recording (its meta table is not wattload's)")
    schema = raw.get("schema_version", user_version)
    if not isinstance(schema, int):
        schema = user_version
    if max(schema, user_version) > SCHEMA_VERSION:
        by = raw.get("wattload_version") or "?"
        raise RecordingError(
            f"{p}: recorded by wattload {by} with schema {max(schema, user_version)}; this version "
            f"({__version__}) reads up to {SCHEMA_VERSION}"
        )
    meta = _meta_model(raw)
    missing = [t for t in FACT_TABLES if t not in tables]
    if missing:
        raise RecordingError(f"{p} is a damaged wattload recording (missing tables: {', '.join(missing)})")

    health = _Health(lock=threading.Lock())
    strings = _read_strings(conn, health)
    limits: dict[str, int | None] = dict.fromkeys(FACT_TABLES)
    last_t: dict[str, int] = {}
    damaged = damaged or _short_file(p, conn)
    for table in FACT_TABLES:
        try:
            row = conn.execute(f"SELECT t_us FROM {table} ORDER BY id DESC LIMIT 1").fetchone()
            last_t[table] = row[0] if row and type(row[0]) is int else 0
        except sqlite3.DatabaseError:
            damaged = True
    if damaged:
        cut: list[int] = []
        for table in FACT_TABLES:
            limits[table], last_t[table], was_cut = _readable_prefix(conn, table)
            if was_cut and table in ("requests", "progress"):
                cut.append(last_t[table])
        if cut:  # throughput is only whole up to where the first of its tables breaks off: replay up to there
            end = min(cut)
            last_t = {table: min(t, end) for table, t in last_t.items()}
    notes: list[str] = []
    duration = max(last_t.values(), default=0) / 1e6
    if damaged:
        notes.append(f"{p.name} is truncated or damaged: replaying the first {duration:.1f} s it holds")
    elif meta.closed is None:
        notes.append(f"{p.name} was not closed cleanly (the recorder was killed?): replaying the {duration:.1f} s "
                     "it holds")
    elif meta.closed.failed:
        notes.append(meta.closed.failed)
    return Recording(p, conn, meta, limits, last_t, health, notes, strings)


def _read_meta(p: Path, conn: sqlite3.Connection) -> dict[str, Any]:
    try:
        rows = conn.execute(META.select()).fetchall()
    except sqlite3.DatabaseError as exc:
        raise RecordingError(f"{p} is a damaged wattload recording (meta table unreadable: {_one_line(exc)})") from None
    raw: dict[str, Any] = {}
    for key, value in rows:
        try:
            raw[str(key)] = json.loads(value)
        except (TypeError, ValueError):
            continue  # one damaged key: the model's default stands in for it
    return raw


def _meta_model(raw: dict[str, Any]) -> RecordingMeta:
    data = dict(raw)
    for _ in range(len(data) + 1):
        try:
            return RecordingMeta.model_validate(data)
        except ValidationError as exc:
            bad = {e["loc"][0] for e in exc.errors() if e["loc"]}
            if not bad & data.keys():
                break
            for key in bad:
                data.pop(str(key), None)
    return RecordingMeta()


def _read_strings(conn: sqlite3.Connection, health: _Health) -> dict[int, str]:
    out: dict[int, str] = {}
    try:
        for sid, text in conn.execute(STRINGS.select()):
            if isinstance(text, str):
                out[sid] = text
            else:
                health.count_corrupt("strings", sid)
    except sqlite3.DatabaseError:
        pass
    return out


def _short_file(p: Path, conn: sqlite3.Connection) -> bool:
    """The main file is shorter than its header says (cut while copying) and no WAL holds the rest."""
    if Path(f"{p}-wal").exists():
        return False
    try:
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    except sqlite3.DatabaseError:
        return True
    return p.stat().st_size < pages * size


def _readable_prefix(conn: sqlite3.Connection, table: str) -> tuple[int, int, bool]:
    """(last id, its t_us, whether damage cut the table) for the rows that can be read in order."""
    last_id, last_t = 0, 0
    try:
        for rid, t in conn.execute(f"SELECT id, t_us FROM {table} ORDER BY id"):
            last_id = rid
            if type(t) is int:
                last_t = t
    except sqlite3.DatabaseError:
        return last_id, last_t, True
    return last_id, last_t, False

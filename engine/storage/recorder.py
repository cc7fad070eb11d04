"""The recorder: a SessionSink that writes every fact of a session into one SQLite file, off the engine's thread.

The controller thread only stamps each batch with its arrival time and appends it to a queue (no I/O, no
encoding); a writer thread encodes and inserts, and commits every ``commit_interval_s`` (0.5 s), so a kill -9
loses at most the last half second and the file stays valid (WAL mode: a commit is a durable append, and a torn
append is ignored on the next open). ``synchronous=NORMAL`` in WAL mode survives a crash of the process (not of
the OS) without an fsync per commit.

A recorder never raises into the engine: when the disk fills up or the file becomes unwritable it stops, keeps
what it has committed, sets ``failed`` and reports one WARNING event through ``on_warning``; the run goes on.
"""

from __future__ import annotations

import json
import os
import queue
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel

from engine import __version__
from engine.control import SessionMeta
from engine.records import ControlEvent, EventKind, RequestRecord, StreamProgress, TelemetrySample
from engine.redact import redact_url
from engine.snapshot import GpuStats, Snapshot
from engine.storage import schema
from engine.storage.schema import APPLICATION_ID, FILE_SUFFIX, SCHEMA_VERSION, create_statements
from engine.storage.server_rows import SERVER_SQL, encode_server_sample
from engine.storage.store import (
    ClosedInfo,
    GpuLabel,
    RecordingMeta,
    Redactor,
    SessionLabels,
    encode_event,
    encode_progress,
    encode_request,
    encode_telemetry,
    encode_token_times,
)
from engine.telemetry.samples import ServerSample

if TYPE_CHECKING:
    from engine.config import RunConfig
    from engine.pricing import PricingProfile
    from engine.sysinfo import SystemInfo

WarningCallback = Callable[[ControlEvent], None]

COMMIT_INTERVAL_S = 0.5
MAX_BACKLOG = 500_000  # facts queued but not yet written: beyond this the disk cannot keep up; stop, don't eat RAM
_MAX_DETAIL = 200
_CLOSE_TIMEOUT_S = 30.0
_NEVER = -(2**62)

# Statements from the schema (engine/storage/schema.py). Requests carry their own id (token_times joins on it);
# every other fact table lets SQLite number its rows in arrival order.
_REQ_SQL = schema.REQUESTS.insert()
_TOK_SQL = schema.TOKEN_TIMES.insert()
_PROG_SQL = schema.PROGRESS.insert(skip=("id",))
_TEL_SQL = schema.TELEMETRY.insert(skip=("id",))
_EVT_SQL = schema.EVENTS.insert(skip=("id",))
_SNAP_SQL = schema.SNAPSHOTS.insert(skip=("id",))
_META_SQL = schema.META.insert()
_META_REPLACE_SQL = schema.META.insert(replace=True)
_STRING_SQL = schema.STRINGS.insert()
_META_SELECT_SQL = schema.META.select()


def _slug(text: str, limit: int = 40) -> str:
    """A file-name-safe piece: "meta-llama/Llama-3 8B" -> "meta-llama-Llama-3-8B"."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return s[:limit] or "unknown"


def default_recording_path(model: str = "", *, host: str | None = None, when: datetime | None = None,
                           directory: str | Path = "recordings") -> Path:
    """recordings/20261123-0812_host_model.wattload.sqlite (wall time is a label; a clash gets -2, -3, ...)."""
    when = when or datetime.now()
    host = host if host is not None else socket.gethostname().split(".")[0]
    stem = f"{when:%Y%m%d-%H%M}_{_slug(host)}_{_slug(model or 'model')}"
    base = Path(directory)
    path = base / f"{stem}{FILE_SUFFIX}"
    n = 2
    while path.exists():
        path = base / f"{stem}-{n}{FILE_SUFFIX}"
        n += 1
    return path


def _as_data(obj: Any) -> Any:
    if obj is None:
        return None
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, Mapping):
        return json.loads(json.dumps(dict(obj), default=str))
    raise TypeError(f"cannot record {type(obj).__name__} as metadata")


def _describe_failure(exc: BaseException) -> str:
    """One line on why writing stopped, by SQLite's error name where there is one."""
    text = str(exc).strip() or type(exc).__name__
    name = getattr(exc, "sqlite_errorname", "") or ""
    low = text.lower()
    if name == "SQLITE_FULL" or "full" in low or "no space" in low:
        return f"disk full ({text})"
    if name.startswith("SQLITE_IOERR"):
        return f"cannot write to the disk: full or failing ({text})"
    if name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")) or "readonly" in low \
            or "permission" in low:
        return f"file not writable ({text})"
    return text


LATE_START_US = 1_000_000  # a recorder created this long after the session's t0 records from then on


class Fact(StrEnum):
    """What a queued batch holds (the recorder thread writes each kind to its own table)."""

    REQUESTS = "requests"
    PROGRESS = "progress"
    TELEMETRY = "telemetry"
    EVENTS = "events"
    SNAPSHOTS = "snapshots"
    GPU_INFO = "gpu_info"  # telemetry source and GPU names, once the first snapshot knows them
    SERVER_SAMPLES = "server_samples"  # scraped server metrics and remote GPU readings

class Recorder:
    """Writes one session into ``path`` (a new file; parent directories are created).

    ``t0_ns`` is the session start that every stored time is relative to: the aggregator's t0, so replayed
    figures line up tick for tick with what the live run showed. Left None (a recording started before the
    workers are ready), it is taken from the session's START event, whose stamp is that t0; nothing is written
    until then (or until the first request, or close). ``secrets`` are values (the API key) scrubbed from every
    string written, in addition to well-known secret shapes. GPU names and the telemetry source come from
    ``system_info`` (a SystemInfo), else from the first snapshot that reports them.
    """

    def __init__(
        self,
        path: str | Path | None,
        *,
        config_dump: Mapping[str, Any],
        meta: SessionMeta,
        system_info: Any = None,
        pricing_dump: Any = None,
        workload_dump: Any = None,
        record_tokens: bool = False,
        t0_ns: int | None = None,
        on_warning: WarningCallback | None = None,
        secrets: Iterable[str | None] = (),
        gpus: Mapping[int, str] | None = None,
        telemetry_source: str | None = None,
        window_s: float | None = None,
        snapshot_interval_s: float | None = None,
        commit_interval_s: float = COMMIT_INTERVAL_S,
        clock: Callable[[], int] = time.perf_counter_ns,
        start_control: Mapping[str, Any] | None = None,
    ) -> None:
        self._clock = clock  # arrival stamps; a synthetic session passes its own virtual clock
        self.t0_ns = clock() if t0_ns is None else t0_ns
        self.t0_known = t0_ns is not None
        # started partway through a session (the r key): everything before now is not in this file
        late_us = (clock() - t0_ns) // 1000 if t0_ns is not None else 0
        self.recorded_from_us = late_us if late_us >= LATE_START_US else 0
        self._start_control = dict(start_control) if start_control and self.recorded_from_us else None
        self.record_tokens = record_tokens
        self.on_warning = on_warning
        self.failed: str | None = None
        self.failure_reason: str | None = None  # the cause alone ("disk full (...)"), for a line that names the file
        self._redact = Redactor(secrets)
        self._commit_interval_s = commit_interval_s
        self.window_s = float(window_s) if window_s is not None else 10.0
        self.snapshot_interval_s = float(snapshot_interval_s or max(1.0, self.window_s))
        self.path = Path(path) if path is not None else default_recording_path(meta.model)
        self._queue: queue.SimpleQueue[tuple[Fact, int, Any]] = queue.SimpleQueue()
        self._backlog = 0  # facts queued, approximately (a plain int: GIL-atomic enough for a threshold)
        self._stopped = False  # no more facts accepted (failed or closed)
        self._closing = threading.Event()
        self._last_snapshot_t: float | None = None
        self._last_snapshot: Snapshot | None = None
        self._last_t_us = 0
        self._gpu_info_pending = True  # until the metadata names the telemetry source and the GPUs
        self.requests_written = 0
        self._conn: sqlite3.Connection | None = None
        try:
            config = self._redact.data(_as_data(config_dump) or {})
            if window_s is None and isinstance(config.get("window_s"), int | float):
                self.window_s = float(config["window_s"])
                self.snapshot_interval_s = float(snapshot_interval_s or max(1.0, self.window_s))
            self._conn = self._create(config, meta, system_info, pricing_dump, workload_dump, gpus, telemetry_source)
        except Exception as exc:  # no directory, no permission, not a path: a warning, never an exception
            self._fail(exc)
            self._thread: threading.Thread | None = None
            return
        self._thread = threading.Thread(target=self._run, name="wattload-recorder", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------------- sink surface

    def on_records(self, records: Sequence[RequestRecord]) -> None:
        self._put(Fact.REQUESTS, records)

    def on_progress(self, progress: Sequence[StreamProgress]) -> None:
        self._put(Fact.PROGRESS, progress)

    def on_telemetry(self, samples: Sequence[TelemetrySample]) -> None:
        self._put(Fact.TELEMETRY, samples)

    def on_event(self, event: ControlEvent) -> None:
        self._put(Fact.EVENTS, (event,))

    def on_server_samples(self, samples: Sequence[ServerSample]) -> None:
        self._put(Fact.SERVER_SAMPLES, samples)

    def on_snapshot(self, snapshot: Snapshot) -> None:
        """Keeps the first snapshot, one per ``snapshot_interval_s`` and (at close) the last one."""
        if self._stopped:
            return
        self._last_snapshot = snapshot
        if self._gpu_info_pending and snapshot.gpu.source:
            self._gpu_info_pending = not snapshot.gpu.gpus
            self._put(Fact.GPU_INFO, (snapshot.gpu,))
        last = self._last_snapshot_t
        if last is None or snapshot.t_s - last >= self.snapshot_interval_s - 1e-9:
            self._last_snapshot_t = snapshot.t_s
            self._put(Fact.SNAPSHOTS, (snapshot,))

    def close(self) -> None:
        """Flush everything queued, mark the file closed and make it one self-contained file (no -wal)."""
        if self._thread is None or self._closing.is_set():
            return
        last = self._last_snapshot
        if last is not None and not self._stopped and last.t_s != self._last_snapshot_t:
            self._queue.put((Fact.SNAPSHOTS, self._clock(), (last,)))
        self._closing.set()
        self._thread.join(_CLOSE_TIMEOUT_S)

    @property
    def closed(self) -> bool:
        return self._closing.is_set() and (self._thread is None or not self._thread.is_alive())

    def _put(self, kind: Fact, items: Sequence[Any]) -> None:
        if self._stopped:
            return
        try:
            batch = tuple(items)
            if not batch:
                return
            self._backlog += len(batch)
            if self._backlog > MAX_BACKLOG:
                self._fail(RuntimeError(f"the disk cannot keep up ({MAX_BACKLOG:,} facts waiting)"))
                return
            self._queue.put((kind, self._clock(), batch))
        except Exception as exc:  # never into the engine: a bad batch stops the recording, not the run
            self._fail(exc)

    # ------------------------------------------------------------------------------------------- file

    def _create(self, config: dict[str, Any], meta: SessionMeta, system_info: Any, pricing: Any, workload: Any,
                gpus: Mapping[int, str] | None, telemetry_source: str | None) -> sqlite3.Connection:
        for up in (self.path.parent, *self.path.parent.parents):  # mkdir would only say "File exists"
            if up.exists():
                if not up.is_dir():
                    raise OSError(f"{up} is not a directory")
                break
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            raise OSError(f"{self.path} already exists; a recording is never overwritten")
        for leftover in (Path(f"{self.path}-wal"), Path(f"{self.path}-journal")):
            if leftover.exists():  # SQLite would try to apply it to the new file
                raise OSError(f"{leftover} is left over from another recording; remove it or pick another name")
        system = self._redact.data(_as_data(system_info))
        if gpus is None:
            gpus = {int(g["index"]): str(g.get("name", "")) for g in (system or {}).get("gpus", [])}
        if telemetry_source is None:
            telemetry_source = (system or {}).get("telemetry_source") or ""
        self._gpu_info_pending = not (telemetry_source and gpus)
        info = RecordingMeta(
            wattload_version=__version__,
            wall_start=datetime.now().astimezone().isoformat(timespec="seconds"),
            t0_ns=self.t0_ns,
            host=socket.gethostname(),
            session=SessionLabels(endpoint=self._redact.text(meta.endpoint), model=meta.model,
                                  workload=meta.workload),
            config=config,
            workload=self._redact.data(_as_data(workload)),
            pricing=self._redact.data(_as_data(pricing)),
            system=system,
            gpus=[GpuLabel(index=i, name=n) for i, n in sorted(gpus.items())],
            telemetry_source=telemetry_source,
            window_s=self.window_s,
            record_tokens=self.record_tokens,
            snapshot_interval_s=self.snapshot_interval_s,
            recorded_from_us=self.recorded_from_us,
            start_control=self._start_control,
        )
        # Owner-only from the first byte: the file holds the endpoint, the settings and the system's metadata.
        # O_EXCL: never write into a file someone else just created (SQLite's -wal/-shm take the same mode).
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            conn.execute("BEGIN")
            for stmt in create_statements():
                conn.execute(stmt)
            dumped = info.model_dump(mode="json", exclude={"closed"})
            conn.executemany(_META_SQL,
                             [(k, json.dumps(v, separators=(",", ":"))) for k, v in dumped.items()])
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        return conn

    def _run(self) -> None:
        conn = self._conn
        assert conn is not None
        writer = _Writer(conn, self)
        try:
            while True:
                closing = self._closing.wait(self._commit_interval_s)
                self._write_pending(writer, closing)
                if closing or self._stopped:
                    break
            if not self._stopped:
                writer.finish()
        except Exception as exc:  # disk full, unwritable file, or a fact that cannot be encoded
            self._fail(exc)
            writer.mark_failed(self.failed or "")
        finally:
            try:
                conn.close()
            except sqlite3.Error:
                pass

    def _write_pending(self, writer: _Writer, closing: bool) -> None:
        items = writer.held
        writer.held = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if not items or self._stopped:
            return
        if not self.t0_known and not self._resolve_t0(items, closing):
            writer.held = items  # only early events and placeholder snapshots so far: wait for the START
            return
        writer.write(items)
        self._backlog -= sum(len(batch) for _, _, batch in items)

    def _resolve_t0(self, items: list[tuple[str, int, Any]], closing: bool) -> bool:
        """t0 from the START event; a request, progress or telemetry fact (or close) settles for the provisional
        one. True once t0 is fixed."""
        for kind, _, batch in items:
            if kind is Fact.EVENTS and any(e.kind is EventKind.START for e in batch):
                self.t0_ns = next(e.t_ns for e in batch if e.kind is EventKind.START)
                break
            if kind in (Fact.REQUESTS, Fact.PROGRESS, Fact.TELEMETRY):
                break
        else:
            if not closing:
                return False
        self.t0_known = True
        return True

    def _fail(self, exc: BaseException) -> None:
        """Stop recording for good; report once. Committed data stays (WAL appends are atomic)."""
        if self._stopped and self.failed is not None:
            return
        self._stopped = True
        self.failure_reason = _describe_failure(exc)
        seconds = self._last_t_us / 1e6
        self.failed = (f"recording stopped: {_describe_failure(exc)} "
                       f"({self.requests_written} requests, {seconds:.0f} s kept in {self.path})")
        callback = self.on_warning
        if callback is not None:
            try:
                callback(ControlEvent(t_ns=time.perf_counter_ns(), kind=EventKind.WARNING, message=self.failed))
            except Exception:  # a sink never raises into the engine, not even through its callback
                pass


class _Writer:
    """Encodes queued batches into rows and commits them (runs on the writer thread only)."""

    def __init__(self, conn: sqlite3.Connection, rec: Recorder) -> None:
        self.conn = conn
        self.rec = rec
        self.held: list[tuple[str, int, Any]] = []  # queued items waiting for t0
        self.t0_written = rec.t0_ns
        self.t0 = rec.t0_ns
        self.next_request_id = 1
        self.strings: dict[str, int] = {}
        self.last_t = {"requests": _NEVER, "progress": _NEVER, "telemetry": _NEVER, "events": _NEVER}

    def _monotonic(self, table: str, row: tuple[Any, ...]) -> tuple[Any, ...]:
        """Keep t_us non-decreasing per table (two threads can stamp and queue in opposite orders by a few µs).
        In the tables with a lag column it grows by the same amount, so the fact's own stamp is unchanged."""
        last = self.last_t[table]
        if row[0] >= last:
            self.last_t[table] = row[0]
            return row
        if table == "events":
            return (last, *row[1:])
        return (last, row[1] + last - row[0], *row[2:])

    def _detail_id(self, text: str) -> int | None:
        if not text:
            return None
        line = self.rec._redact.text(text.splitlines()[0] if text else "")[:_MAX_DETAIL]
        found = self.strings.get(line)
        if found is None:
            found = len(self.strings) + 1
            self.conn.execute(_STRING_SQL, (found, line))
            self.strings[line] = found
        return found

    def write(self, items: list[tuple[str, int, Any]]) -> None:
        requests: list[tuple[Any, ...]] = []
        tokens: list[tuple[Any, ...]] = []
        progress: list[tuple[Any, ...]] = []
        telemetry: list[tuple[Any, ...]] = []
        events: list[tuple[Any, ...]] = []
        snapshots: list[tuple[Any, ...]] = []
        server: list[tuple[Any, ...]] = []
        redact = self.rec._redact
        conn = self.conn
        t0 = self.t0 = self.rec.t0_ns
        conn.execute("BEGIN")
        try:
            if t0 != self.t0_written:
                conn.execute("UPDATE meta SET value = ? WHERE key = 't0_ns'", (json.dumps(t0),))
                self.t0_written = t0
            for kind, arrival, batch in items:
                if kind is Fact.REQUESTS:
                    for r in batch:
                        row = self._monotonic("requests", encode_request(r, arrival, self.t0))
                        rid = self.next_request_id
                        self.next_request_id += 1
                        requests.append((rid, *row, self._detail_id(r.error_detail)))
                        if self.rec.record_tokens and r.token_times_ns:
                            response_id = None if r.response_id is None else redact.text(r.response_id)
                            tokens.append((rid, encode_token_times(r, self.t0), response_id))
                elif kind is Fact.PROGRESS:
                    progress.extend(self._monotonic("progress", encode_progress(p, arrival, self.t0)) for p in batch)
                elif kind is Fact.TELEMETRY:
                    telemetry.extend(self._monotonic("telemetry", encode_telemetry(s, arrival, self.t0))
                                     for s in batch)
                elif kind is Fact.EVENTS:
                    for e in batch:
                        events.append(self._monotonic("events", encode_event(e, arrival, self.t0,
                                                                              redact.text(e.message))))
                elif kind is Fact.SNAPSHOTS:
                    for s in batch:
                        snapshots.append(((arrival - self.t0) // 1000, redact.text(s.model_dump_json())))
                elif kind is Fact.GPU_INFO:
                    self._gpu_info(batch[-1])
                elif kind is Fact.SERVER_SAMPLES:
                    server.extend(encode_server_sample(m, arrival, self.t0, redact.text) for m in batch)
            conn.executemany(_REQ_SQL, requests)
            conn.executemany(_TOK_SQL, tokens)
            conn.executemany(_PROG_SQL, progress)
            conn.executemany(_TEL_SQL, telemetry)
            conn.executemany(_EVT_SQL, events)
            conn.executemany(_SNAP_SQL, snapshots)
            conn.executemany(SERVER_SQL, server)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self.rec.requests_written += len(requests)
        self.rec._last_t_us = max(0, *self.last_t.values())

    def _gpu_info(self, gpu: GpuStats) -> None:
        """Fill in the telemetry source and GPU names the recorder was not given (replay needs them)."""
        rows = dict(self.conn.execute(_META_SELECT_SQL + " WHERE key IN ('telemetry_source', 'gpus')"))
        if not json.loads(rows.get("telemetry_source", '""')):
            self.conn.execute("UPDATE meta SET value = ? WHERE key = 'telemetry_source'", (json.dumps(gpu.source),))
        if gpu.gpus and not json.loads(rows.get("gpus", "[]")):
            labels = [GpuLabel(index=g.index, name=g.name).model_dump() for g in gpu.gpus]
            self.conn.execute("UPDATE meta SET value = ? WHERE key = 'gpus'", (json.dumps(labels),))

    def mark_failed(self, reason: str) -> None:
        """Best effort: say in the file why it ended early (a full disk may refuse even this; the reader then
        reports a recording that was not closed)."""
        closed = ClosedInfo(t_us=max(0, *self.last_t.values()), requests=self.next_request_id - 1,
                            wall_end=datetime.now().astimezone().isoformat(timespec="seconds"), failed=reason)
        try:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            self.conn.execute(_META_REPLACE_SQL, ("closed", closed.model_dump_json()))
        except sqlite3.Error:
            pass

    def finish(self) -> None:
        """Mark the file closed, fold the WAL into the main file and leave WAL mode (one file to copy)."""
        closed = ClosedInfo(t_us=max(0, *self.last_t.values()), requests=self.next_request_id - 1,
                            wall_end=datetime.now().astimezone().isoformat(timespec="seconds"))
        self.conn.execute(_META_REPLACE_SQL, ("closed", closed.model_dump_json()))
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.execute("PRAGMA journal_mode=DELETE")


def _load_settings(session: object) -> dict[str, Any] | None:
    """The load settings and power caps in force now (the session's latest snapshot), for a recording that starts
    partway: the config's may be stale by then, and the cap changes before it are not in the file."""
    snapshot = getattr(session, "latest", None)
    if not isinstance(snapshot, Snapshot):
        return None
    settings: dict[str, Any] = {"mode": snapshot.mode.value, "concurrency": snapshot.target_concurrency,
                                "rate": snapshot.target_rate}  # fmt: skip
    caps = {str(r.index): r.power_limit_w for r in snapshot.gpu.gpus if r.power_limit_w is not None}
    if caps:
        settings["power_caps_w"] = caps  # GPU index (as a JSON key) -> watts
    return settings


def recorder_factory(
    *,
    config_dump: Mapping[str, Any],
    meta: SessionMeta,
    system_info: Any = None,
    pricing_dump: Any = None,
    workload_dump: Any = None,
    record_tokens: bool = False,
    t0_ns: Callable[[], int | None] | int | None = None,
    on_warning: WarningCallback | None = None,
    secrets: Iterable[str | None] = (),
    directory: str | Path = "recordings",
    start_control: Callable[[], Mapping[str, Any] | None] | None = None,
) -> Callable[[str | None], Recorder]:
    """What the controller's ``recorder_factory`` wants: a callable taking an optional path. The session's
    settings are bound once; each call opens a new file (default name from wall time, host and model).
    ``t0_ns`` and ``system_info`` may be callables, asked at each call (the session's t0 and its GPUs are known
    only once the session has started)."""
    secret_list = [*secrets, os.environ.get("WATTLOAD_API_KEY"), os.environ.get("OPENAI_API_KEY")]

    def make(path: str | None = None) -> Recorder:
        return Recorder(
            path if path else default_recording_path(meta.model, directory=directory),
            config_dump=config_dump,
            meta=meta,
            system_info=system_info() if callable(system_info) else system_info,
            pricing_dump=pricing_dump,
            workload_dump=workload_dump,
            record_tokens=record_tokens,
            t0_ns=t0_ns() if callable(t0_ns) else t0_ns,
            on_warning=on_warning,
            secrets=secret_list,
            start_control=start_control() if start_control is not None else None,
        )

    return make


class RecordedSession(Protocol):
    """What a recorder is given of the live session it records (the controller, structurally)."""

    @property
    def config(self) -> RunConfig: ...
    @property
    def t0_ns(self) -> int | None: ...
    def emit(self, event: ControlEvent) -> None: ...
    def system_info(self) -> SystemInfo: ...


SessionRecorderFactory = Callable[[str | None, RecordedSession], Recorder]


def session_recorders(
    *,
    pricing: PricingProfile | None = None,
    workload: Mapping[str, Any] | None = None,
    record_tokens: bool = False,
    directory: str | Path = "recordings",
) -> SessionRecorderFactory:
    """What ``Controller(recorder_factory=...)`` takes: each call opens a new file for the session it is given.

    Uses only the session's public surface: its ``config`` (settings without the key; the key itself is scrubbed
    from every string), ``t0_ns`` (each recording's clock is the session's, so replay lines up with what was shown
    live), ``emit`` (the disk-full warning goes to the event log) and ``system_info``."""
    pricing_dump = pricing.model_dump(mode="json") if pricing is not None else None

    def make(path: str | None, session: RecordedSession) -> Recorder:
        config = session.config
        api_key = config.api_key.get_secret_value() if config.api_key is not None else None
        return recorder_factory(
            config_dump=config.safe_dump(),
            meta=SessionMeta(endpoint=redact_url(config.base_url), model=config.model, workload=config.workload),
            system_info=session.system_info,
            pricing_dump=pricing_dump,
            workload_dump=workload,
            record_tokens=record_tokens,
            t0_ns=session.t0_ns,
            on_warning=session.emit,
            secrets=[api_key],
            directory=directory,
            start_control=lambda: _load_settings(session),
        )(path)

    return make

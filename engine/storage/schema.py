"""The recording file's tables, written down once: the DDL and the user-facing schema doc come from the same list.

Design choices that keep a one-hour, 50 req/s recording small and fast to seek (see ``SCHEMA_DOC`` for the rest):
- Every time is an integer: microseconds since the session's ``t0`` (``perf_counter_ns`` at the start), or a
  small delta from another time of the same row. SQLite stores integers in 0-8 bytes by magnitude, so deltas of a
  few milliseconds cost 2-3 bytes where a REAL would cost 8. 0 and 1 cost no payload byte at all.
- The fact tables (requests, progress, telemetry, events) are written in *arrival* order: ``t_us`` is when the
  fact reached the controller, which is also when the live aggregator saw it. Their rowid is therefore ordered by
  ``t_us``, so a time range is found by a binary search on the rowid and no time index is needed (an index would
  cost ~15 bytes per request). Replaying facts at their arrival time reproduces the live figures tick by tick.
- Error details are interned in ``strings``; the rare error pays a 1-2 byte reference, never its text again.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

SCHEMA_VERSION = 4  # 2 added progress.waiting, wait_us, firsts; 3 requests.turn, ttfo_us, rchunks, progress.outputs,
# itl; 4 progress.final. Files of schema 1 to 3 are still read.
FORMAT_TAG = "wattload-recording"
APPLICATION_ID = 0x5741_5454  # "WATT": `PRAGMA application_id`, so `file` tools can tell a recording apart
FILE_SUFFIX = ".wattload.sqlite"


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    sql: str  # type and constraints, as in CREATE TABLE
    doc: str
    since: int = 1  # the schema version that added it: files of older versions lack it


@dataclass(frozen=True, slots=True)
class Table:
    """One table. Its DDL, INSERT and SELECT statements are all generated from ``columns``, so a column is added
    in one place and the writer, the reader and the schema doc cannot disagree about the order."""

    name: str
    doc: str
    columns: tuple[Column, ...]
    suffix: str = ""  # e.g. " WITHOUT ROWID"

    def ddl(self) -> str:
        cols = ",\n  ".join(f"{c.name} {c.sql}" for c in self.columns)
        return f"CREATE TABLE IF NOT EXISTS {self.name} (\n  {cols}\n){self.suffix}"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column_list(self, skip: tuple[str, ...] = (), *, version: int = SCHEMA_VERSION, prefix: str = "") -> str:
        """The columns in table order, comma-separated: without ``skip`` and without those added after
        ``version``; each with ``prefix`` (a table alias such as ``"r."``)."""
        return ", ".join(prefix + name for name in self._picked(skip, version))

    def column_list_for(self, present: Collection[str], skip: tuple[str, ...] = (), *, prefix: str = "") -> str:
        """The columns in table order for a file that has only ``present`` of them: a column added later reads as
        its DEFAULT (NULL without one), so an older file's rows keep the current shape."""
        picked = set(self._picked(skip, SCHEMA_VERSION))
        return ", ".join(prefix + c.name if c.name in present else _absent(c)
                         for c in self.columns if c.name in picked)  # fmt: skip

    def insert(self, skip: tuple[str, ...] = (), *, replace: bool = False) -> str:
        """INSERT (OR REPLACE) of every column but ``skip`` (e.g. an INTEGER PRIMARY KEY that SQLite numbers), one
        ? each."""
        names = self._picked(skip, SCHEMA_VERSION)
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        return f"{verb} INTO {self.name} ({', '.join(names)}) VALUES ({','.join('?' * len(names))})"

    def select(self, skip: tuple[str, ...] = (), *, version: int = SCHEMA_VERSION) -> str:
        """SELECT of the columns a file of schema ``version`` has, but ``skip``, in table order."""
        return f"SELECT {self.column_list(skip, version=version)} FROM {self.name}"

    def _picked(self, skip: tuple[str, ...], version: int) -> list[str]:
        unknown = set(skip) - set(self.names)
        if unknown:
            raise ValueError(f"{self.name} has no column {sorted(unknown)[0]!r}")
        return [c.name for c in self.columns if c.name not in skip and c.since <= version]


def _absent(column: Column) -> str:
    """What a file without ``column`` reads in its place: the column's DEFAULT, else NULL."""
    match = re.search(r"\bDEFAULT\s+(\S+)", column.sql)
    return match.group(1) if match else "NULL"


META = Table(
    "meta",
    "One row per key, every value JSON, written when the recording starts: `format` (\"wattload-recording\"), "
    "`schema_version`, `wattload_version`, `wall_start` (ISO 8601, a label only), `t0_ns` (perf_counter_ns at the "
    "session start), `host`, `session` (endpoint, model, workload name), `config` (the run's settings, secrets "
    "removed), `workload` and `pricing` (the profiles as they were), `system` (machine, driver, GPUs), `gpus`, "
    "`telemetry_source`, `window_s`, `record_tokens`, `snapshot_interval_s`. `closed` is added when the recording "
    "ends cleanly (its absence means the recorder was killed or the disk filled up).",
    (
        Column("key", "TEXT PRIMARY KEY", "the name (see above)"),
        Column("value", "TEXT NOT NULL", "JSON"),
    ),
    " WITHOUT ROWID",
)

STRINGS = Table(
    "strings",
    "Interned error details (one line each, secrets redacted), referenced by `requests.detail`.",
    (
        Column("id", "INTEGER PRIMARY KEY", "referenced by `requests.detail`"),
        Column("text", "TEXT NOT NULL UNIQUE", "e.g. \"500 Internal Server Error\""),
    ),
)

REQUESTS = Table(
    "requests",
    "One finished request (successful or failed), in the order it reached the controller. Absolute times in "
    "µs since t0: end = t_us - lag_us; scheduled = end - e2e_us; start = scheduled + wait_us; "
    "headers = scheduled + hdr_us; first token = scheduled + ttft_us. The view `requests_ms` computes them in ms.",
    (
        Column("id", "INTEGER PRIMARY KEY", "arrival order (joins `token_times.request`)"),
        Column("t_us", "INTEGER NOT NULL", "arrival at the controller, µs since t0 (non-decreasing with id)"),
        Column("lag_us", "INTEGER NOT NULL", "arrival - end of the request, µs"),
        Column("e2e_us", "INTEGER NOT NULL", "end - scheduled, µs (E2E latency)"),
        Column("wait_us", "INTEGER NOT NULL", "start - scheduled, µs (send lag; 0 in concurrency mode)"),
        Column("hdr_us", "INTEGER", "response headers - scheduled, µs; NULL = no response"),
        Column("ttft_us", "INTEGER", "first content token - scheduled, µs (TTFT); NULL = no token"),
        Column("worker", "INTEGER NOT NULL", "worker process index"),
        Column("rid", "INTEGER NOT NULL", "request id, unique within its worker"),
        Column("in_tok", "INTEGER", "prompt tokens from the server's usage; NULL = not reported"),
        Column("out_tok", "INTEGER NOT NULL", "completion tokens (usage, or counted chunks when `est` = 1)"),
        Column("chunks", "INTEGER NOT NULL", "content chunks received"),
        Column("est", "INTEGER NOT NULL", "1 when out_tok was counted from chunks, not reported by the server"),
        Column("status", "INTEGER", "HTTP status; NULL = no response"),
        Column("error", "TEXT", "error class (connect, timeout, http_429, http_4xx, http_5xx, stream_broken, "
               "malformed); NULL = success"),
        Column("turn", "INTEGER NOT NULL DEFAULT 0", "turn number in a multi-turn session or session trace "
               "(1-based), for figures per turn; 0 = a single request (schema 3; older files read as 0)", since=3),
        Column("ttfo_us", "INTEGER", "first answer token (after any reasoning content) - scheduled, µs (time to "
               "first output token); NULL = no answer token (schema 3)", since=3),
        Column("rchunks", "INTEGER NOT NULL DEFAULT 0", "chunks that carried reasoning content, included in "
               "`chunks` (schema 3)", since=3),
        Column("detail", "INTEGER", "`strings.id` of the one-line error detail; NULL = none"),
    ),
)

TOKEN_TIMES = Table(
    "token_times",
    "Only when the session was recorded with per-token timings: the arrival of every content chunk of a request. "
    "`gaps` is a BLOB of unsigned LEB128 varints: the µs between consecutive chunks, starting after the first "
    "chunk (whose time is the request's TTFT).",
    (
        Column("request", "INTEGER PRIMARY KEY", "`requests.id`"),
        Column("gaps", "BLOB NOT NULL", "varint µs gaps between content chunks"),
        Column("response_id", "TEXT", "the server's completion id (joins simulator ground truth); NULL = none"),
    ),
)

PROGRESS = Table(
    "progress",
    "Stream progress ticks from the workers (content chunks since the worker's previous tick), so replay "
    "reproduces the live tokens/s exactly.",
    (
        Column("id", "INTEGER PRIMARY KEY", "arrival order"),
        Column("t_us", "INTEGER NOT NULL", "arrival at the controller, µs since t0"),
        Column("lag_us", "INTEGER NOT NULL", "arrival - the tick's own stamp, µs"),
        Column("worker", "INTEGER NOT NULL", "worker process index"),
        Column("chunks", "INTEGER NOT NULL", "content chunks in (previous tick, this tick]"),
        Column("in_flight", "INTEGER NOT NULL", "requests open in this worker"),
        Column("loop_lag_us", "INTEGER NOT NULL", "worst event-loop lag since the previous tick, µs"),
        Column("waiting", "INTEGER NOT NULL DEFAULT 0", "requests sent with no first token yet (schema 2)", since=2),
        Column("wait_us", "INTEGER", "the tick's own stamp - scheduled time of the oldest waiting request, µs; "
               "NULL = none waits (schema 2)", since=2),
        Column("firsts", "BLOB", "first tokens since the previous tick, so TTFT enters the window when it arrived: "
               "unsigned LEB128 varint triples (request id, tick - first token µs, TTFT µs); NULL = none "
               "(schema 2)", since=2),
        Column("outputs", "BLOB", "first answer tokens (after reasoning) since the previous tick, like `firsts` "
               "(TTFO); NULL = none (schema 3)", since=3),
        Column("itl", "BLOB", "inter-token gaps that arrived since the previous tick, as log-histogram buckets: "
               "unsigned LEB128 varints sum ns, min ns, max ns, then (bucket, count) pairs; NULL = none. Replay "
               "merges exactly what the live window merged (schema 3; older files take ITL from `token_times`)",
               since=3),
        Column("final", "INTEGER NOT NULL DEFAULT 0", "1 = the worker's last tick (it said goodbye, or the controller "
               "wrote it for a worker that was lost): the live window's edge stops waiting for that worker, and "
               "replay's does the same (schema 4; older files read as 0, and their workers are waited for until "
               "a second of silence)", since=4),
    ),
)

TELEMETRY = Table(
    "telemetry",
    "GPU readings. NULL = the GPU or driver does not report that field (n/a). Power in milliwatts (NVML's unit).",
    (
        Column("id", "INTEGER PRIMARY KEY", "arrival order"),
        Column("t_us", "INTEGER NOT NULL", "arrival at the controller, µs since t0"),
        Column("lag_us", "INTEGER NOT NULL", "arrival - the reading's own stamp, µs"),
        Column("gpu", "INTEGER NOT NULL", "NVML index"),
        Column("power_mw", "INTEGER", "power (NVML's 1 s average on Hopper)"),
        Column("power_instant_mw", "INTEGER", "instantaneous power"),
        Column("energy_mj", "INTEGER", "monotonic energy counter, millijoules"),
        Column("sm_clock_mhz", "INTEGER", "SM clock"),
        Column("mem_clock_mhz", "INTEGER", "memory clock"),
        Column("temperature_c", "INTEGER", "GPU temperature, °C"),
        Column("util_gpu_pct", "INTEGER", "GPU utilisation, %"),
        Column("util_mem_pct", "INTEGER", "memory-controller utilisation, %"),
        Column("mem_used_mib", "INTEGER", "GPU memory used"),
        Column("mem_total_mib", "INTEGER", "GPU memory total"),
        Column("power_limit_mw", "INTEGER", "current (requested) power limit"),
        Column("enforced_limit_mw", "INTEGER", "limit the GPU enforces (may be lower)"),
        Column("default_limit_mw", "INTEGER", "the board's default limit"),
        Column("min_limit_mw", "INTEGER", "lowest settable limit"),
        Column("max_limit_mw", "INTEGER", "highest settable limit"),
        Column("throttle_reasons", "INTEGER", "NVML clock-event reasons bitmask"),
        Column("power_cap_binding", "INTEGER", "1 = software power cap active"),
    ),
)

EVENTS = Table(
    "events",
    "Control events: load steps, pauses, power-cap changes, warnings. They split the session into phases.",
    (
        Column("id", "INTEGER PRIMARY KEY", "arrival order"),
        Column("t_us", "INTEGER NOT NULL", "arrival at the controller, µs since t0"),
        Column("ev_us", "INTEGER NOT NULL", "the event's own time, µs since t0"),
        Column("kind", "TEXT NOT NULL", "concurrency, rate, pause, resume, power_cap, record_start, record_stop, "
               "annotation, error, warning, start, stop"),
        Column("value", "REAL", "new concurrency / rate (req/s) / power cap (W)"),
        Column("gpu", "INTEGER", "power-cap events: the GPU; NULL = all selected GPUs"),
        Column("readback", "REAL", "power-cap events: the enforced limit read back (W)"),
        Column("message", "TEXT NOT NULL", "the line shown in the event log (secrets redacted)"),
    ),
)

SNAPSHOTS = Table(
    "snapshots",
    "What the live run showed: the first snapshot, then one every `snapshot_interval_s` (the window length, so "
    "the window figures of consecutive rows tile the session), and the last one. JSON of `engine.snapshot."
    "Snapshot`; query with json_extract(json, '$.window.output_tokens_per_s'). Replay does not need them: it "
    "recomputes every figure from the facts above.",
    (
        Column("id", "INTEGER PRIMARY KEY", "in time order"),
        Column("t_us", "INTEGER NOT NULL", "when the live run published it, µs since t0"),
        Column("json", "TEXT NOT NULL", "the snapshot as JSON"),
    ),
)

SERVER_SAMPLES = Table(
    "server_samples",
    "Scrapes of the server's own Prometheus metrics (`--server-metrics`, `--server-query`), one row per source per "
    "scrape, so replay shows the Server panel as it was live. Added after schema 1 was released: older files lack "
    "the table and replay without server figures. `json` holds the normalised figures: `engine`, gauges `g` "
    "(running, waiting, kv_usage 0..1, ...), cumulative counters `c` (prompt_tokens, generation_tokens, "
    "preemptions, prefix_queries, prefix_hits), cumulative histograms `h` (ttft, itl, tpot, e2e, queue: "
    "[bounds in s, cumulative counts, sum]), or `error` (one line) when the scrape failed.",
    (
        Column("id", "INTEGER PRIMARY KEY", "arrival order"),
        Column("t_us", "INTEGER NOT NULL", "arrival at the controller, µs since t0"),
        Column("lag_us", "INTEGER NOT NULL", "arrival - when the scrape's answer arrived, µs"),
        Column("source", "TEXT NOT NULL", "the scraped URL (credentials removed) or the Prometheus query"),
        Column("json", "TEXT NOT NULL", "the normalised figures (see above)"),
    ),
)

TABLES: tuple[Table, ...] = (META, STRINGS, REQUESTS, TOKEN_TIMES, PROGRESS, TELEMETRY, EVENTS, SNAPSHOTS,
                             SERVER_SAMPLES)  # fmt: skip
FACT_TABLES = ("requests", "progress", "telemetry", "events")

REQUESTS_MS_VIEW = """CREATE VIEW IF NOT EXISTS requests_ms AS
SELECT id, worker, rid,
  (t_us - lag_us - e2e_us) / 1000.0 AS scheduled_ms,
  (t_us - lag_us - e2e_us + wait_us) / 1000.0 AS start_ms,
  (t_us - lag_us - e2e_us + hdr_us) / 1000.0 AS headers_ms,
  (t_us - lag_us - e2e_us + ttft_us) / 1000.0 AS first_token_ms,
  (t_us - lag_us) / 1000.0 AS end_ms,
  ttft_us / 1000.0 AS ttft_ms,
  ttfo_us / 1000.0 AS ttfo_ms,
  e2e_us / 1000.0 AS e2e_ms,
  CASE WHEN out_tok >= 2 AND ttft_us IS NOT NULL THEN (e2e_us - ttft_us) / 1000.0 / (out_tok - 1) END AS tpot_ms,
  in_tok, out_tok, chunks, est, status, error, turn,
  (SELECT text FROM strings WHERE strings.id = requests.detail) AS detail
FROM requests"""


def create_statements() -> list[str]:
    return [t.ddl() for t in TABLES] + [REQUESTS_MS_VIEW]


def schema_markdown() -> str:
    """The schema as markdown tables (the README's "Recording file" section is this text)."""
    out = [
        f"Schema version {SCHEMA_VERSION} (`PRAGMA user_version`; `PRAGMA application_id` = 0x{APPLICATION_ID:08X}). "
        "Times are integer microseconds since the session start t0 unless the column says otherwise.",
        "",
    ]
    for t in TABLES:
        out += [f"### `{t.name}`", "", t.doc, "", "| column | type | meaning |", "|---|---|---|"]
        out += [f"| `{c.name}` | {c.sql} | {c.doc} |" for c in t.columns]
        out.append("")
    out += ["### view `requests_ms`", "", "Every request with absolute times in milliseconds since t0, TTFT, TTFO, "
            "E2E, TPOT and the error detail text: `sqlite3 FILE 'SELECT * FROM requests_ms LIMIT 5'`.", ""]
    return "\n".join(out)

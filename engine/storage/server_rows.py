"""The ``server_samples`` table: ServerSample <-> row. A file recorded before the table existed reads as empty.

Rows keep the recording's conventions: ``t_us`` is the arrival at the controller (µs since t0), ``lag_us`` how
long before that the scrape's answer arrived, so replay feeds each sample at its arrival and keeps its stamp.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from engine.storage.schema import SERVER_SAMPLES
from engine.telemetry.samples import ServerSample

SERVER_SQL = SERVER_SAMPLES.insert(skip=("id",))


def encode_server_sample(
    s: ServerSample, arrival_ns: int, t0_ns: int, redact: Callable[[str], str]
) -> tuple[int, int, str, str]:
    t_us = max(0, (arrival_ns - t0_ns) // 1000)
    lag_us = max(0, (arrival_ns - s.t_ns) // 1000)
    return (t_us, lag_us, redact(s.source), redact(s.to_json()))


def read_server_samples(conn: sqlite3.Connection) -> tuple[list[tuple[int, ServerSample]], int]:
    """Every readable row as (arrival µs, sample with its stamp in ns since t0), and how many were unreadable."""
    try:
        rows = conn.execute(SERVER_SAMPLES.select(skip=("id",)) + " ORDER BY id").fetchall()
    except sqlite3.DatabaseError:  # no such table (recorded before it existed) or a damaged page
        return [], 0
    out: list[tuple[int, ServerSample]] = []
    bad = 0
    for t_us, lag_us, source, payload in rows:
        try:
            sample = ServerSample.from_json((int(t_us) - int(lag_us)) * 1000, str(source), str(payload))
        except (TypeError, ValueError, KeyError, AssertionError):
            bad += 1
            continue
        out.append((int(t_us), sample))
    return out, bad

"""`wattload export FILE --requests out.csv`: a recording's facts as CSV (times in ms since the session start).
Headless; for direct SQL, the file is plain SQLite (see the README's schema)."""

from __future__ import annotations

import argparse
import os
import sys

from engine.cli.common import open_recording_or_fail
from engine.cli.exits import UserError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "export",
        help="export a recording's requests, telemetry or events as CSV",
        description="Write per-request rows (scheduled, start, headers, first token and end in ms since the session "
        "start, TTFT, TPOT, E2E, tokens, status, error), GPU telemetry or control events as CSV. '-' writes to "
        "stdout. The recording itself is an SQLite file: `sqlite3 FILE 'SELECT * FROM requests_ms'` works too.",
    )
    p.add_argument("file", help="a wattload recording")
    p.add_argument("--requests", metavar="CSV", help="one row per request")
    p.add_argument("--telemetry", metavar="CSV", help="one row per GPU sample")
    p.add_argument("--events", metavar="CSV", help="one row per control event")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from engine.reports.export import export_csv, write_csv

    targets = [(t, getattr(args, t)) for t in ("requests", "telemetry", "events") if getattr(args, t)]
    if not targets:
        raise UserError("say what to export: --requests CSV, --telemetry CSV and/or --events CSV")
    with open_recording_or_fail(args.file) as rec:
        for table, dest in targets:
            try:
                n = write_csv(rec, table, sys.stdout) if dest == "-" else export_csv(rec, table, dest)
                if dest == "-":
                    sys.stdout.flush()
            except BrokenPipeError:  # `export --requests - | head`: the reader has what it wanted
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush is quiet too
                return 0
            except OSError as exc:
                raise UserError(f"{dest}: cannot write ({exc.strerror})") from None
            if dest != "-":
                print(f"{n} {table} rows -> {dest}", file=sys.stderr)
    return 0

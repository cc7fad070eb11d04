"""The wall-clock label a report or recording carries; its own small module so the dashboard commands can take it
before their first frame without importing the report stack (numpy histograms, the Prometheus parser)."""

from __future__ import annotations

import datetime as dt


def wall_clock_label() -> str:
    """Local wall time for labels (never used for a duration)."""
    return dt.datetime.now(dt.UTC).astimezone().isoformat(timespec="seconds")

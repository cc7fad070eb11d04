"""A remote worker's clock against the controller's: offset from round-trip pings, and records moved onto the
session's time axis.

``perf_counter_ns`` (CLOCK_MONOTONIC) is one clock for every process of one kernel, so a worker on this host needs
no correction at all (its boot id matches ours: offset 0 exactly). On another host the offset is estimated from the
ping with the smallest round trip: the worker read its clock somewhere inside that round trip, so
``offset = t_worker - (t_sent + t_back) / 2`` is off by at most half of it, the uncertainty reported with it.
Latencies are differences of stamps taken on one worker, so the offset moves them on the time axis and never
changes a duration.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.records import RequestRecord, StreamProgress


def boot_id() -> str:
    """This kernel's boot id: equal boot ids mean one CLOCK_MONOTONIC ("" where the file does not exist)."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return ""


@dataclass(frozen=True, slots=True)
class Ping:
    sent_ns: int  # controller clock, before the call
    worker_ns: int  # the worker's clock, read inside the call
    back_ns: int  # controller clock, after the answer


@dataclass(frozen=True, slots=True)
class ClockOffset:
    """worker clock - controller clock, with its uncertainty (half the best round trip)."""

    offset_ns: int
    uncertainty_ns: int
    best_rtt_ns: int
    same_clock: bool  # same kernel: the offset is exactly 0, the ping only measures the call's round trip
    measured_offset_ns: int  # what the pings said (on one host: how far off a ping estimate would have been)


def estimate_offset(pings: Sequence[Ping], same_clock: bool = False) -> ClockOffset:
    """The offset from the ping with the smallest round trip."""
    if not pings:
        raise ValueError("no pings")
    best = min(pings, key=lambda p: p.back_ns - p.sent_ns)
    rtt = best.back_ns - best.sent_ns
    measured = best.worker_ns - (best.sent_ns + best.back_ns) // 2
    if same_clock:
        return ClockOffset(0, 0, rtt, True, measured)
    return ClockOffset(measured, (rtt + 1) // 2, rtt, False, measured)


def shift_record(record: RequestRecord, delta_ns: int) -> RequestRecord:
    """The record with every stamp moved by ``delta_ns`` (worker clock -> controller clock: delta = -offset)."""
    if delta_ns == 0:
        return record
    return dataclasses.replace(
        record,
        t_scheduled_ns=record.t_scheduled_ns + delta_ns,
        t_start_ns=record.t_start_ns + delta_ns,
        t_headers_ns=None if record.t_headers_ns is None else record.t_headers_ns + delta_ns,
        t_first_token_ns=None if record.t_first_token_ns is None else record.t_first_token_ns + delta_ns,
        t_first_output_ns=None if record.t_first_output_ns is None else record.t_first_output_ns + delta_ns,
        t_end_ns=record.t_end_ns + delta_ns,
        token_times_ns=tuple(t + delta_ns for t in record.token_times_ns),
    )


def shift_progress(progress: StreamProgress, delta_ns: int) -> StreamProgress:
    """The progress tick with its stamps moved by ``delta_ns``."""
    if delta_ns == 0:
        return progress
    return dataclasses.replace(
        progress,
        t_ns=progress.t_ns + delta_ns,
        first_tokens=tuple((rid, first + delta_ns, sched + delta_ns) for rid, first, sched in progress.first_tokens),
        first_outputs=tuple((rid, first + delta_ns, sched + delta_ns) for rid, first, sched in progress.first_outputs),
        waiting_since_ns=None if progress.waiting_since_ns is None else progress.waiting_since_ns + delta_ns,
    )


SHIFTED_FIELDS = {
    RequestRecord: {"t_scheduled_ns", "t_start_ns", "t_headers_ns", "t_first_token_ns", "t_first_output_ns",
                    "t_end_ns", "token_times_ns"},
    StreamProgress: {"t_ns", "first_tokens", "first_outputs", "waiting_since_ns"},  # itl holds durations only
}
"""The stamp fields the shifts move (a test checks every ``*_ns`` field is here, so a new stamp is not missed)."""

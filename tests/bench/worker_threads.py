"""Pin and renice EVERY thread of a benchmark's worker process (helper of the benches; not a pytest test).

``sched_setaffinity`` and ``setpriority`` on a pid change that one thread only (Linux: a thread is a task). A Ray
actor's worker loop runs on a thread of its own, started after the process, and Ray starts its worker processes at
nice 15 (its ``worker_niceness``): pinning or renicing the pid alone left the loop thread free to wander and at nice
15 beside a plain worker process at 0, so the two were not measured alike. These helpers act on every task of the
pid, a few times over (threads started a moment later too), and say what niceness the threads ended at.
"""

from __future__ import annotations

import os
import time


def thread_ids(pid: int) -> list[int]:
    try:
        return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return []  # the process ended


def thread_nice(pid: int, tid: int) -> int | None:
    """The niceness of one thread (field 19 of its stat); None once it ended."""
    try:
        with open(f"/proc/{pid}/task/{tid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[16])
    except (OSError, IndexError, ValueError):
        return None


def niceness(pid: int) -> list[int]:
    """The niceness of every thread of ``pid``, sorted."""
    return sorted(n for tid in thread_ids(pid) if (n := thread_nice(pid, tid)) is not None)


def describe_nice(pid: int) -> str:
    """``0`` when every thread has the same niceness, else ``0..15`` (the range seen)."""
    seen = niceness(pid)
    if not seen:
        return "?"
    return str(seen[0]) if seen[0] == seen[-1] else f"{seen[0]}..{seen[-1]}"


def settle(pid: int, cpu: int | None, nice: int | None, rounds: int = 3) -> list[str]:
    """Pin every thread of ``pid`` to ``cpu`` and renice every thread to ``nice`` (None: leave that alone), a few
    times 50 ms apart; returns the errors (e.g. lowering niceness without root), once each."""
    errors: dict[str, None] = {}
    for k in range(rounds):
        for tid in thread_ids(pid):
            try:
                if cpu is not None:
                    os.sched_setaffinity(tid, {cpu})
                if nice is not None and thread_nice(pid, tid) != nice:
                    os.setpriority(os.PRIO_PROCESS, tid, nice)
            except ProcessLookupError:
                pass  # the thread ended meanwhile
            except OSError as exc:
                errors[f"cannot set thread {tid} of {pid} to nice {nice}: {exc.strerror}"] = None
        if k < rounds - 1:
            time.sleep(0.05)
    return list(errors)


def equalize(pids: list[int], nice: int) -> tuple[int, list[str]]:
    """Every thread of every pid to ``nice``; where that is refused (no root: niceness may only be raised), every
    thread to the highest niceness seen instead, so that the workers compared still run alike. Returns the niceness
    asked of them all and the errors."""
    errors = [e for pid in pids for e in settle(pid, None, nice)]
    highest = max((n for pid in pids for n in niceness(pid)), default=nice)
    if highest != nice:
        errors += [e for pid in pids for e in settle(pid, None, highest)]
        nice = highest
    return nice, errors

"""The workers of a distributed run (``--ray``), drawn from the snapshot's ``workers``: the Load panel's compact
lines (how many on how many nodes, how many lost; the worst loop and send lag and the widest clock uncertainty)
and one line per worker for the workers view (``n``). A plain run's snapshot has no ``workers``: nothing is drawn.

A lag the aggregator found over its limit (``loop_lag_high``, ``send_lag_high``) is drawn in the warning colour.
"""

from __future__ import annotations

from textual.content import Content

from engine.reports import format as fmt
from engine.snapshot import WorkersStats, WorkerView


def nodes(n: int) -> str:
    return f"{n} node{'s' if n != 1 else ''}"


def summary(stats: WorkersStats, width: int = 1000) -> Content:
    """"3 on 2 nodes", or "2/3 on 2 nodes · 1 lost" (lost in the error colour); where that is wider than
    ``width``, the nodes give way ("2/3 · 1 lost"): a lost worker must never be cut off."""
    head = f"{stats.count}" if not stats.lost else f"{stats.count - stats.lost}/{stats.count}"
    where = f" on {nodes(stats.nodes)}"
    lost = f" · {stats.lost} lost" if stats.lost else ""
    if len(head) + len(where) + len(lost) > width and lost:
        where = ""
    return Content.assemble((head + where, "bold"), (lost, "$error bold"))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def lags(stats: WorkersStats) -> Content:
    """"lag 2.1 ms · send 9.0 ms": the worst worker's event-loop lag and send lag (warning colour when high)."""
    return Content.assemble(
        ("lag ", "$text-muted"), (_ms(stats.loop_lag_ms), "$warning bold" if stats.loop_lag_high else "bold"),
        (" ms · send ", "$text-muted"), (_ms(stats.send_lag_ms), "$warning bold" if stats.send_lag_high else "bold"),
        (" ms", "$text-muted"),
    )


def clock(stats: WorkersStats | None) -> str:
    """The Load panel's subtitle: the widest clock uncertainty ("clock ±0.4 ms"); "" without workers."""
    if stats is None:
        return ""
    if stats.clock_uncertainty_ms is None:
        return "clock …"
    return "clock shared" if stats.clock_uncertainty_ms == 0 else f"clock ±{_ms(stats.clock_uncertainty_ms)} ms"


def worker_line(w: WorkerView) -> str:
    """"w1 node-b running  lag 2.1 ms  send 9.0 ms  41.0 rec/s  3 open  clock +0.120 ± 0.300 ms"."""
    if w.clock_offset_ms is None:
        clock = "clock not measured"
    elif not w.clock_uncertainty_ms:
        clock = "clock shared"  # the controller's own host: one CLOCK_MONOTONIC, offset exactly 0
    else:
        clock = f"clock {w.clock_offset_ms:+.3f} ± {w.clock_uncertainty_ms:.3f} ms"
    what = f"{w.lost_requests} requests lost" if w.state == "lost" else f"{fmt.integer(w.in_flight)} open"
    return (f"w{w.worker} {w.host or '?'} {w.state}  lag {_ms(w.loop_lag_ms)} ms  send {_ms(w.send_lag_ms)} ms  "
            f"{w.records_per_s:.1f} rec/s  {what}  {clock}")


def detail(stats: WorkersStats | None) -> list[str]:
    """The workers view: a summary line, then one line per worker, grouped by node."""
    if stats is None:
        return ["no distributed workers: this run's workers are local processes (start it with --ray)"]
    lost = f", {stats.lost} lost ({stats.lost_requests} requests counted as worker_lost)" if stats.lost else ""
    lines = [f"{stats.count} workers on {nodes(stats.nodes)}, {stats.running} running{lost}",
             "the last seconds: loop lag = the worker's event loop, send lag = a batch's stamp to the controller"]
    for w in sorted(stats.workers, key=lambda w: (w.node or w.host, w.worker)):
        lines.append(worker_line(w))
    return lines

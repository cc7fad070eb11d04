"""The window's edge on a real session: two worker processes stream from the simulator (real HTTP on 127.0.0.1);
every snapshot's window must end at a worker's report, and its output tokens must be what arrived over its span,
within what the reports themselves cannot tell apart. No timing is assumed: the tolerance at each end of the span
is computed from the session's own report stamps and loop lags (see ``bracket``)."""

from __future__ import annotations

import numpy as np
import pytest
from engine_helpers import CollectingSink

from engine.config import RunConfig
from engine.load.controller import Controller
from engine.sim.model import SimConfig

SIM = SimConfig(seed=5)
WORKERS = 2


def bracket(stamps: np.ndarray, reports: np.ndarray, slack_ns: int, start_ns: int, end_ns: int) -> tuple[int, int]:
    """The fewest and most of one worker's chunks that its reports can put in [start, end].

    A report counts the chunks its loop read since the previous report; a chunk's stamp (kernel receive time) is
    never after the read, and before it by at most the loop's stall (``slack_ns``: the worst loop lag reported).
    The window spreads a report's chunks over its interval, so at each end of the span the chunks of the report
    interval holding that end (widened by the slack) may fall on either side; everywhere else it is exact."""

    def around(t: int) -> tuple[int, int]:
        i = int(np.searchsorted(reports, t, "left"))  # reports[i-1] < t <= reports[i]
        after = int(reports[min(i, len(reports) - 1)])
        before = int(reports[i - 1]) if i > 0 else after
        return before - slack_ns, max(after, t)

    def count(lo: int, hi: int) -> int:
        return int(np.searchsorted(stamps, hi, "right") - np.searchsorted(stamps, lo, "left")) if hi >= lo else 0

    start_lo, start_hi = around(start_ns)
    end_lo, end_hi = around(end_ns)
    return count(start_hi, end_lo), count(start_lo, end_hi)


@pytest.mark.slow
def test_the_live_window_ends_at_a_report_and_holds_what_arrived_over_its_span(sim_process):
    sink = CollectingSink()
    cfg = RunConfig(base_url=sim_process.url, model=SIM.model, concurrency=16, workers=WORKERS, window_s=1.0,
                    tick_hz=4, duration_s=5.0, max_tokens=48, input_tokens=32)
    c = Controller(cfg, sinks=[sink], stop_grace_s=30.0)  # every request finishes: all its chunks are in records
    c.start()
    try:
        assert c.wait(90), "the session did not end"
    finally:
        c.close()
    assert c.cancelled_at_stop == 0 and c.t0_ns is not None
    t0 = c.t0_ns
    stamps = {w: np.sort(np.fromiter((t for r in sink.records if r.worker == w for t in r.token_times_ns),
                                     dtype=np.int64)) for w in range(WORKERS)}
    reports = {w: np.asarray([t0, *sorted(p.t_ns for p in sink.progress if p.worker == w)], dtype=np.int64)
               for w in range(WORKERS)}
    assert all(p.final for p in sink.progress if p.t_ns == reports[p.worker][-1])  # each worker's last says so
    slack_ns = round(max(p.loop_lag_ms for p in sink.progress) * 1e6) + 1_000  # + 1 us: stamps are floored
    loaded = [s for s in sink.snapshots if 1.5 <= s.t_s <= cfg.duration_s and s.window.span_s >= 0.9]
    assert len(loaded) >= 8
    at_report = 0
    for s in loaded:
        end_ns = t0 + round(s.window.end_s * 1e9)
        start_ns = t0 + round((s.window.end_s - s.window.span_s) * 1e9)
        assert s.window.end_s <= s.t_s
        at_report += any(abs(int(r[np.abs(r - end_ns).argmin()]) - end_ns) <= 1 for r in reports.values())
        lo, hi = map(sum, zip(*(bracket(stamps[w], reports[w], slack_ns, start_ns, end_ns)
                                for w in range(WORKERS)), strict=True))
        assert lo <= s.window.output_tokens <= hi, (s.t_s, lo, s.window.output_tokens, hi)
    # the edge is a worker's latest report (a worker silent for a second would let it jump to now: allowed, rare)
    assert at_report >= len(loaded) // 2
    final = sink.snapshots[-1]  # every worker's final report is in: nothing is waited for
    assert final.window.end_s == final.t_s
    assert final.total.output_tokens == sum(r.output_tokens for r in sink.records)

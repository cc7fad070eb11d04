"""A --ray run's per-worker health on the dashboard, drawn from a Snapshot (no Ray here: the aggregator sums canned
worker views, the real dashboard draws them at 120x36). The same on a real two-node Ray run is in
tests/test_ray_workers.py."""

from __future__ import annotations

from tui_canned import CannedControl, screen_text, session_snapshot, until

from engine.control import ControlState
from engine.metrics.aggregator import Aggregator
from engine.snapshot import Snapshot, WorkerView
from tui.app import live_app
from tui.screens.workers_view import WorkersScreen
from tui.widgets.load import LoadPanel

SIZE = (120, 36)

VIEWS = (
    WorkerView(worker=0, host="node-a", node="aaaa", state="running", clock_offset_ms=0.0, clock_uncertainty_ms=0.0,
               loop_lag_ms=2.5, send_lag_ms=40.0, records_per_s=41.0, in_flight=4),
    WorkerView(worker=1, host="node-b", node="bbbb", state="running", clock_offset_ms=-3.25,
               clock_uncertainty_ms=0.4, loop_lag_ms=12.0, send_lag_ms=15.0, records_per_s=38.5, in_flight=4),
    WorkerView(worker=2, host="node-b", node="bbbb", state="lost", clock_offset_ms=-3.3, clock_uncertainty_ms=0.35,
               loop_lag_ms=80.0, send_lag_ms=5000.0, lost_requests=3),
)


def with_workers(snapshot: Snapshot, views=VIEWS) -> Snapshot:
    """The snapshot as the aggregator would make it with these worker views."""
    agg = Aggregator(t0_ns=0)
    agg.set_workers(list(views))
    workers = agg.snapshot(1_000_000_000, ControlState()).workers
    return snapshot.model_copy(update={"workers": workers})


def test_the_aggregator_sums_the_workers_up_and_leaves_a_plain_run_without():
    stats = with_workers(Snapshot()).workers
    assert stats is not None
    assert (stats.count, stats.nodes, stats.running, stats.lost, stats.lost_requests) == (3, 2, 2, 1, 3)
    # the worst of the live workers (the lost one's last figures do not count), the widest clock
    assert stats.loop_lag_ms == 12.0 and stats.loop_lag_high and stats.send_lag_ms == 40.0 and not stats.send_lag_high
    assert stats.clock_uncertainty_ms == 0.4
    unmeasured = with_workers(Snapshot(), (VIEWS[0], WorkerView(worker=1, state="starting"))).workers
    assert unmeasured is not None and unmeasured.clock_uncertainty_ms is None and unmeasured.send_lag_ms == 40.0
    agg = Aggregator(t0_ns=0)
    assert agg.snapshot(1, ControlState()).workers is None
    agg.set_workers(None)
    assert agg.snapshot(2, ControlState()).workers is None


def load_text(app) -> str:
    return str(app.screen.query_one(LoadPanel).render())


async def test_the_load_panel_shows_the_workers_and_n_lists_each_one():
    plain = session_snapshot(40)
    control = CannedControl([plain])
    app = live_app(control, refresh_hz=50)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "completed" in load_text(app), 5, "the first frame")
        before = load_text(app)
        assert "workers" not in before  # a plain run draws what it always drew
        control.push(with_workers(session_snapshot(41)))
        await until(pilot, lambda: "workers" in load_text(app), 5, "the workers line")
        text = load_text(app)
        assert "workers    2/3 · 1 lost\n" in text  # 24 columns: the nodes give way to the lost worker
        assert "lag 12 ms · send 40 ms" in text  # the worst live worker's loop lag and send lag
        assert app.screen.query_one(LoadPanel).border_subtitle == "clock ±0.4 ms"  # the widest clock uncertainty
        # nothing pushed out: the completed count joins the req/s line, as it does for a third error-class row
        assert "req/s      7.08  72 done" in text and "errors" in text and "in flight" in text
        assert "Latency" in screen_text(app) and "Throughput" in screen_text(app)

        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, WorkersScreen) and app.screen.text, 5, "the workers view")
        lines = app.screen.text.splitlines()
        assert lines[0] == "3 workers on 2 nodes, 2 running, 1 lost (3 requests counted as worker_lost)"
        assert lines[2].startswith("w0 node-a running  lag 2.5 ms  send 40 ms  41.0 rec/s  4 open  clock shared")
        assert lines[3].endswith("clock -3.250 ± 0.400 ms") and "lag 12 ms" in lines[3]
        assert lines[4].startswith("w2 node-b lost") and "3 requests lost" in lines[4]
        control.push(with_workers(session_snapshot(42), VIEWS[:2]))  # the view follows the snapshots
        await until(pilot, lambda: app.screen.text.startswith("2 workers on 2 nodes, 2 running"), 5, "an update")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, WorkersScreen), 5, "the dashboard again")


async def test_with_every_error_class_the_workers_line_stays_and_the_lags_give_way():
    control = CannedControl([with_workers(session_snapshot(400, errors=True))])
    app = live_app(control, refresh_hz=50)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "workers" in load_text(app), 5, "the first frame")
        text = load_text(app)
        assert "5xx" in text and "timeout" in text  # every error class still shown
        assert "1 lost" in text and "lag 12" not in text  # no row to spare for the lags: the summary stays

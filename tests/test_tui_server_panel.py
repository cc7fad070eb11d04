"""The Server panel: hidden without server metrics; over the real engine it shows the simulator's own figures
(scraped from its /metrics) beside the client's, and the GPU panel reads watts from its DCGM endpoint."""

from __future__ import annotations

import pytest
from tui_canned import CannedControl, screen_text, session, until

from engine.config import RunConfig
from engine.gpu.remote import CAPS_READ_ONLY, open_dcgm
from engine.load.controller import Controller
from engine.sim.model import SimConfig
from engine.sim.server import SimServer
from engine.snapshot import Percentiles, ServerEndpoint, ServerStats
from engine.telemetry.server_source import ServerMetrics, server_sources
from tui.app import live_app
from tui.widgets.gpu_cost import GpuCostPanel
from tui.widgets.server import ServerPanel, sparkline

SIZE = (120, 36)


async def test_the_panel_stays_hidden_without_server_metrics():
    app = live_app(CannedControl(session(8)), refresh_hz=0)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.renders > 0, what="a render")
        assert not app.screen.query_one(ServerPanel).display
        assert "server reqs" not in screen_text(app)  # nor a chart of it


async def test_the_servers_running_and_waiting_requests_are_charted_beside_the_clients():
    server = ServerStats(available=True, engine="vllm", running=6, waiting=2, kv_usage_pct=40.0,
                         endpoints=(ServerEndpoint(source="http://a/metrics", engine="vllm", ok=True),))
    snaps = [s.model_copy(update={"server": server}) for s in session(12)]
    app = live_app(CannedControl(snaps), refresh_hz=0)
    async with app.run_test(size=(160, 60)) as pilot:
        await until(pilot, lambda: "server reqs" in screen_text(app), what="the server chart")
        chart_line = next(line for line in screen_text(app).splitlines() if "server reqs" in line)
        assert "running" in chart_line and "waiting" in chart_line  # its legend: both series, latest values
        assert "6" in chart_line and "2" in chart_line, chart_line


async def test_a_stale_source_and_an_unknown_engine_are_one_line_each():
    snaps = session(8)
    stale = ServerStats(
        available=True, engine="vllm", running=3, waiting=1, kv_usage_pct=12.5, ttft=Percentiles(count=9, p50=40.0),
        endpoints=(ServerEndpoint(source="http://a:8000/metrics", engine="vllm", ok=True),
                   ServerEndpoint(source="http://b:8000/metrics", engine="vllm",
                                  message="stale since t=12s: timed out after 1 s")),
    )  # fmt: skip
    control = CannedControl([*snaps[:-1], snaps[-1].model_copy(update={"server": stale})])
    app = live_app(control, refresh_hz=0)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.screen.query_one(ServerPanel).display, what="the server panel")
        await until(pilot, lambda: "stale since" in screen_text(app), what="the stale line")
        text = screen_text(app)
        assert "http://b:8000/metrics: stale since t=12s: timed out after 1 s" in text
        assert "1/2 sources" in text and "running 3" in text


async def test_the_trend_line_follows_the_running_batch():
    base = session(4)[-1]
    control = CannedControl([base])
    app = live_app(control, refresh_hz=0)
    async with app.run_test(size=SIZE) as pilot:
        for i, running in enumerate((0, 2, 4, 8)):
            server = ServerStats(available=True, engine="vllm", running=running, waiting=0, kv_usage_pct=50.0,
                                 endpoints=(ServerEndpoint(source="http://a/metrics", engine="vllm", ok=True),))
            control.push(base.model_copy(update={"server": server, "t_s": base.t_s + i, "seq": base.seq + i + 1}))
            await until(pilot, lambda r=running: f"running {r}" in screen_text(app), what=f"running {running}")
        assert "trend  running ▁▃▅█ 8  waiting ▁▁▁▁ 0  KV ▅▅▅▅ 50%" in screen_text(app)


def test_sparkline_scales_to_its_top_and_leaves_unknowns_blank():
    assert sparkline([0, 1, 2, None, 4]) == "▁▃▅ █"  # 1/4 * 7 = 1.75 -> 2 (▃), 2/4 * 7 = 3.5 -> 4 (▅)
    assert sparkline([0.0, 0.0]) == "▁▁"
    assert sparkline([50.0], top=100.0) == "▅"  # 50/100 * 7 = 3.5 rounds to 4


@pytest.mark.slow
async def test_live_server_panel_and_dcgm_watts_over_the_simulator():
    sim = SimServer(SimConfig(seed=5))  # on a thread: starts in milliseconds even on a loaded box
    sim.start()
    try:
        root = sim.url.removesuffix("/v1")
        backend, message = open_dcgm([root + "/sim/dcgm/metrics"], interval_s=0.25)
        assert backend is not None, message
        config = RunConfig(base_url=sim.url, model=SimConfig().model, workers=1, concurrency=4, input_tokens=16,
                           max_tokens=48)  # fmt: skip
        metrics = ServerMetrics(server_sources("auto", sim.url), interval_s=0.25)
        control = Controller(config, gpu=backend, server_metrics=metrics)
        control.start()
        app = live_app(control, refresh_hz=4)
        async with app.run_test(size=SIZE) as pilot:

            def both_ttfts() -> bool:
                s = control.latest.server
                return s.available and s.ttft.p50 is not None and control.latest.window.ttft.p50 is not None

            await until(pilot, both_ttfts, timeout=60, what="server and client TTFT")
            await until(pilot, lambda: "Δ" in screen_text(app), timeout=30, what="the panel with both TTFTs")
            panel = app.screen.query_one(ServerPanel)
            assert panel.display and panel.border_subtitle.startswith("vllm")
            text = screen_text(app)
            assert "(server / client, ms)" in text and "TTFT p50" in text and "Δ" in text
            assert control.latest.gpu.source == "dcgm" and control.latest.gpu.watts is not None
            gpu_text = str(app.screen.query_one(GpuCostPanel).render())
            assert " W" in gpu_text
            await pilot.press("right_square_bracket")
            await until(pilot, lambda: any(m == CAPS_READ_ONLY for _, m in app.toasts.said), timeout=10,
                        what="the cap key's answer")  # fmt: skip
            await pilot.press("q")
            await until(pilot, lambda: app.return_code is not None, timeout=30, what="quit")
        control.close()
    finally:
        sim.stop()

"""Reading the dashboard right (issue 15 items 7-9, issue 12's stale GPU source): every error class, an error-rate
chart, one line per error burst, legends that are not ticks, series told apart without colour, latency in ms,
temperature/utilisation/memory and per-GPU rows in the GPU panel, and "stale since" when remote GPU telemetry
stops answering. The real app through Pilot at the issue's sizes; the stale source is a real loopback exporter."""

from __future__ import annotations

import re
import threading
import time

import pytest
from prom_servers import raw_server
from tui_canned import CannedControl, screen_text, session, session_snapshot, until

from engine.gpu.remote import open_dcgm
from engine.gpu.session import GpuSession
from engine.snapshot import EventView, GpuStats, Percentiles, Snapshot
from tui.app import live_app
from tui.widgets.event_log import EventLogPanel
from tui.widgets.load import SHORT_CLASS

SIZES = [(60, 16), (80, 24), (120, 40), (160, 48), (200, 60)]
ALL_CLASSES = {"http_5xx": 115, "http_429": 40, "timeout": 3, "connect": 2, "stream_broken": 1, "malformed": 1,
               "http_4xx": 2}  # fmt: skip


def with_gpus(snapshot: Snapshot, count: int) -> Snapshot:
    """The canned snapshot with ``count`` GPUs of distinct temperatures (60°C, 61°C, ...)."""
    base = snapshot.gpu.gpus[0]
    gpus = tuple(base.model_copy(update={"index": i, "temperature_c": 60 + i, "util_gpu_pct": 50 + i})
                 for i in range(count))  # fmt: skip
    limit = sum(g.power_limit_w or 0 for g in gpus)
    watts = (snapshot.gpu.watts or 0) * count
    gpu = snapshot.gpu.model_copy(update={"gpus": gpus, "power_limit_w": limit, "watts": watts})
    return snapshot.model_copy(update={"gpu": gpu})


async def shown(snapshots: list[Snapshot], size: tuple[int, int], needle: str | None = None) -> str:
    app = live_app(CannedControl(snapshots), refresh_hz=0)
    async with app.run_test(size=size) as pilot:
        if needle is not None:
            await until(pilot, lambda: needle in screen_text(app), what=repr(needle))
        await pilot.pause()
        return screen_text(app)


# -- item 9: the GPU panel -------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
async def test_the_gpu_panel_shows_temperature_utilisation_and_memory(size):
    last = session_snapshot(40)
    reading = last.gpu.gpus[0]
    text = await shown(session(40), size, "/79.6")
    assert f"{reading.temperature_c}°C" in text
    assert re.search(r"\d/79\.6 ?Gi?B?", text)  # 81,559 MiB of memory
    temp, util = f"{reading.temperature_c}°C", f"{reading.util_gpu_pct}%"
    if "W/limit" in text:  # the GPU's own row beside the summary, said once (it was also the summary's line)
        assert re.search(rf"\b0\s+{temp}\s+{util}", text) and f"util {util}" not in text
        assert text.count(temp) == 1, text
    else:
        assert f"util {util}" in text


async def test_at_200_columns_every_gpu_has_its_own_row():
    history = [with_gpus(s, 3) for s in session(40)]
    text = await shown(history, (200, 60), "W/limit")
    for i in range(3):
        assert re.search(rf"\b{i}\s+{60 + i}°C\s+{50 + i}%", text), f"no row for GPU {i}"
    assert "max 62°C" in text  # the summary line: the hottest of them


async def test_more_gpus_than_rows_end_with_how_many_more():
    history = [with_gpus(s, 8) for s in session(40)]
    text = await shown(history, (200, 60), "W/limit")
    assert "+4 more GPUs" in text and re.search(r"\b3\s+63°C", text) and not re.search(r"\b4\s+64°C", text)


def dcgm_body(watts: float) -> bytes:
    labels = 'gpu="0",UUID="GPU-a",modelName="NVIDIA H100",Hostname="node-1"'
    return (f"# TYPE DCGM_FI_DEV_POWER_USAGE gauge\nDCGM_FI_DEV_POWER_USAGE{{{labels}}} {watts}\n"
            f"# TYPE DCGM_FI_DEV_GPU_TEMP gauge\nDCGM_FI_DEV_GPU_TEMP{{{labels}}} 55\n").encode()  # fmt: skip


def wait(predicate, timeout_s: float = 15.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


async def test_a_remote_gpu_source_that_stops_answering_shows_stale_since_in_the_panel():
    failing = threading.Event()
    answers = iter(range(10**9))

    def respond(_path, _query):
        if failing.is_set():
            return 503, "text/plain", b"exporter restarting", 0.0
        return 200, "text/plain; version=0.0.4", dcgm_body(300 + next(answers) % 7), 0.0

    with raw_server(respond) as root:
        url = root + "/metrics"
        backend, message = open_dcgm([url], interval_s=0.05)
        assert backend is not None, message
        samples = []
        session_ = GpuSession.open(backend, gpus=None, sim_url=None, on_samples=samples.extend)
        try:
            energy = session_.energy
            assert energy is not None
            for sample in backend.read([0]):
                energy.add(sample)

            def stats() -> GpuStats:
                return energy.stats(time.perf_counter_ns(), window_s=10.0, window_output_tokens=0,
                                    window_total_tokens=0, total_output_tokens=0, total_total_tokens=0, steady=True)

            assert stats().stale_s is None  # answering: not stale
            failing.set()
            assert wait(lambda: stats().stale_s is not None), "the source never counted as stale"
            time.sleep(0.3)
            gpu = stats()
            assert gpu.stale_s is not None and gpu.stale_s >= 0.3
            assert url in gpu.stale_reason and "503" in gpu.stale_reason
            at = session_snapshot(40)
            stale = at.model_copy(update={"gpu": at.gpu.model_copy(update={"stale_s": 4.0,
                                                                           "stale_reason": gpu.stale_reason})})
            for size in ((160, 48), (80, 24)):
                text = await shown([*session(39), stale], size, "stale since")
                assert f"⚠ stale since {_clock(at.t_s - 4.0)}" in text
                assert f"{url.removeprefix('http://')}: HTTP 503" in text
            failing.clear()
            assert wait(lambda: stats().stale_s is None), "answering again did not clear the stale state"
        finally:
            session_.close()


def _clock(seconds: float) -> str:
    from engine.reports import format as fmt

    return fmt.clock(seconds)


# -- item 7: errors ----------------------------------------------------------------------------------------------


def with_classes(by_class: dict[str, int]) -> list[Snapshot]:
    history = session(40, errors=True)
    last = history[-1]
    total = last.total.model_copy(update={"errors": sum(by_class.values()), "errors_by_class": by_class})
    history[-1] = last.model_copy(update={"total": total, "waiting_first_token": 3, "oldest_wait_s": 1.5})
    return history


@pytest.mark.parametrize("size", [(160, 48), (200, 60)])
async def test_every_error_class_is_shown(size):
    text = await shown(with_classes(ALL_CLASSES), size, "5xx 115")
    for name, count in ALL_CLASSES.items():
        assert f"{SHORT_CLASS[name]} {count}" in text, name
    assert "no 1st tok 3, oldest 1.5s" in text  # beside TTFT, in the Latency panel


@pytest.mark.parametrize("size", SIZES)
async def test_the_usual_few_classes_are_all_shown_and_more_say_how_many(size):
    few = {"http_5xx": 115, "http_429": 40, "timeout": 3}
    text = await shown(with_classes(few), size, "5xx 115")
    if size[1] >= 20:  # 60x16 has a single line for them
        for name, count in few.items():
            assert f"{SHORT_CLASS[name]} {count}" in text, name
    if size[0] < 150:  # a 2x2 grid: five or six rows for the Load panel
        text = await shown(with_classes(ALL_CLASSES), size, "5xx 115")
        shown_classes = sum(f"{SHORT_CLASS[name]} {count}" in text for name, count in ALL_CLASSES.items())
        more = re.search(r"\+(\d+) more", text)
        assert more is not None and shown_classes + int(more[1]) == len(ALL_CLASSES), text


async def test_the_error_rate_chart_appears_once_a_request_failed():
    clean = await shown(session(40), (160, 48), "GPU W")
    assert "errors %" not in clean
    failing = await shown(session(40, errors=True), (160, 48), "errors %")
    assert re.search(r"errors %\s+█ now 2", failing)


async def test_an_error_burst_is_one_line_in_the_events_panel():
    control = CannedControl(session(20))
    app = live_app(control, refresh_hz=0)
    async with app.run_test(size=(160, 48)) as pilot:
        log = app.screen.query_one(EventLogPanel)
        before = log.count
        reports = [(6.0, "http_5xx: 503 Service Unavailable"), (7.0, "http_5xx x37: 503 Service Unavailable"),
                   (8.0, "http_5xx x77: 503 Service Unavailable"), (8.5, "timeout: read timed out after 30 s"),
                   (30.0, "http_5xx: 500 Internal Server Error")]  # fmt: skip
        for seq, (t_s, message) in enumerate(reports, start=21):
            control.push(session_snapshot(seq).model_copy(
                update={"new_events": (EventView(t_s=t_s, kind="error", message=message),)}))  # fmt: skip
        await until(pilot, lambda: log.count == before + 3, what="three lines: the burst, the timeout, a later 5xx")
        messages = [m for _, kind, m in log.entries if kind == "error"]
        assert messages == ["http_5xx x115 in 2s: 503 Service Unavailable", "timeout: read timed out after 30 s",
                            "http_5xx: 500 Internal Server Error"]  # fmt: skip
        await until(pilot, lambda: "http_5xx x115 in 2s" in screen_text(app))
        assert "x37" not in screen_text(app) and "x77" not in screen_text(app)


# -- item 8: charts and units ------------------------------------------------------------------------------------


async def test_legends_sit_above_the_plots_and_the_gutter_holds_only_ticks():
    text = await shown(session(200), (200, 60), "GPU W")
    lines = text.splitlines()
    legend = next(line for line in lines if "GPU W" in line and "now" in line)
    assert "━ now" in legend and "╍ limit" in legend
    gutters = [line.split("│", 1)[1][:7] for line in lines if "┤" in line and line.startswith("╭") is False]
    ticks = [g for g in gutters if "┤" in g]
    assert ticks and all(re.fullmatch(r" *[\d.,k]+┤", t) for t in ticks), ticks
    assert any(re.fullmatch(r" *250┤", t) for t in ticks)  # a mid tick on an 11-row chart (GPU W: 0-1k)


async def test_under_no_color_the_reference_lines_are_dashed(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    text = await shown(session(200), (160, 48), "GPU W")
    # the 700 W limit is a dashed line: braille cells with blanks between them, not a solid run
    assert re.search(r"(?:[\u2801-\u28ff] ){12}", text)
    assert re.search(r"[\u2801-\u28ff]{24}", text)  # and the measured series are solid


async def test_latency_is_always_in_milliseconds():
    history = session(40)
    last = history[-1]
    e2e = Percentiles(count=500, p50=12_345.0, p90=15_000.0, p95=16_000.0, p99=123_456.0)
    history[-1] = last.model_copy(update={"window": last.window.model_copy(update={"e2e": e2e})})
    text = await shown(history, (160, 48), "12345")
    assert "123k" in text and "12.3s" not in text and "Latency ms" in text


@pytest.mark.parametrize("size", [(120, 40), (160, 48)])
async def test_one_vocabulary(size):
    text = await shown(session(40), size, "J/out tok")
    for word in ("run p50", "run = since start", "in+out", "run out", "J/out tok"):
        assert word in text, word
    assert "all p50" not in text and "J/tok " not in text


async def test_events_wrap_again_after_a_resize():
    control = CannedControl(session(20))
    app = live_app(control, refresh_hz=0)
    message = "a long line " + " ".join(f"word{i}" for i in range(30))
    async with app.run_test(size=(200, 60)) as pilot:
        control.push(session_snapshot(21).model_copy(
            update={"new_events": (EventView(t_s=5.0, kind="warning", message=message),)}))  # fmt: skip
        log = app.screen.query_one(EventLogPanel)
        await until(pilot, lambda: "word29" in screen_text(app))
        wide = len(log.lines)
        await pilot.resize_terminal(120, 40)  # the Events panel narrows from 46 to 38 columns
        await until(pilot, lambda: len(log.lines) > wide, what="the lines wrapped again")
        assert all(line.cell_length <= log.scrollable_content_region.width for line in log.lines)
        await until(pilot, lambda: "word29" in screen_text(app))

"""`wattload report --html`: one self-contained file, opened in a real headless Chromium (Debian's package).

Checked in the browser: no console error or page error, no request other than the file itself (everything is
inline), and every chart drew data (an SVG element with a ``data-`` id and a non-empty box). Inputs are real: a
`sweep --sim --at capacity --power-caps` result (ceiling curve + power-cap curve) and a recording written through
the real Recorder; the matrix heatmaps use a small hand-written matrix result (a real 4x4 matrix takes minutes).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from synthetic_recording import SyntheticSpec

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright (Python package) is not installed")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on this machine (apt-get install chromium; .ci/run installs it)"
)


def wattload(*argv, env=None, timeout=300):
    proc = subprocess.run([sys.executable, "-m", "tui.cli", *argv], capture_output=True, text=True, timeout=timeout,
                          env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


@pytest.fixture(scope="module")
def sweep_result(tmp_path_factory):
    d = tmp_path_factory.mktemp("capsweep")
    prof = d / "p.toml"
    prof.write_text('description = "html test"\napi = "completions"\ninput = 64\noutput = 128\nignore_eos = true\n')
    out = d / "result.json"
    env = {**os.environ, "WATTLOAD_STATE_DIR": str(d / "state")}
    wattload("sweep", "--sim", "--sim-set", "speed=20", "--sim-set", "kv_capacity_tokens=576", "--profile", str(prof),
             "--at", "capacity", "--power-caps", "700,250", "--linear", "1", "--max", "6", "--threshold", "0.10",
             "--step-time", "0.5s", "--min-requests", "5", "--workers", "1", "--refresh", "10", "--json", str(out),
             env=env)  # fmt: skip
    return out


@pytest.fixture(scope="module")
def recording(synthetic_recording):
    return synthetic_recording(SyntheticSpec(), "s.wattload.sqlite")


@pytest.fixture
def matrix_result(tmp_path):
    cells = []
    for i in (128, 1024):
        for o in (64, 512):
            step = {"output_tokens_per_s": 40_000 / (i / 128 + o / 64), "joules_per_output_token": 0.1 + i / 1e4}
            cells.append({"input_tokens": i, "output_tokens": o, "result": {"outcome": {"capacity_step": step}}})
    path = tmp_path / "matrix.json"
    path.write_text(json.dumps({"format": "wattload-sweep", "kind": "matrix", "model": "m", "cells": cells}))
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module (a launch costs seconds); each page gets its own fresh context."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def open_in_chromium(browser: Browser, html_path: Path) -> dict:
    context = browser.new_context()
    try:
        page = context.new_page()
        problems, requests = [], []
        page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning")
                else None)  # fmt: skip
        page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(html_path.resolve().as_uri(), wait_until="load", timeout=30_000)
        charts = page.eval_on_selector_all(
            "figure",
            """fs => fs.map(f => {
                const data = [...f.querySelectorAll('[id^="data-"]')];
                const drawn = data.filter(e => {
                    const b = e.getBoundingClientRect(); return b.width > 0 || b.height > 0; });
                const points = data.map(e => [...e.querySelectorAll('path')].map(p => (p.getAttribute('d') || '')
                    .split(/[ML]/).length - 1).reduce((a, b) => a + b, 0)).reduce((a, b) => a + b, 0);
                const images = data.filter(e => e.tagName === 'image' || e.querySelector('image')).length;
                return {id: f.id, svg: !!f.querySelector('svg'), drawn: drawn.length, points, images,
                        width: f.querySelector('svg').getBoundingClientRect().width};
            })""",
        )
        text = page.inner_text("body")
    finally:
        context.close()
    return {"problems": problems, "requests": requests, "charts": charts, "text": text}


def check_page(browser: Browser, html_path: Path, expect: set[str]) -> dict:
    seen = open_in_chromium(browser, html_path)
    assert seen["problems"] == []
    assert seen["requests"] == [html_path.resolve().as_uri()]  # nothing fetched: it opens offline
    assert {c["id"] for c in seen["charts"]} == expect
    for c in seen["charts"]:
        assert c["svg"] and c["width"] > 200 and c["drawn"] >= 1, c
        assert c["points"] >= 2 or c["images"] >= 1, c  # a line or scatter with points, or a heatmap's image
    return seen


@needs_browser
def test_sweep_result_report_opens_offline_with_every_chart_drawn(browser, sweep_result, tmp_path):
    out = tmp_path / "r.html"
    wattload("report", str(sweep_result), "--html", str(out), "--png", str(tmp_path / "png"))
    html = out.read_text()
    assert "<script" not in html and not any(a in html for a in ('href="http', 'src="http', "url(http", "@import"))
    seen = check_page(browser, out, {"chart-throughput-latency", "chart-power-cap"})
    data = json.loads(sweep_result.read_text())
    assert data["powercap"]["summaries"] and data["result"]["outcome"]["capacity"] is not None
    assert "sweet spot" in seen["text"] and data["profile"]["sha256"] in seen["text"]
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["power-cap.png", "throughput-latency.png"]
    assert all((tmp_path / "png" / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in ("power-cap.png",))


@needs_browser
def test_recording_report_has_the_timeline_and_the_phase_table(browser, recording, tmp_path):
    out = tmp_path / "rec.html"
    wattload("report", str(recording), "--html", str(out))
    seen = check_page(browser, out, {"chart-timeline"})
    assert "Phases" in seen["text"] and "Metadata" in seen["text"]
    timeline = next(c for c in seen["charts"] if c["id"] == "chart-timeline")
    assert timeline["drawn"] >= 4  # tok/s, TTFT p50 and p99, watts, in flight


@needs_browser
def test_matrix_heatmaps_render(browser, matrix_result, tmp_path):
    out = tmp_path / "m.html"
    wattload("report", str(matrix_result), "--html", str(out))
    check_page(browser, out, {"chart-heatmap-output_tokens_per_s", "chart-heatmap-joules_per_output_token"})


def test_a_file_that_is_neither_is_one_line(tmp_path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text('{"hello": 1}')
    proc = subprocess.run([sys.executable, "-m", "tui.cli", "report", str(bad), "--html", str(tmp_path / "o.html")],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "not a wattload sweep result" in proc.stderr

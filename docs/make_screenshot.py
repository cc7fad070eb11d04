"""Regenerate every dashboard picture in docs/ from one real session (not canned figures).

Run: .venv/bin/python docs/make_screenshot.py [--seconds 150]

It starts the built-in simulated server (subprocess) and the real Controller with the simulated GPU, opens the
dashboard headless at 160x48, starts recording with r at 5 s and steers it like an operator would: 8 streams,
then + + (16) at 40 s, then the power cap down 4 steps of 25 W at 80 s, then * (32) at 110 s. At the end it saves:
dashboard.svg/.txt (160x48), dashboard-80x24.svg, log-view.svg (l, the full event log), then replays the
recording and saves replay-after-seek.svg (End, then 60 s back: the charts keep their history), and
exit-summary.txt (what the terminal shows after the dashboard closes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import tempfile
import time
from pathlib import Path

from engine.cli.session_end import print_session_end, track_recordings
from engine.config import RunConfig
from engine.load.controller import Controller
from engine.pricing import DEFAULT_PRICING, load_pricing
from engine.replay.player import Player
from engine.reports.clock import wall_clock_label
from engine.sim.model import SimConfig
from engine.sim.process import start_sim_process
from engine.storage.recorder import session_recorders
from tui.app import WattloadApp, live_app, replay_app

DOCS = Path(__file__).resolve().parent
SCRIPT = ((40.0, ("plus", "plus")), (80.0, ("left_square_bracket",) * 4), (110.0, ("asterisk",)))


def screen_text(app: WattloadApp) -> str:
    return "\n".join("".join(seg.text for seg in strip).rstrip() for strip in app.screen._compositor.render_strips())


async def session(seconds: float) -> None:
    os.environ.setdefault("WATTLOAD_STATE_DIR", tempfile.mkdtemp(prefix="wattload-doc-"))
    sim = start_sim_process(SimConfig(seed=7))
    config = RunConfig(base_url=sim.url, model=SimConfig().model, concurrency=8, step=4)
    pricing = load_pricing(DEFAULT_PRICING)
    record_dir = tempfile.mkdtemp(prefix="wattload-doc-rec-")
    controller = Controller(config, gpu="sim", sim_url=sim.url, pricing=pricing,
                            recorder_factory=session_recorders(pricing=pricing, directory=record_dir))
    recordings = track_recordings(controller)
    started_at = wall_clock_label()
    controller.start()
    app = live_app(controller)
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            start = time.monotonic()
            pending = [(5.0, ("r",)), *SCRIPT]
            while (elapsed := time.monotonic() - start) < seconds:
                if pending and elapsed >= pending[0][0]:
                    await pilot.press(*pending.pop(0)[1])
                await pilot.pause(0.25)
            app.clear_notifications()
            await pilot.pause(0.5)
            app.save_screenshot(str(DOCS / "dashboard.svg"))
            (DOCS / "dashboard.txt").write_text(screen_text(app) + "\n")
            await pilot.press("l", "slash", *"cap", "enter")
            await pilot.pause(0.5)
            app.save_screenshot(str(DOCS / "log-view.svg"))
            await pilot.press("escape")
            await pilot.resize_terminal(80, 24)
            await pilot.pause(1.0)
            app.clear_notifications()
            await pilot.pause(0.3)
            app.save_screenshot(str(DOCS / "dashboard-80x24.svg"))
    finally:
        controller.close()
        sim.stop()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        print_session_end(controller, started_at=started_at, recordings=recordings, sim_url=sim.url)
    (DOCS / "exit-summary.txt").write_text(summary.getvalue().replace(record_dir, "recordings"))
    if recordings:
        await replay_after_seek(Path(recordings[0]))


async def replay_after_seek(path: Path) -> None:
    player = Player(path, playing=False)
    app = replay_app(player, refresh_hz=4.0)
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            player.wait_index(60)
            for key in ("end", "shift+left"):
                landed = app.dashboard.backfills
                await pilot.press(key)
                player.wait_idle(10)
                deadline = time.monotonic() + 60
                while app.dashboard.backfills == landed and time.monotonic() < deadline:  # the history, rebuilt
                    await pilot.pause(0.1)
            await pilot.pause(0.5)
            app.clear_notifications()
            await pilot.pause(0.3)
            app.save_screenshot(str(DOCS / "replay-after-seek.svg"))
    finally:
        player.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--replay-only", metavar="FILE", help="only redo replay-after-seek.svg from this recording")
    args = parser.parse_args()
    if args.replay_only:
        asyncio.run(replay_after_seek(Path(args.replay_only)))
        return
    asyncio.run(session(args.seconds))
    names = ("dashboard.svg", "dashboard.txt", "dashboard-80x24.svg", "log-view.svg", "replay-after-seek.svg",
             "exit-summary.txt")
    print("wrote " + ", ".join(str(DOCS / name) for name in names))


if __name__ == "__main__":
    main()

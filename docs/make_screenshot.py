"""Regenerate docs/dashboard.svg and docs/dashboard.txt from a real session (not canned figures).

Run: .venv/bin/python docs/make_screenshot.py [--seconds 150]

It starts the built-in simulated server (subprocess) and the real Controller with the simulated GPU, opens the
dashboard headless at 160x48, and steers it like an operator would: 8 streams, then + + (16) at 40 s, then the
power cap down 4 steps of 25 W at 80 s, then * (32) at 110 s. The picture is saved at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from engine.config import RunConfig
from engine.load.controller import Controller
from engine.pricing import DEFAULT_PRICING, load_pricing
from engine.sim.model import SimConfig
from engine.sim.process import start_sim_process
from tui.app import WattloadApp, live_app

DOCS = Path(__file__).resolve().parent
SCRIPT = ((40.0, ("plus", "plus")), (80.0, ("left_square_bracket",) * 4), (110.0, ("asterisk",)))


def screen_text(app: WattloadApp) -> str:
    return "\n".join("".join(seg.text for seg in strip).rstrip() for strip in app.screen._compositor.render_strips())


async def session(seconds: float) -> None:
    os.environ.setdefault("WATTLOAD_STATE_DIR", tempfile.mkdtemp(prefix="wattload-doc-"))
    sim = start_sim_process(SimConfig(seed=7))
    config = RunConfig(base_url=sim.url, model=SimConfig().model, concurrency=8, step=4)
    controller = Controller(config, gpu="sim", sim_url=sim.url, pricing=load_pricing(DEFAULT_PRICING))
    controller.start()
    app = live_app(controller)
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            start = time.monotonic()
            pending = list(SCRIPT)
            while (elapsed := time.monotonic() - start) < seconds:
                if pending and elapsed >= pending[0][0]:
                    await pilot.press(*pending.pop(0)[1])
                await pilot.pause(0.25)
            app.clear_notifications()
            await pilot.pause(0.5)
            app.save_screenshot(str(DOCS / "dashboard.svg"))
            (DOCS / "dashboard.txt").write_text(screen_text(app) + "\n")
    finally:
        controller.close()
        sim.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=150.0)
    asyncio.run(session(parser.parse_args().seconds))
    print(f"wrote {DOCS / 'dashboard.svg'} and {DOCS / 'dashboard.txt'}")


if __name__ == "__main__":
    main()

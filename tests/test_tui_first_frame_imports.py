"""The dashboard's first frame waits for no heavy import (issue 15: it took 5-7 s, `import tui.app` alone 3.9 s on a
busy box). What `wattload demo` imports up to its first frame, in a fresh interpreter, holds none of the
libraries the frame does not need; the time itself is measured by tests/bench/first_frame.py, never asserted."""

import subprocess
import sys
import textwrap

HEAVY = ("numpy", "httpx", "aiohttp", "matplotlib", "prometheus_client", "engine.sim.server", "engine.reports.summary",
         "engine.sweep.runner")  # fmt: skip

UP_TO_THE_FIRST_FRAME = textwrap.dedent(
    f"""
    import asyncio, sys
    from tui.cli import build_parser, chosen_command
    build_parser(chosen_command(["demo"]))  # what `wattload demo` parses with
    import tui.commands.demo
    from engine.load.deferred import DeferredControl
    from tui.app import live_app

    control = DeferredControl(model="m", workload="demo")

    async def first_frame():
        app = live_app(control, refresh_hz=4)
        async with app.run_test(size=(160, 48)) as pilot:
            control.say("starting the simulated server…")  # what the demo's starter says at once
            for _ in range(100):
                if app.first_frame.is_set() and "starting the simulated server" in str(
                        app.screen.query_one("#header").render()):
                    break
                await pilot.pause(0.05)
            assert app.first_frame.is_set()

    asyncio.run(first_frame())
    print(sorted(m for m in {HEAVY!r} if m in sys.modules))
    """
)


def test_nothing_heavy_is_imported_before_the_first_frame():
    done = subprocess.run([sys.executable, "-c", UP_TO_THE_FIRST_FRAME], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout

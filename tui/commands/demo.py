"""`wattload demo`: the whole tool with nothing to set up. Starts the built-in simulated endpoint (a subprocess)
and its simulated GPU, loads it at 8 streams (hotkey step 4) and opens the live TUI; everything stops on exit.

Every load option of `wattload run` is accepted (e.g. `wattload demo --rate 5`), so the demo doubles as a way to
try settings. ``--headless`` and ``--json FILE`` behave as they do for `run` (the same summary and report, from
`run`'s own code). textual is imported only once the TUI opens.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from engine.cli.common import (
    add_load_args,
    check_output_path,
    config_from_args,
    profile_from_args,
    ray_spec_from_args,
    session_pricing,
    sigint_blocked,
    start_recording_or_fail,
)
from engine.cli.exits import UserError
from engine.cli.options import add_run_output_args, set_help
from engine.cli.session_end import print_session_end
from engine.cli.telemetry_args import add_telemetry_args, telemetry_spec_from_args
from tui.commands.startup import Startup, run_with_startup

if TYPE_CHECKING:
    from engine.load.controller import Controller

def _note(line: str) -> None:
    print(f"wattload: {line}", file=sys.stderr)


DEMO_CONCURRENCY = 8
DEMO_STEP = 4.0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "demo",
        help="watch wattload on the built-in simulated server and GPU (nothing to set up)",
        description="Start the simulated OpenAI-compatible server and its simulated GPU, load it at "
        f"{DEMO_CONCURRENCY} streams and open the live TUI. Try + and - for load, [ and ] for the power cap.",
    )
    add_load_args(p)
    set_help(p, "--step", f"hotkey step for concurrency (or rate); default {DEMO_STEP:g} in the demo")
    p.add_argument("--profile", metavar="NAME|FILE",
                   help="workload profile (chat-short, chat, rag, doc, code, or a TOML file): lengths, prompts, API")
    p.add_argument("--record", nargs="?", const="", default=None, metavar="PATH",
                   help="record the session from the start (default file under --record-dir)")
    p.add_argument("--sim-speed", type=float, default=1.0, metavar="X",
                   help="run the simulated server X times faster (J/token shrinks by the same factor)")  # fmt: skip
    p.add_argument("--record-dir", default="recordings", metavar="DIR", help="where `r` writes recordings")
    add_run_output_args(p)
    add_telemetry_args(p, demo=True)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.step is None:
        args.step = DEMO_STEP
    if args.concurrency is None and args.rate is None:
        args.concurrency = DEMO_CONCURRENCY
    if args.sim_speed <= 0:
        raise UserError("--sim-speed must be > 0")
    telemetry_spec_from_args(args)  # contradictory options: one line before anything starts
    check_output_path(args.json, "--json")
    if args.headless:
        return _run_headless(args)
    sim_urls: list[str] = []

    def start(startup: Startup) -> Controller:
        startup.say("starting the simulated server…")
        url, model = startup.stack.enter_context(simulated_server(args.seed, args.sim_speed))  # its own process
        sim_urls.append(url)
        startup.wait_for_first_frame()
        startup.say("starting the engine…")
        return open_demo_session(args, url, model, notify=startup.note)

    done = run_with_startup(start, record=args.record, refresh_hz=args.refresh, step=args.step,
                            model=args.model or "", workload="demo", theme=getattr(args, "theme", None))  # fmt: skip
    if done.controller is not None:
        print_session_end(done.controller, started_at=done.startup.started_at, recordings=done.startup.recordings,
                          json_path=args.json, sim_url=sim_urls[0] if sim_urls else None)  # fmt: skip
    return done.code


def _run_headless(args: argparse.Namespace) -> int:
    """The demo without the dashboard: `run --headless` on the simulated server (progress, summary, --json)."""
    from tui.commands.run import check_load_can_end, run_headless

    check_load_can_end(args)
    with simulated_server(args.seed, args.sim_speed) as (url, model):
        controller = open_demo_session(args, url, model)  # its notes on stderr: no dashboard to draw over
        if args.record is not None:
            start_recording_or_fail(controller, args.record)
        return run_headless(controller, json_path=args.json)


@contextlib.contextmanager
def simulated_server(seed: int = 0, speed: float = 1.0) -> Iterator[tuple[str, str]]:
    """The simulated server in a subprocess for the length of the demo: yields (its /v1 URL, its model name)."""
    from engine.sim.model import SimConfig
    from engine.sim.process import SimStartError, start_sim_process

    sim_config = SimConfig(seed=seed, speed=speed)
    try:
        with sigint_blocked():  # a terminal Ctrl-C must not kill the server under a draining run
            sim = start_sim_process(sim_config)
    except SimStartError as exc:
        raise UserError(str(exc)) from None
    try:
        yield sim.url, sim_config.model
    finally:
        sim.stop()


def open_demo_session(
    args: argparse.Namespace, url: str, model: str, notify: Callable[[str], None] = _note
) -> Controller:
    """The demo's session: the simulator as given (no probing), its simulated GPU and that GPU's pricing, the
    lengths calibrated like run's (unless --no-calibrate), `r` writing to --record-dir. ``notify``: the startup
    notes (the dashboard's status line while it opens, so nothing is printed over it)."""
    from engine.session.build import build_session
    from engine.session.spec import RecordingSpec, SessionSpec

    spec = SessionSpec(
        config=config_from_args(args, base_url=url, model=args.model or model),
        probe="none",
        profile=profile_from_args(args),
        calibrate=not args.no_calibrate,
        gpu=args.gpu,
        gpus=args.gpus,
        sim_url=url,
        pricing=session_pricing(args, url, url, notify),
        recording=RecordingSpec(directory=args.record_dir),
        telemetry=telemetry_spec_from_args(args),
        ray=ray_spec_from_args(args),
    )
    return build_session(spec, notify=notify).controller

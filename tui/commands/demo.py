"""`wattload demo`: the whole tool with nothing to set up. Starts the built-in simulated endpoint (a subprocess)
and its simulated GPU, loads it at 8 streams (hotkey step 4) and opens the live TUI; everything stops on exit.

Every load option of `wattload run` is accepted (e.g. `wattload demo --rate 5`), so the demo doubles as a way to
try settings. textual is imported only once the TUI opens.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

from engine.cli.common import (
    add_load_args,
    config_from_args,
    pricing_from_args,
    profile_from_args,
    ray_spec_from_args,
    sigint_blocked,
    start_recording_or_fail,
)
from engine.cli.exits import UserError
from engine.cli.options import set_help
from engine.cli.session_end import print_session_end, track_recordings
from engine.cli.telemetry_args import add_telemetry_args, telemetry_spec_from_args
from engine.load.deferred import DeferredControl
from engine.reports.summary import wall_clock_label

if TYPE_CHECKING:
    from engine.load.controller import Controller
    from engine.pricing import PricingProfile

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
    pricing = pricing_from_args(args)
    from tui.app import run_tui

    # The dashboard opens at once over a DeferredControl that says what startup is doing; the simulated server
    # and the controller are built on a thread and handed over when ready (seconds on a busy machine).
    deferred = DeferredControl(model=args.model or "", workload="demo")
    stack = contextlib.ExitStack()
    recordings: list[list[str]] = []
    sim_urls: list[str] = []

    def start() -> None:
        try:
            deferred.say("starting the simulated server…")
            url, model = stack.enter_context(simulated_server(args.seed, args.sim_speed))
            sim_urls.append(url)
            deferred.say("starting the engine…")
            controller = open_demo_session(args, url, model, pricing)
            recordings.append(track_recordings(controller))  # the files r opens, for the end summary
            if args.record is not None:
                start_recording_or_fail(controller, args.record)
            deferred.attach(controller, endpoint=url, model=controller.config.model)
        except UserError as exc:
            deferred.fail(str(exc))
        except Exception as exc:  # one line in the dashboard's failure box, never a traceback over it
            deferred.fail(f"startup failed: {exc}".splitlines()[0])

    DeferredControl.prepare_process_spawning()
    starter = threading.Thread(target=start, name="wattload-demo-start", daemon=True)
    starter.start()
    started_at = wall_clock_label()
    try:
        code = run_tui(deferred, refresh_hz=args.refresh, step=args.step)
    finally:
        deferred.close()
        starter.join(60)
        deferred.close()  # attached while the dashboard was closing: attach() closed it already
        with sigint_blocked():
            stack.close()
    controller = deferred.target
    if controller is not None:
        print_session_end(controller, started_at=started_at, recordings=recordings[0] if recordings else [],
                          sim_url=sim_urls[0] if sim_urls else None)  # fmt: skip
    return code


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


def open_demo_session(args: argparse.Namespace, url: str, model: str, pricing: PricingProfile) -> Controller:
    """The demo's session: the simulator as given (no probing), its simulated GPU, `r` writing to --record-dir."""
    from engine.session.build import build_session
    from engine.session.spec import RecordingSpec, SessionSpec

    spec = SessionSpec(
        config=config_from_args(args, base_url=url, model=args.model or model),
        probe="none",
        profile=profile_from_args(args.profile),
        gpu=args.gpu,
        gpus=args.gpus,
        sim_url=url,
        pricing=pricing,
        recording=RecordingSpec(directory=args.record_dir),
        telemetry=telemetry_spec_from_args(args),
        ray=ray_spec_from_args(args),
    )
    return build_session(spec, notify=_note).controller


def _note(line: str) -> None:
    print(f"wattload: {line}", file=sys.stderr)

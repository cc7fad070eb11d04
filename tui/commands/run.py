"""`wattload run URL`: load an OpenAI-compatible endpoint; the TUI by default, or headless with --headless.

Headless prints a progress line every few seconds (stderr, terminals only), the summary table at the end
(stdout), and --json the report. Ctrl-C stops cleanly: in-flight requests get a moment to finish, the summary of
what ran is still printed and written, and the exit code is 130. textual is imported only to open the TUI.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from engine.cli.common import add_load_args, config_from_args, detected_gpu_name, pricing_from_args
from engine.cli.exits import EXIT_FAILED, EXIT_INTERRUPTED, UserError
from engine.cli.session_end import print_session_end, track_recordings
from engine.cli.trace_args import add_trace_args, trace_spec
from engine.reports.summary import wall_clock_label

if TYPE_CHECKING:
    from engine.load.controller import Controller
    from engine.metrics.turns import TurnTally
    from engine.pricing import PricingProfile
    from engine.workload.calibration import CalibrationResult
    from engine.workload.lengths import LengthTally
    from engine.workload.profile import LoadedProfile

PROGRESS_EVERY_S = 3.0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "run",
        help="load an endpoint and watch latency, tokens/s, watts and $/M tokens",
        description="Send streaming requests to an OpenAI-compatible endpoint (closed loop --concurrency N or "
        "open loop --rate R) and measure TTFT, ITL, tokens/s, errors, GPU power and cost.",
    )
    p.add_argument("url", nargs="?", help="the server root or its /v1 base, e.g. http://127.0.0.1:8000")
    p.add_argument("--sim", action="store_true", help="start the built-in simulated server and load it")
    p.add_argument("--headless", action="store_true", help="no TUI: progress lines, then a summary table")
    p.add_argument("--json", metavar="FILE", help="write the final figures and the settings (no API key) here")
    p.add_argument("--profile", metavar="NAME|FILE",
                   help="workload profile (chat-short, chat, rag, doc, code, or a TOML file): lengths, prompts, API")
    p.add_argument("--record", nargs="?", const="", default=None, metavar="PATH",
                   help="record the session from the start (default file under recordings/)")
    p.add_argument("--record-tokens", action="store_true",
                   help="also record every token's arrival time (replay can then show ITL; ~2 bytes per token)")
    add_load_args(p)
    add_trace_args(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if bool(args.url) == bool(args.sim):
        raise UserError("give the endpoint URL (e.g. http://127.0.0.1:8000), or --sim for the simulated server")
    with _sim_server(args) as sim_url:
        url = sim_url or args.url
        telemetry_url = sim_url or (args.url if args.gpu == "sim" else None)
        gpu_name = detected_gpu_name(args.gpu, telemetry_url, args.gpus) if args.gpu != "none" else None
        pricing = pricing_from_args(args, gpu_name)
        controller, workload, turns, lengths = _prepare(args, url, pricing, sim_url)
        recordings = track_recordings(controller) if not args.headless else []
        if args.record is not None:
            _start_recording(controller, args.record)
        if not args.headless:
            run_tui = _tui_runner()
            if run_tui is not None:
                started_at = wall_clock_label()
                try:
                    code = run_tui(controller, refresh_hz=args.refresh, step=args.step)
                finally:
                    controller.close()
                print_session_end(controller, started_at=started_at, recordings=recordings, json_path=args.json,
                                  sim_url=sim_url)  # fmt: skip
                return code
            print("wattload: the TUI is not available in this build; running headless", file=sys.stderr)
        return run_headless(controller, json_path=args.json, workload=workload, turns=turns, lengths=lengths)


def _prepare(
    args: argparse.Namespace, url: str, pricing: PricingProfile, sim_url: str | None
) -> tuple[Controller, dict[str, Any] | None, TurnTally, RunLengths]:
    """The arguments as a SessionSpec; the engine probes the endpoint and builds the controller. Also returns what
    the workload was (the profile with its hash, or the trace's fingerprint), the per-turn tally and the lengths.
    Without --profile or a trace, --input-tokens/--max-tokens are the profile, calibrated on the server like one
    unless --no-calibrate."""
    from engine.endpoint.errors import ProbeError, ServerFaultDuringProbe
    from engine.metrics.turns import TurnTally
    from engine.session.build import build_session
    from engine.session.spec import RecordingSpec, SessionSpec
    from engine.session.workload_setup import command_line_profile
    from engine.workload.lengths import LengthTally
    from engine.workload.profile import ProfileError

    config = config_from_args(args, base_url=url)
    trace = trace_spec(args)
    profile = _load_profile(args.profile)
    if profile is None and trace is None and not args.no_calibrate:
        profile = command_line_profile(config)
    tally = LengthTally.for_profile(profile) if profile is not None else LengthTally(config.input_tokens,
                                                                                     config.max_tokens)
    spec = SessionSpec(
        config=config,
        profile=profile,
        trace=trace,
        gpu=args.gpu,
        gpus=args.gpus,
        sim_url=sim_url,
        pricing=pricing,
        recording=RecordingSpec(record_tokens=args.record_tokens),
    )
    turns = TurnTally()
    try:
        try:
            session = build_session(spec, notify=_note, sinks=[turns, tally])
        except ServerFaultDuringProbe as exc:
            if args.profile:
                raise
            # default calibration is a refinement: a flaky server gets its run, uncalibrated, and one line saying so
            _note(f"input lengths not calibrated ({exc}); sending --input-tokens as words")
            spec = spec.model_copy(update={"profile": None})
            tally = LengthTally(config.input_tokens, config.max_tokens)
            session = build_session(spec, notify=_note, sinks=[turns, tally])
    except (ProbeError, ProfileError) as exc:  # ProfileError: a trace row the user must fix
        raise UserError(str(exc)) from None
    return session.controller, session.workload, turns, RunLengths(tally, session.calibration)


@dataclass(frozen=True)
class RunLengths:
    """Target vs measured lengths for the summary and --json: the tally of every successful request's usage, and
    the calibration that chose the prompts (None with --no-calibrate)."""

    tally: LengthTally
    calibration: CalibrationResult | None = None


def _note(line: str) -> None:
    print(f"wattload: {line}", file=sys.stderr)


def _load_profile(profile: str | None) -> LoadedProfile | None:
    """--profile: the loaded profile (one line when it is invalid), or None."""
    if not profile:
        return None
    from engine.workload.profile import ProfileError, load_profile

    try:
        return load_profile(profile)
    except ProfileError as exc:
        raise UserError(str(exc)) from None


def _start_recording(controller: Controller, path: str) -> None:
    """--record: open the file before the load starts, so the whole session is in it."""
    message = controller.start_recording(path or None)
    if controller.recording_path is None:
        raise UserError(message)
    print(f"wattload: recording to {message}", file=sys.stderr)


@contextlib.contextmanager
def _sim_server(args: argparse.Namespace) -> Iterator[str | None]:
    """With --sim, the simulated server in a subprocess for the length of the run (shared with `demo`)."""
    if not args.sim:
        yield None
        return
    from tui.commands.demo import simulated_server

    with simulated_server(args.seed) as (url, _model):
        if args.headless:  # with the dashboard the header shows it, and the end summary says it has stopped
            print(f"wattload: simulated server at {url}", file=sys.stderr)
        yield url


def _system_info(controller: Controller) -> dict[str, object] | None:
    """Host, driver, CUDA and GPUs, as sweep results and recordings carry them; never fails the run."""
    try:
        return controller.system_info().model_dump(mode="json")
    except Exception:  # metadata is decoration: its absence must not lose a run's result
        return None


def _tui_runner() -> Callable[..., int] | None:
    """The TUI's entry point, or None when this build has no TUI (then `run` goes headless with a note)."""
    try:
        from tui.app import run_tui
    except ImportError:
        return None
    return run_tui


def run_headless(
    controller: Controller,
    *,
    json_path: str | None = None,
    workload: dict[str, Any] | None = None,
    turns: TurnTally | None = None,
    lengths: RunLengths | None = None,
) -> int:
    """Run to the end (duration, request count, Ctrl-C or failure); print the summary; write --json."""
    from engine.reports.summary import RunReport, format_summary, progress_line, wall_clock_label, write_report
    from engine.snapshot import RunState

    interrupted = False

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupted
        if interrupted:
            raise KeyboardInterrupt  # a second Ctrl-C: stop waiting for the drain
        interrupted = True
        print("\nwattload: stopping; Ctrl-C again to quit at once", file=sys.stderr)
        controller.stop()

    started_at = wall_clock_label()
    show_progress = sys.stderr.isatty()
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        controller.start()
        next_line = time.monotonic() + PROGRESS_EVERY_S
        while not controller.wait(0.25):
            while not controller.notices.empty():  # e.g. the HTTP client fell back to aiohttp
                print(f"wattload: {controller.notices.get()}", file=sys.stderr, flush=True)
            if show_progress and time.monotonic() >= next_line:
                next_line += PROGRESS_EVERY_S
                print(progress_line(controller.latest), file=sys.stderr, flush=True)
    finally:
        signal.signal(signal.SIGINT, previous)
        system = _system_info(controller)  # before close(): the GPU backend is still open
        controller.close()
    while not controller.notices.empty():
        print(f"wattload: {controller.notices.get()}", file=sys.stderr)
    final = controller.latest
    reason, cancelled = controller.stop_reason, controller.cancelled_at_stop
    check = lengths.tally.check() if lengths is not None else None
    print(format_summary(final, stop_reason=reason, cancelled=cancelled, gpu_note=controller.gpu_message))
    if check is not None and check.requests:
        print(f"  lengths     {check.line()} (target -> measured by the server's usage)")
    per_turn = turns.figures() if turns is not None else []
    if per_turn:
        from engine.metrics.turns import format_turns

        print(format_turns(per_turn))
    if json_path:
        report = RunReport(
            started_at=started_at,
            state=final.state.value,
            stop_reason=controller.stop_reason,
            interrupted=interrupted,
            cancelled_at_stop=controller.cancelled_at_stop,
            settings=controller.config.safe_dump(),
            pricing=final.cost.profile or None,
            result=final,
            workload=workload,
            turns=per_turn,
            system=system,
            lengths=check,
            calibration=lengths.calibration if lengths is not None else None,
        )
        try:
            write_report(report, json_path)
        except OSError as exc:
            raise UserError(f"cannot write {json_path}: {exc.strerror}") from None
    if final.state is RunState.FAILED:
        print(f"wattload: the run failed: {final.message}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_INTERRUPTED if interrupted else 0

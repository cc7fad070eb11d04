"""`wattload run URL`: load an OpenAI-compatible endpoint; the TUI by default, or headless with --headless.

Headless prints a progress line every few seconds (stderr, terminals only), the summary table at the end
(stdout), and --json the report. Ctrl-C stops cleanly: in-flight requests get a moment to finish, the summary of
what ran is still printed and written, and the exit code is 130. textual is imported only to open the TUI.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.cli.common import (
    add_load_args,
    check_output_path,
    config_from_args,
    profile_from_args,
    ray_spec_from_args,
    session_pricing,
    start_recording_or_fail,
)
from engine.cli.exits import EXIT_FAILED, UserError
from engine.cli.options import add_run_output_args
from engine.cli.session_end import distributed_fields, print_session_end
from engine.cli.telemetry_args import add_telemetry_args, telemetry_spec_from_args
from engine.cli.trace_args import add_trace_args, trace_spec
from engine.redact import redact_url

if TYPE_CHECKING:
    from engine.load.controller import Controller
    from engine.metrics.turns import TurnTally
    from engine.pricing import PricingProfile
    from engine.workload.calibration import CalibrationResult
    from engine.workload.lengths import LengthTally

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
    add_run_output_args(p)
    p.add_argument("--profile", metavar="NAME|FILE",
                   help="workload profile (chat-short, chat, rag, doc, code, or a TOML file): lengths, prompts, API")
    p.add_argument("--record", nargs="?", const="", default=None, metavar="PATH",
                   help="record the session from the start (default file under recordings/)")
    p.add_argument("--record-dir", default="recordings", metavar="DIR",
                   help="where --record and `r` write recordings (default recordings/)")
    p.add_argument("--record-tokens", action="store_true",
                   help="also record every token's arrival time (replay can then show ITL; ~2 bytes per token)")
    add_load_args(p)
    add_telemetry_args(p)
    add_trace_args(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if bool(args.url) == bool(args.sim):
        raise UserError("give the endpoint URL (e.g. http://127.0.0.1:8000), or --sim for the simulated server")
    telemetry_spec_from_args(args)  # contradictory options: one line before anything starts
    ray_spec_from_args(args)
    if args.headless:
        check_load_can_end(args)
    check_output_path(args.json, "--json")
    if not args.headless:
        return _run_dashboard(args)
    from engine.signals import OWNER

    with _sim_server(args) as sim_url:
        with OWNER.stopping(_leave_at_once):  # probing and calibrating: a stop signal leaves now, 128 + signal
            url = sim_url or args.url
            pricing = session_pricing(args, url, sim_url)
            controller, workload, turns, lengths = _prepare(args, url, pricing, sim_url)
        if args.record is not None:
            start_recording_or_fail(controller, args.record)
        return run_headless(controller, json_path=args.json, workload=workload, turns=turns, lengths=lengths)


def _run_dashboard(args: argparse.Namespace) -> int:
    """The dashboard opens at once and shows the startup (the simulated server, probing, calibration) as it
    happens; a probe that fails is one line in it, and printed again once the terminal is restored."""
    from tui.commands.startup import Startup, run_with_startup

    sim_urls: list[str] = []

    def start(startup: Startup) -> Controller:
        sim_url = None
        if args.sim:
            startup.say("starting the simulated server…")
            sim_url = startup.stack.enter_context(_sim_server(args))
            sim_urls.append(str(sim_url))
        startup.wait_for_first_frame()
        url = sim_url or args.url
        startup.say(f"probing {redact_url(url)}…")
        pricing = session_pricing(args, url, sim_url, startup.note)  # the detected GPU's, as headless picks it
        controller, _, _, _ = _prepare(args, url, pricing, sim_url, notify=startup.note)
        return controller

    done = run_with_startup(start, record=args.record, refresh_hz=args.refresh, step=args.step,
                            theme=getattr(args, "theme", None))  # fmt: skip
    if done.controller is not None:
        print_session_end(done.controller, started_at=done.startup.started_at, recordings=done.startup.recordings,
                          json_path=args.json, sim_url=sim_urls[0] if sim_urls else None)  # fmt: skip
    return done.code


def _leave_at_once(signum: int) -> None:
    """A stop signal before the load starts: nothing has run yet, so there is nothing to summarise."""
    from engine.signals import StopNow

    raise StopNow(signum)


def check_load_can_end(args: argparse.Namespace) -> None:
    """A headless run with no load sends nothing: it would wait forever (or measure nothing); say so at once."""
    if args.rate is not None and args.rate == 0:
        raise UserError("--rate 0 sends no requests, so a headless run would measure nothing and, with "
                        "--requests, never end; give a rate > 0")
    if args.rate is None and args.concurrency == 0:
        raise UserError("--concurrency 0 keeps no request in flight, so a headless run would measure nothing and, "
                        "with --requests, never end; give a concurrency > 0")


def _prepare(
    args: argparse.Namespace, url: str, pricing: PricingProfile, sim_url: str | None,
    notify: Callable[[str], None] | None = None,
) -> tuple[Controller, dict[str, Any] | None, TurnTally, RunLengths]:
    """The arguments as a SessionSpec; the engine probes the endpoint and builds the controller. Also returns what
    the workload was (the profile with its hash, or the trace's fingerprint), the per-turn tally and the lengths.
    Without --profile or a trace, --input-tokens/--max-tokens are the profile, calibrated on the server like one
    unless --no-calibrate."""
    from engine.endpoint.errors import ProbeError
    from engine.metrics.turns import TurnTally
    from engine.session.build import build_session
    from engine.session.spec import RecordingSpec, SessionSpec
    from engine.workload.lengths import LengthTally
    from engine.workload.profile import ProfileError

    config = config_from_args(args, base_url=url)
    trace = trace_spec(args)
    profile = profile_from_args(args)
    tally = LengthTally.for_profile(profile) if profile is not None else LengthTally(config.input_tokens,
                                                                                     config.max_tokens)
    spec = SessionSpec(
        config=config,
        profile=profile,
        calibrate=not args.no_calibrate,
        trace=trace,
        gpu=args.gpu,
        gpus=args.gpus,
        sim_url=sim_url,
        pricing=pricing,
        recording=RecordingSpec(directory=args.record_dir, record_tokens=args.record_tokens),
        telemetry=telemetry_spec_from_args(args),
        ray=ray_spec_from_args(args),
    )
    note = notify or _note
    turns = TurnTally()
    try:
        session = build_session(spec, notify=note, sinks=[turns, tally])
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


def run_headless(
    controller: Controller,
    *,
    json_path: str | None = None,
    workload: dict[str, Any] | None = None,
    turns: TurnTally | None = None,
    lengths: RunLengths | None = None,
) -> int:
    """Run to the end (duration, request count, Ctrl-C or failure); print the summary; write --json."""
    from engine.reports.summary import (
        RunReport,
        format_summary,
        progress_line,
        wall_clock_label,
        worker_lines,
        write_report,
    )
    from engine.signals import OWNER, SIGINT, signal_name
    from engine.snapshot import RunState

    def on_stop(signum: int) -> None:
        again = "Ctrl-C" if signum == SIGINT else f"{signal_name(signum)} or Ctrl-C"
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
            print(f"\nwattload: stopping ({signal_name(signum)}); {again} again to quit at once", file=sys.stderr)
        controller.stop("stopped by the operator" if signum == SIGINT else f"stopped by {signal_name(signum)}")

    started_at = wall_clock_label()
    show_progress = sys.stderr.isatty()
    recording = controller.recording_path
    said_recording_failed = False

    def tell_recording_failed() -> None:
        nonlocal said_recording_failed
        failed = controller.recording_failed
        if failed and not said_recording_failed:
            said_recording_failed = True
            with contextlib.suppress(OSError):
                print(f"wattload: {failed}; the load goes on", file=sys.stderr, flush=True)

    def tell_notices() -> None:
        while not controller.notices.empty():  # e.g. the HTTP client fell back to aiohttp
            with contextlib.suppress(OSError):
                print(f"wattload: {controller.notices.get()}", file=sys.stderr, flush=True)

    system: dict[str, object] | None = None
    with OWNER.stopping(on_stop, sigint=True) as stopped:
        try:
            controller.start()
            next_line = time.monotonic() + PROGRESS_EVERY_S
            while not controller.wait(0.25):
                tell_notices()
                tell_recording_failed()
                if show_progress and time.monotonic() >= next_line:
                    next_line += PROGRESS_EVERY_S
                    with contextlib.suppress(OSError):
                        print(progress_line(controller.latest), file=sys.stderr, flush=True)
        finally:
            system = _system_info(controller)  # before close(): the GPU backend is still open
            controller.close()
    tell_notices()
    tell_recording_failed()
    interrupted = stopped.received
    final = controller.latest
    reason, cancelled = controller.stop_reason, controller.cancelled_at_stop
    check = lengths.tally.check() if lengths is not None else None
    with contextlib.suppress(OSError):  # a hung-up terminal must not cost the --json file
        print(format_summary(final, stop_reason=reason, cancelled=cancelled, gpu_note=controller.gpu_message))
        if check is not None and check.requests:
            print(f"  lengths     {check.line()} (target -> measured by the server's usage)")
        for line in worker_lines(controller):
            print(line)
    per_turn = turns.figures() if turns is not None else []
    prefix_cache = turns.prefix_cache() if turns is not None else None
    if per_turn:
        from engine.metrics.turns import format_turns

        with contextlib.suppress(OSError):
            print(format_turns(per_turn, prefix_cache))
    if json_path:
        report = RunReport(
            started_at=started_at,
            state=final.state.value,
            stop_reason=controller.stop_reason,
            interrupted=interrupted,
            stop_signal=signal_name(stopped.signum) if stopped.signum is not None else None,
            recording=recording,
            recording_failed=controller.recording_failed,
            cancelled_at_stop=controller.cancelled_at_stop,
            **distributed_fields(controller),
            settings=controller.config.safe_dump(),
            pricing=final.cost.profile or None,
            result=final,
            workload=workload,
            turns=per_turn,
            prefix_cache=prefix_cache,
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
    if stopped.exit_code is not None:
        return stopped.exit_code
    total = final.total
    if total.requests == 0 and total.errors > 0:
        worst = max(total.errors_by_class.items(), key=lambda kv: kv[1])[0] if total.errors_by_class else "?"
        print(f"wattload: no request succeeded ({total.errors:,} failed, most as {worst})",
              file=sys.stderr)
        return EXIT_FAILED
    return 0

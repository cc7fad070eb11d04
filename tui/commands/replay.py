"""`wattload replay FILE`: the recording in the same dashboard as a live run (recomputed by the same aggregator),
or with --drive URL its control timeline repeated against a live endpoint, recording a new session.

textual is imported only to open the TUI, so `replay --drive` stays headless.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from engine.cli.common import open_recording_or_fail, ray_spec_from_args
from engine.cli.exits import UserError
from engine.cli.options import add_ray_args
from engine.config import api_key_from_env
from engine.gpu.base import BACKEND_KINDS

if TYPE_CHECKING:
    from engine.pricing import PricingProfile
    from engine.replay.player import Player
    from engine.storage.reader import Recording


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay",
        help="replay a recording in the dashboard, or re-drive its control timeline against a live endpoint",
        description="Open a recording (recordings/*.wattload.sqlite) in the live dashboard: every figure is "
        "recomputed from the recorded requests, stream progress and GPU telemetry. Keys: space play/pause, "
        "←/→ seek 10 s (shift: 60 s), home/end, 1 2 4 8 speed, 0 as fast as possible. With --drive URL, repeat "
        "the recorded load steps and pauses (and power-cap steps with --with-power) against URL and record a new "
        "session to compare with `wattload report OLD NEW`.",
    )
    p.add_argument("file", help="a wattload recording")
    p.add_argument("--speed", type=float, default=1.0, metavar="X", help="playback speed (0 = as fast as possible)")
    p.add_argument("--paused", action="store_true", help="open paused at the start")
    drive = p.add_argument_group("re-drive")
    drive.add_argument("--drive", metavar="URL", help="repeat the recorded control timeline against this endpoint")
    drive.add_argument("--with-power", action="store_true", help="also repeat the power-cap steps (needs GPU control)")
    drive.add_argument("--record", metavar="PATH", help="the new recording (default: recordings/<time>_<host>_<model>)")
    drive.add_argument("--model", "-m", default=None, help="model to request (default: the recorded one if served)")
    drive.add_argument("--api-key", default=None, metavar="KEY", help="bearer key (default: $WATTLOAD_API_KEY, "
                       "$OPENAI_API_KEY); never written anywhere")
    drive.add_argument("--gpu", choices=BACKEND_KINDS, default=None,
                       help="GPU telemetry for the new session (default auto)")
    drive.add_argument("--record-tokens", action="store_true", help="store per-token arrival times (bigger file)")
    drive.add_argument("--trace", metavar="FILE", help="a trace recording: where its trace file is now, if it moved "
                       "(it must hash to the recorded sha256); by default the recorded path")
    add_ray_args(drive)
    p.set_defaults(func=_run)


def _open_player(args: argparse.Namespace) -> Player:
    from engine.replay.player import Player
    from engine.storage.store import RecordingError

    if args.speed < 0:
        raise UserError(f"--speed must be >= 0, got {args.speed:g}")
    try:
        return Player(args.file, speed=args.speed, playing=not args.paused)
    except RecordingError as exc:
        raise UserError(str(exc)) from None


def _run(args: argparse.Namespace) -> int:
    if args.trace and not args.drive:
        raise UserError("--trace applies to --drive (where a trace recording's trace file is now)")
    if args.drive:
        return _drive(args)
    player = _open_player(args)
    from tui.app import run_replay_tui

    return run_replay_tui(player, theme=getattr(args, "theme", None))


def _drive(args: argparse.Namespace) -> int:
    from engine.endpoint.errors import ProbeError
    from engine.replay.redrive import control_timeline, recorded_trace, redrive, redrive_config
    from engine.session.build import build_session
    from engine.session.spec import RecordingSpec, SessionSpec, TraceSpec
    from engine.storage.store import RecordingError

    with open_recording_or_fail(args.file) as rec:
        key = args.api_key or api_key_from_env()
        _, end_s = control_timeline(rec, with_power=args.with_power)
        try:
            config = redrive_config(rec, args.drive, args.model or rec.meta.session.model or "", key, end_s)
            trace = recorded_trace(rec, args.trace)
        except RecordingError as exc:
            raise UserError(str(exc)) from None
        spec = SessionSpec(
            config=config,
            probe="resolve",  # the recorded timeline is the test: no preflight request
            gpu=args.gpu,
            pricing=_recorded_pricing(rec),
            # a trace recording: the same rows on the same schedule (its RATE steps are the speed)
            trace=None if trace is None else TraceSpec(path=trace.path, speed=trace.speed, window_s=trace.window_s),
            recording=RecordingSpec(workload=rec.meta.workload,
                                    record_tokens=args.record_tokens or rec.meta.record_tokens),
            ray=ray_spec_from_args(args),
        )
        try:
            controller = build_session(spec).controller
        except ProbeError as exc:
            raise UserError(str(exc)) from None
        try:
            path = redrive(rec, controller, record_path=args.record, with_power=args.with_power,
                           log=lambda line: print(line, flush=True))
        except RecordingError as exc:
            raise UserError(str(exc)) from None
        finally:
            controller.close()
    print(f"recorded {path}; compare with: wattload report {args.file} {path}")
    return 0


def _recorded_pricing(rec: Recording) -> PricingProfile | None:
    from pydantic import ValidationError

    from engine.pricing import PricingProfile

    data = rec.meta.pricing
    if not data:
        return None
    try:
        return PricingProfile.model_validate(data)
    except ValidationError:
        return None

"""``--trace FILE``, ``--trace-speed X`` and ``--trace-window START:END``: replay a production trace.

Kept apart from the shared option groups so the load engine's own options stay as they are: the trace sets the
load shape itself (open loop on the trace's clock, as many requests as it has rows).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from engine.cli.common import positive
from engine.cli.exits import UserError

if TYPE_CHECKING:
    from engine.config import RunConfig
    from engine.session.trace_setup import TracePlan
    from engine.workload.traces.requests import TraceFactory


def add_trace_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("trace replay")
    group.add_argument("--trace", metavar="FILE",
                       help="replay a trace on its own clock: Mooncake or Bailian JSONL, Azure or BurstGPT CSV "
                            "(detected by its fields)")  # fmt: skip
    group.add_argument("--trace-speed", type=positive(float), default=1.0, metavar="X",
                       help="compress (2 = twice as fast) or stretch (0.5) the trace's time; the rate keys "
                            "scale it live (default 1)")  # fmt: skip
    group.add_argument("--trace-window", default=None, metavar="START:END",
                       help="replay only rows with START <= t < END, in the trace's seconds (e.g. 600:900)")


def trace_workload(args: argparse.Namespace, config: RunConfig) -> tuple[TraceFactory, RunConfig, TracePlan]:
    """Detect, check and fingerprint the trace, calibrate lengths on the server; one line for every problem."""
    from engine.endpoint.errors import ProbeError as LengthProbeError
    from engine.session.trace_setup import prepare_trace
    from engine.workload.traces import TraceError, TraceWindow

    if getattr(args, "profile", None):
        raise UserError("--trace and --profile cannot be combined: the trace sets lengths and arrival times")
    if getattr(args, "rate", None) is not None or getattr(args, "concurrency", None) is not None:
        raise UserError("--trace replays on the trace's own clock; use --trace-speed instead of --rate/--concurrency")
    try:
        window = TraceWindow.parse(args.trace_window) if args.trace_window else None
    except ValueError as exc:
        raise UserError(f"--trace-window: {exc}") from None
    try:
        factory, config, plan = prepare_trace(config, args.trace, speed=args.trace_speed, window=window)
    except (TraceError, LengthProbeError) as exc:
        raise UserError(str(exc)) from None
    fp = plan.fingerprint
    print(f"wattload: trace detected as {factory.source.description}", file=sys.stderr)
    print(f"wattload: {fp.line()}", file=sys.stderr)
    if plan.skipped:
        print(f"wattload: {args.trace}: {plan.skipped}", file=sys.stderr)
    if plan.calibration is not None and plan.calibration.measured_tokens is not None:
        cal = plan.calibration
        print(f"wattload: input length calibrated on the server: target {cal.target_tokens:.0f} tokens, "
              f"measured {cal.measured_tokens:.0f} ({cal.error_pct or 0.0:+.1f}%)", file=sys.stderr)  # fmt: skip
    return factory, config, plan

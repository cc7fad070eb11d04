"""``--trace FILE``, ``--trace-speed X`` and ``--trace-window START:END``: replay a production trace.

Kept apart from the shared option groups so the load engine's own options stay as they are: the trace sets the
load shape itself (open loop on the trace's clock, as many requests as it has rows).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from engine.cli.argtypes import Given
from engine.cli.common import positive
from engine.cli.exits import UserError

if TYPE_CHECKING:
    from engine.session.spec import TraceSpec


def add_trace_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("trace replay")
    group.add_argument("--trace", metavar="FILE",
                       help="replay a trace on its own clock: Mooncake or Bailian JSONL, Azure or BurstGPT CSV "
                            "(detected by its fields)")  # fmt: skip
    group.add_argument("--trace-speed", type=positive(float), default=1.0, metavar="X", action=Given,
                       help="compress (2 = twice as fast) or stretch (0.5) the trace's time; the rate keys "
                            "scale it live (default 1)")  # fmt: skip
    group.add_argument("--trace-window", default=None, metavar="START:END",
                       help="replay only rows with START <= t < END, in the trace's seconds (e.g. 600:900)")


def trace_spec(args: argparse.Namespace) -> TraceSpec | None:
    """The trace options as a ``TraceSpec`` (None without ``--trace``); one line for what cannot be combined."""
    from engine.session.spec import TraceSpec
    from engine.workload.traces import TraceWindow

    if not getattr(args, "trace", None):
        return None
    if getattr(args, "profile", None):
        raise UserError("--trace and --profile cannot be combined: the trace sets lengths and arrival times")
    if getattr(args, "rate", None) is not None or getattr(args, "concurrency", None) is not None:
        raise UserError("--trace replays on the trace's own clock; use --trace-speed instead of --rate/--concurrency")
    window = None
    if args.trace_window:
        try:
            parsed = TraceWindow.parse(args.trace_window)
        except ValueError as exc:
            raise UserError(f"--trace-window: {exc}") from None
        window = (parsed.start_s, parsed.end_s)
    return TraceSpec(path=args.trace, speed=args.trace_speed, window_s=window)

"""``wattload`` entry point: parses arguments and hands off to one command module.

Each subcommand is one module with ``register(subparsers)``: the headless ones (report, export, gpu, sweep, sim) in
``engine/cli/``, the dashboard ones (run, demo, replay) in ``tui/commands/``. The dashboard modules import textual
only inside the functions that open the TUI, so headless paths (``run --headless``, ``report``, ``gpu``) never load it.
Errors that the user can fix become one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from engine import __version__
from engine.cli.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USER, UserError

__all__ = ["COMMANDS", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_USER", "UserError", "build_parser", "main"]

# Subcommand name -> the module that registers it, in the order `wattload --help` lists them.
COMMANDS = {
    "run": "tui.commands.run",
    "demo": "tui.commands.demo",
    "sim": "engine.cli.sim",
    "gpu": "engine.cli.gpu",
    "replay": "tui.commands.replay",
    "report": "engine.cli.report",
    "export": "engine.cli.export",
    "sweep": "engine.cli.sweep",
    "plan": "engine.cli.plan",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wattload",
        description="Live monitor and load tester for LLM serving endpoints: latency, tokens/s, watts, $/M tokens.",
    )
    parser.add_argument("--version", action="version", version=f"wattload {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMANDS.values():
        module = importlib.import_module(module_name)
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"wattload: {exc}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())

"""``wattload`` entry point: parses arguments and hands off to one command module.

Each subcommand lives in ``tui/commands/<name>.py`` with ``register(subparsers)``; modules import textual only
inside the functions that open the TUI, so headless paths (``run --headless``, ``report``, ``gpu``) never load it.
Errors that the user can fix become one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from engine import __version__

EXIT_FAILED = 1  # the engine failed (a worker died, the server refused everything)
EXIT_USER = 2  # a problem the user can fix: one line, no traceback
EXIT_INTERRUPTED = 130  # Ctrl-C: the summary so far was still printed and written

COMMANDS = ("run", "demo", "sim", "gpu", "replay", "report", "export", "sweep", "plan")


class UserError(Exception):
    """A problem the user can fix (bad URL, bad file, missing permission): printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wattload",
        description="Live monitor and load tester for LLM serving endpoints: latency, tokens/s, watts, $/M tokens.",
    )
    parser.add_argument("--version", action="version", version=f"wattload {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"tui.commands.{name}")
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

"""``wattload`` entry point: parses arguments and hands off to one command module.

Each subcommand is one module with ``register(subparsers)``: the headless ones (report, export, gpu, sweep, sim) in
``engine/cli/``, the dashboard ones (run, demo, replay) in ``tui/commands/``. The dashboard modules import textual
only inside the functions that open the TUI, so headless paths (``run --headless``, ``report``, ``gpu``) never load it.
Errors that the user can fix become one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from engine import __version__
from engine.cli.exits import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USER, UserError
from engine.redact import redact_text, register_secret, url_credentials

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
    "config": "engine.cli.config_cmd",
}


def register_secrets(args: argparse.Namespace) -> None:
    """Every secret this process may handle is known to the scrubber before anything is printed or written:
    the API key (flag or environment) and the password of any URL argument."""
    sources = (("--api-key", getattr(args, "api_key", None)), ("$WATTLOAD_API_KEY", os.environ.get("WATTLOAD_API_KEY")),
               ("$OPENAI_API_KEY", os.environ.get("OPENAI_API_KEY")))
    for _, value in sources:
        register_secret(value)
        if value:  # the key's pieces too: a header error would otherwise show them around the bad character
            for piece in value.split():
                register_secret(piece)
    for name in ("url", "drive"):
        url = getattr(args, name, None)
        if isinstance(url, str):
            register_secret(url_credentials(url)[1])


def check_api_keys(args: argparse.Namespace) -> None:
    """A key with a newline or a space (a pasted file, a quoting slip) cannot be a header: say so once, up front,
    instead of every request failing with a header error."""
    sources = (("--api-key", getattr(args, "api_key", None)), ("$WATTLOAD_API_KEY", os.environ.get("WATTLOAD_API_KEY")),
               ("$OPENAI_API_KEY", os.environ.get("OPENAI_API_KEY")))
    for where, value in sources:
        if value and (value != value.strip() or any(not c.isprintable() or c.isspace() for c in value)):
            raise UserError(f"the API key from {where} contains whitespace or a control character (a newline?); "
                            "it cannot be sent as a header")
        if value:
            return  # the first key found is the one used


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Every subcommand, or only ``only``'s: importing each command module costs startup time (the sim server,
    the report stack, aiohttp), and a dashboard command must show its first frame fast."""
    parser = argparse.ArgumentParser(
        prog="wattload",
        description="Live monitor and load tester for LLM serving endpoints: latency, tokens/s, watts, $/M tokens.",
    )
    parser.add_argument("--version", action="version", version=f"wattload {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        if only is not None and name != only:
            continue
        module = importlib.import_module(module_name)
        module.register(sub)
    return parser


def chosen_command(argv: list[str]) -> str | None:
    """The subcommand ``argv`` names, when it is the first argument after the global options (else None: the full
    parser then answers --help, a typo or a missing command as before)."""
    for arg in argv:
        if arg.startswith("-"):
            return None  # --version, --help: the full parser
        return arg if arg in COMMANDS else None
    return None


def main(argv: list[str] | None = None) -> int:
    from engine.cli.settings_file import apply_to_args, apply_to_parser, load_settings

    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(chosen_command(argv))
    try:
        settings = load_settings()  # the defaults file: it changes defaults, a flag given still wins
    except UserError as exc:
        print(f"wattload: {redact_text(str(exc))}", file=sys.stderr)
        return EXIT_USER
    apply_to_parser(settings, parser)
    args = parser.parse_args(argv)
    apply_to_args(settings, args)
    args.theme = settings.theme
    register_secrets(args)
    try:
        check_api_keys(args)
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"wattload: {redact_text(str(exc))}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())

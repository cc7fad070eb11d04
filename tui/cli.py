"""``wattload`` entry point: parses arguments and hands off to one command module.

Each subcommand lives in ``tui/commands/<name>.py`` with ``register(subparsers)``; modules import textual only
inside the functions that open the TUI, so headless paths (``run --headless``, ``report``, ``gpu``) never load it.
Errors that the user can fix become one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from engine import __version__
from engine.redact import redact_text, register_secret, url_credentials

EXIT_FAILED = 1  # the engine failed (a worker died, the server refused everything)
EXIT_USER = 2  # a problem the user can fix: one line, no traceback
EXIT_INTERRUPTED = 130  # Ctrl-C: the summary so far was still printed and written

COMMANDS = ("run", "demo", "sim", "gpu", "replay", "report", "export", "sweep")


class UserError(Exception):
    """A problem the user can fix (bad URL, bad file, missing permission): printed as one line, exit code 2.
    Its text is scrubbed of secrets when it is made (it often names the URL or quotes the server)."""

    def __init__(self, message: str = "") -> None:
        super().__init__(redact_text(str(message)))


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
    # `python -m tui.cli` runs this file as __main__; the commands raise tui.cli.UserError, a different class
    # from __main__.UserError, so hand over to the real module (else a user error is a traceback and exit 1).
    from tui.cli import main as _main

    sys.exit(_main())

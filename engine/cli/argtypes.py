"""argparse types shared by every command: durations (90s, 5m, 1h) and positive numbers."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|min|h)?\s*$", re.IGNORECASE)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """'90', '90s', '5m', '1.5h', '500ms' -> seconds (> 0)."""
    match = _DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 60s, 5m, 1h)")
    seconds = float(match.group(1)) * _UNITS[(match.group(2) or "s").lower()]
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"the duration must be positive, got {text!r}")
    return seconds


def positive(kind: type[int] | type[float], allow_zero: bool = False) -> Callable[[str], int | float]:
    """An argparse type: a number of ``kind`` that must be > 0 (or >= 0)."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a{'n integer' if kind is int else ' number'}: {text!r}") from None
        if value < 0 or (value == 0 and not allow_zero) or value != value:
            raise argparse.ArgumentTypeError(f"must be {'>= 0' if allow_zero else '> 0'}, got {text!r}")
        return value

    return parse


EXPLICIT_ATTR = "_explicit_flags"


class Given(argparse.Action):
    """``store`` (or, with ``nargs=0``, ``store_true``) that also remembers the flag was on the command line.

    A profile fills in what the command line left open and never replaces what it said (``--api completions
    --profile chat`` sends completions), so the flags a profile also sets must tell "given" from "default".
    """

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:  # fmt: skip
        setattr(namespace, self.dest, True if self.nargs == 0 else values)
        given: set[str] = getattr(namespace, EXPLICIT_ATTR, set())
        given.add(self.dest)
        setattr(namespace, EXPLICIT_ATTR, given)


def given(args: argparse.Namespace, dest: str) -> bool:
    """Whether ``--dest`` was on the command line (a flag declared with ``action=Given``)."""
    return dest in getattr(args, EXPLICIT_ATTR, set())

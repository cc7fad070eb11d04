"""`wattload demo`: not built yet (placeholder so the CLI's shape is fixed)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="(not built yet)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    print("wattload demo: not built yet")
    return 2

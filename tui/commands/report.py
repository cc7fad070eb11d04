"""`wattload report`: not built yet (placeholder so the CLI's shape is fixed)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="(not built yet)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    print("wattload report: not built yet")
    return 2

"""``python -m engine.sim``: the simulated server in the foreground (what ``start_sim_process`` launches)."""

from __future__ import annotations

import argparse
import gc
import sys

from engine.sim.cli import add_arguments, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.sim", description="wattload's simulated LLM server")
    add_arguments(parser)
    # A process of its own: keep what startup imported out of the collector's walks, so a full collection never
    # sits between a chunk's write stamp and its write (the stamps are the timing tests' ground truth).
    gc.collect()
    gc.freeze()
    return serve(parser.parse_args(argv), prog="wattload sim")


if __name__ == "__main__":
    sys.exit(main())

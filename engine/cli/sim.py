"""`wattload sim`: serve the built-in simulated LLM endpoint in the foreground (see engine/sim)."""

from __future__ import annotations

import argparse

from engine.sim.cli import add_arguments, serve


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sim",
        help="serve a simulated OpenAI-compatible LLM endpoint (vLLM-like, 8B model on a simulated H100)",
        description="Serve the simulated LLM endpoint until Ctrl-C. It models continuous batching, a KV-gated "
        "queue and a GPU whose power cap slows decode; /sim/gpu reads its power, /sim/stamps/<id> its ground truth.",
    )
    add_arguments(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    return serve(args, prog="wattload sim")

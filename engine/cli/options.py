"""Option groups every command shares (endpoint, load, figures, GPU and cost), built from the config models.

Choices and defaults are read from ``RunConfig`` and ``engine.gpu.base`` rather than copied, so a new API kind,
GPU backend or default shows up in every command's flags and ``--help`` at once.
"""

from __future__ import annotations

import argparse
from typing import Any, get_args

from engine.cli.argtypes import Given, parse_duration, positive
from engine.config import RunConfig, default_workers
from engine.gpu.base import BACKEND_KINDS
from engine.pricing import DEFAULT_PRICING


def run_default(name: str) -> Any:
    """The default of one ``RunConfig`` field (the single source of every load flag's default)."""
    return RunConfig.model_fields[name].default


API_KINDS: tuple[str, ...] = get_args(RunConfig.model_fields["api"].annotation)


def add_endpoint_args(parser: argparse.ArgumentParser, *, with_api: bool = True) -> None:
    """--model, --api (unless a profile decides it) and --api-key."""
    endpoint = parser.add_argument_group("endpoint")
    endpoint.add_argument("--model", "-m", default=None, help="model name (default: the one /v1/models lists)")
    if with_api:
        endpoint.add_argument("--api", choices=API_KINDS, default=run_default("api"), action=Given,
                              help="chat = /v1/chat/completions (default), completions = /v1/completions, "
                              "responses = /v1/responses; wins over a profile's api")
    endpoint.add_argument("--api-key", default=None, metavar="KEY",
                          help="bearer token (default: $WATTLOAD_API_KEY or $OPENAI_API_KEY); never written anywhere")
    add_timeout_args(endpoint)


def add_timeout_args(group: argparse._ArgumentGroup) -> None:
    """--request-timeout and --read-timeout (run, demo, sweep); the defaults are RunConfig's."""
    group.add_argument("--request-timeout", type=parse_duration, default=None, metavar="TIME",
                       help=f"longest a request may take in all (default {run_default('request_timeout_s'):g}s)")
    group.add_argument("--read-timeout", type=parse_duration, default=None, metavar="TIME",
                       help="longest wait for the next token: silence, or bytes that carry none "
                       f"(default {run_default('read_timeout_s'):g}s)")


def add_load_shape_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The load shape, the stop condition and the request lengths; returns the group (for more load flags)."""
    load = parser.add_argument_group("load")
    shape = load.add_mutually_exclusive_group()
    shape.add_argument("--concurrency", "-c", type=positive(int, allow_zero=True), metavar="N",
                       help=f"closed loop: keep N requests in flight (default {run_default('concurrency')})")
    shape.add_argument("--rate", "-r", type=positive(float, allow_zero=True), metavar="R",
                       help="open loop: Poisson arrivals at R requests/s on a fixed, seeded schedule")
    until = load.add_mutually_exclusive_group()
    until.add_argument("--duration", "-d", type=parse_duration, metavar="TIME",
                       help="stop after this long (60s, 5m, 1h); default: until Ctrl-C")
    until.add_argument("--requests", "-n", type=positive(int), metavar="N", help="stop after N requests finish")
    load.add_argument("--input-tokens", type=positive(int), default=run_default("input_tokens"), metavar="N",
                      action=Given, help=f"prompt length in tokens (default {run_default('input_tokens')}; "
                      "with --profile it replaces the profile's input lengths)")
    load.add_argument("--max-tokens", type=positive(int), default=run_default("max_tokens"), metavar="N",
                      action=Given, help=f"max_tokens of every request (default {run_default('max_tokens')}; "
                      "with --profile it replaces the profile's output lengths)")
    load.add_argument("--no-calibrate", action="store_true",
                      help="send --input-tokens as words without measuring them on the server's tokenizer first "
                      "(by default a few one-token probes make the prompts that long by the server's usage)")
    load.add_argument("--ignore-eos", action=Given, nargs=0, default=False,
                      help="also send ignore_eos/min_tokens so every answer is max-tokens long (vLLM, SGLang)")
    load.add_argument("--step", type=positive(float), default=None, metavar="N",
                      help=f"hotkey step for concurrency (or rate); default {run_default('step'):g}")
    load.add_argument("--workers", type=positive(int), default=None, metavar="N",
                      help=f"worker processes sending requests (default {default_workers()} on this machine)")
    load.add_argument("--seed", type=int, default=run_default("seed"), action=Given,
                      help=f"seed for prompts and arrival times (default: the profile's, else {run_default('seed')})")
    return load


def add_figures_args(parser: argparse.ArgumentParser) -> None:
    """The live window and the snapshot rate."""
    view = parser.add_argument_group("figures")
    view.add_argument("--window", type=parse_duration, default=run_default("window_s"), metavar="TIME",
                      help=f"sliding window of the live figures (default {run_default('window_s'):g}s)")
    view.add_argument("--refresh", type=positive(float), default=run_default("tick_hz"), metavar="HZ",
                      help=f"snapshots per second (default {run_default('tick_hz'):g})")


def add_gpu_cost_args(parser: argparse.ArgumentParser) -> None:
    """The GPU telemetry source and selection, and the pricing profile with its overrides."""
    gpu = parser.add_argument_group("GPU and cost")
    gpu.add_argument("--gpu", choices=BACKEND_KINDS, default=None,
                     help="GPU telemetry source (default: sim with --sim, else auto = NVML when present)")
    gpu.add_argument("--gpus", default=None, metavar="LIST", help="GPU indices or UUIDs, e.g. 0,1 (default: all)")
    gpu.add_argument("--pricing", default=None, metavar="NAME|FILE",
                     help=f"pricing profile (built-in name or TOML file; default {DEFAULT_PRICING})")
    gpu.add_argument("--gpu-hourly", type=positive(float), default=None, metavar="USD",
                     help="override: rental price per GPU-hour")
    gpu.add_argument("--kwh", type=positive(float, allow_zero=True), default=None, metavar="USD",
                     help="override: electricity price per kWh")
    gpu.add_argument("--pue", type=positive(float), default=None, metavar="X", help="override: PUE (>= 1)")


def add_run_output_args(parser: argparse.ArgumentParser) -> None:
    """How a live session reports: the TUI or plain lines, and the --json report (the same for run and demo)."""
    parser.add_argument("--headless", action="store_true", help="no TUI: progress lines, then a summary table")
    parser.add_argument("--json", metavar="FILE", help="write the final figures and the settings (no API key) here")


def set_help(parser: argparse.ArgumentParser, option: str, text: str) -> None:
    """Give a shared flag the help that is true for this command (e.g. demo's own --step default)."""
    for action in parser._actions:
        if option in action.option_strings:
            action.help = text
            return
    raise KeyError(option)


def add_ray_args(group: argparse._ArgumentGroup | argparse.ArgumentParser) -> None:
    """--ray and --on-worker-loss (run, demo, sweep, replay --drive): the workers as Ray actors across machines."""
    group.add_argument("--ray", default=None, metavar="ADDRESS|auto|local",
                       help="run the workers as Ray actors (one per --workers, spread over the nodes): local = start "
                       "a Ray on this machine, auto = the cluster of $RAY_ADDRESS or `ray start`, else its address; "
                       "needs pip install 'wattload[ray]'")
    group.add_argument("--on-worker-loss", choices=("continue", "stop"), default=None,
                       help="with --ray, when a worker or its node is lost: continue (default; its in-flight requests "
                       "count as worker_lost and the others take its share) or stop the run")


"""Load arguments shared by `run`, `demo` and `sweep`, and their translation into a RunConfig and pricing.

Bad values are argparse errors (usage line + exit 2) where argparse can see them; problems that need a file or
a profile become ``UserError`` (one line, exit 2). Nothing here imports textual.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import signal
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from pydantic import SecretStr, ValidationError

from engine.cli.exits import UserError
from engine.config import RunConfig, api_key_from_env, default_workers
from engine.snapshot import LoadMode

if TYPE_CHECKING:
    from engine.pricing import PricingProfile
    from engine.storage.reader import Recording

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


def add_load_args(parser: argparse.ArgumentParser) -> None:
    """The load shape, stop condition, endpoint details, GPU and pricing options."""
    load = parser.add_argument_group("load")
    shape = load.add_mutually_exclusive_group()
    shape.add_argument("--concurrency", "-c", type=positive(int, allow_zero=True), metavar="N",
                       help="closed loop: keep N requests in flight (default 8)")
    shape.add_argument("--rate", "-r", type=positive(float, allow_zero=True), metavar="R",
                       help="open loop: Poisson arrivals at R requests/s on a fixed, seeded schedule")
    until = load.add_mutually_exclusive_group()
    until.add_argument("--duration", "-d", type=parse_duration, metavar="TIME",
                       help="stop after this long (60s, 5m, 1h); default: until Ctrl-C")
    until.add_argument("--requests", "-n", type=positive(int), metavar="N", help="stop after N requests finish")
    load.add_argument("--input-tokens", type=positive(int), default=128, metavar="N",
                      help="prompt length in tokens (default 128)")
    load.add_argument("--no-calibrate", action="store_true",
                      help="send --input-tokens as words without measuring them on the server's tokenizer first "
                           "(by default a few one-token probes make the prompts that long by the server's usage)")
    load.add_argument("--max-tokens", type=positive(int), default=128, metavar="N",
                      help="max_tokens of every request (default 128)")
    load.add_argument("--ignore-eos", action="store_true",
                      help="also send ignore_eos/min_tokens so every answer is max-tokens long (vLLM, SGLang)")
    load.add_argument("--step", type=positive(float), default=None, metavar="N",
                      help="hotkey step for concurrency (or rate); default 1")
    load.add_argument("--workers", type=positive(int), default=None, metavar="N",
                      help=f"worker processes sending requests (default {default_workers()} on this machine)")
    load.add_argument("--seed", type=int, default=0, help="seed for prompts and arrival times (default 0)")
    add_http_client_option(load)

    endpoint = parser.add_argument_group("endpoint")
    endpoint.add_argument("--model", "-m", default=None, help="model name (default: the one /v1/models lists)")
    endpoint.add_argument("--api", choices=("chat", "completions", "responses"), default="chat",
                          help="/v1/chat/completions (default), /v1/completions or /v1/responses")
    endpoint.add_argument("--api-key", default=None, metavar="KEY",
                          help="bearer token (default: $WATTLOAD_API_KEY or $OPENAI_API_KEY); never written anywhere")

    view = parser.add_argument_group("figures")
    view.add_argument("--window", type=parse_duration, default=10.0, metavar="TIME",
                      help="sliding window of the live figures (default 10s)")
    view.add_argument("--refresh", type=positive(float), default=4.0, metavar="HZ",
                      help="snapshots per second (default 4)")

    gpu = parser.add_argument_group("GPU and cost")
    gpu.add_argument("--gpu", choices=("auto", "none", "nvml", "sim", "fake"), default=None,
                     help="GPU telemetry source (default: sim with --sim, else auto = NVML when present)")
    gpu.add_argument("--gpus", default=None, metavar="LIST", help="GPU indices or UUIDs, e.g. 0,1 (default: all)")
    gpu.add_argument("--pricing", default=None, metavar="NAME|FILE",
                     help="pricing profile (built-in name or TOML file; default h100-sxm-rental)")
    gpu.add_argument("--gpu-hourly", type=positive(float), default=None, metavar="USD",
                     help="override: rental price per GPU-hour")
    gpu.add_argument("--kwh", type=positive(float, allow_zero=True), default=None, metavar="USD",
                     help="override: electricity price per kWh")
    gpu.add_argument("--pue", type=positive(float), default=None, metavar="X", help="override: PUE (>= 1)")


def add_http_client_option(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--http-client", choices=("auto", "lean", "aiohttp"), default="auto",
                       help="streaming client: lean (httptools, fastest), aiohttp, or auto (default: lean, and "
                            "aiohttp for redirects and compressed streams, saying so)")


def config_from_args(args: argparse.Namespace, *, base_url: str | None = None, model: str | None = None) -> RunConfig:
    """A RunConfig from parsed load arguments; ``base_url``/``model`` are the probe's answers when known."""
    key = args.api_key or api_key_from_env()
    rate_mode = getattr(args, "rate", None) is not None
    fields = {
        "base_url": base_url or getattr(args, "url", None) or "",
        "model": model if model is not None else (args.model or ""),
        "api": args.api,
        "api_key": SecretStr(key) if key else None,
        "mode": LoadMode.RATE if rate_mode else LoadMode.CONCURRENCY,
        "concurrency": 8 if args.concurrency is None else args.concurrency,
        "rate": args.rate if rate_mode else 1.0,
        "duration_s": args.duration,
        "max_requests": args.requests,
        "input_tokens": args.input_tokens,
        "max_tokens": args.max_tokens,
        "ignore_eos": args.ignore_eos,
        "window_s": args.window,
        "tick_hz": args.refresh,
        "seed": args.seed,
    }
    if args.step is not None:
        fields["step"] = args.step
    if args.workers is not None:
        fields["workers"] = args.workers
    fields["http_client"] = getattr(args, "http_client", "auto")
    try:
        return RunConfig(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise UserError(f"invalid setting {where}: {err['msg']}") from None


def pricing_from_args(args: argparse.Namespace, gpu_name: str | None = None) -> PricingProfile:
    """The pricing profile named by --pricing with --gpu-hourly/--kwh/--pue applied. Without --pricing, the
    built-in profile of the detected GPU (``gpu_name``), else the default; says on stderr which it chose, and
    warns when a chosen profile names another GPU."""
    from engine.pricing import DEFAULT_PRICING, PricingError, apply_overrides, load_pricing
    from engine.pricing_match import mismatch, pricing_for_gpu

    name = args.pricing
    if name is None:
        matched = pricing_for_gpu(gpu_name) if gpu_name else None
        name = matched or DEFAULT_PRICING
        why = f"matches the detected {gpu_name}" if matched else "the default: no GPU a built-in profile prices"
        if gpu_name:
            print(f"wattload: pricing {name} ({why}; --pricing to choose)", file=sys.stderr)
    try:
        profile = load_pricing(name)
        profile = apply_overrides(profile, gpu_hourly=args.gpu_hourly, kwh=args.kwh, pue=args.pue)
    except PricingError as exc:
        raise UserError(str(exc)) from None
    warning = mismatch(profile.gpu, gpu_name) if gpu_name else None
    if warning:
        print(f"wattload: {warning}", file=sys.stderr)
    return profile


def detected_gpu_name(gpu: str | None, sim_url: str | None, gpus: str | None) -> str | None:
    """The first selected GPU's name from the telemetry backend the run will use, or None; never raises."""
    try:
        from engine.gpu import open_backend
    except ImportError:
        return None
    backend = None
    try:
        backend, _ = open_backend(gpu or ("sim" if sim_url else "auto"), sim_url=sim_url, gpus=gpus)
        found = backend.gpus() if backend is not None else []
        return found[0].name if found else None
    except Exception:  # a name for pricing is a nicety: the run goes on without it
        return None
    finally:
        if backend is not None:
            with contextlib.suppress(Exception):
                backend.close()


def open_recording_or_fail(path: str) -> Recording:
    """Open a recording for a command: one line (exit 2) if it is not readable, its warnings on stderr."""
    from engine.storage.reader import open_recording
    from engine.storage.store import RecordingError

    try:
        rec = open_recording(path)
    except RecordingError as exc:
        raise UserError(str(exc)) from None
    for warning in rec.warnings:
        print(f"wattload: {warning}", file=sys.stderr)
    return rec


@contextlib.contextmanager
def sigint_blocked() -> Iterator[None]:
    """Block SIGINT while starting a child process: it inherits the mask, so a terminal Ctrl-C reaches only us
    and the simulator outlives it (it still serves the in-flight requests of the run being stopped)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)

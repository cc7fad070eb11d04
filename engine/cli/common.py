"""Load arguments shared by `run`, `demo` and `sweep`, and their translation into a RunConfig and pricing.

Bad values are argparse errors (usage line + exit 2) where argparse can see them; problems that need a file or
a profile become ``UserError`` (one line, exit 2). Nothing here imports textual.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr, ValidationError

from engine.cli.argtypes import given, parse_duration, positive
from engine.cli.exits import UserError
from engine.cli.options import (
    add_endpoint_args,
    add_figures_args,
    add_gpu_cost_args,
    add_load_shape_args,
    add_ray_args,
    add_timeout_args,
    run_default,
)
from engine.config import RunConfig, api_key_from_env
from engine.snapshot import LoadMode

__all__ = ["add_load_args", "add_timeout_args", "config_from_args", "open_recording_or_fail", "parse_duration",
           "positive", "pricing_from_args", "profile_from_args", "session_pricing", "sigint_blocked",
           "start_recording_or_fail", "with_flags"]

if TYPE_CHECKING:
    from engine.gpu.base import BackendKind
    from engine.load.controller import Controller
    from engine.load.ray_spec import RaySpec
    from engine.pricing import PricingProfile
    from engine.storage.reader import Recording
    from engine.workload.profile import LoadedProfile

def add_load_args(parser: argparse.ArgumentParser) -> None:
    """The load shape, stop condition, endpoint details, figures, GPU and pricing options (run and demo)."""
    load = add_load_shape_args(parser)
    add_http_client_option(load)
    add_ray_args(load)
    add_endpoint_args(parser)
    add_figures_args(parser)
    add_gpu_cost_args(parser)



def timeout_fields(args: argparse.Namespace) -> dict[str, float]:
    fields: dict[str, float] = {}
    if getattr(args, "request_timeout", None) is not None:
        fields["request_timeout_s"] = args.request_timeout
    if getattr(args, "read_timeout", None) is not None:
        fields["read_timeout_s"] = args.read_timeout
    return fields


def check_output_path(path: str | None, flag: str) -> None:
    """Before an hour-long run, not after it: the directory of an output file must exist and be writable."""
    if not path:
        return
    target = Path(path)
    if target.is_dir():
        raise UserError(f"cannot write {flag} {path}: it is a directory")
    parent = target.parent
    for up in (parent, *parent.parents):
        if up.exists():
            if not up.is_dir():
                raise UserError(f"cannot write {flag} {path}: {up} is not a directory")
            if up != parent:
                raise UserError(f"cannot write {flag} {path}: no directory {parent}")
            break
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"cannot write {flag} {path}: {parent} is not writable")
    if target.exists() and not os.access(target, os.W_OK):
        raise UserError(f"cannot write {flag} {path}: the file is not writable")


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
        "concurrency": run_default("concurrency") if args.concurrency is None else args.concurrency,
        "rate": args.rate if rate_mode else run_default("rate"),
        "duration_s": args.duration,
        "max_requests": args.requests,
        "input_tokens": args.input_tokens,
        "max_tokens": args.max_tokens,
        "ignore_eos": args.ignore_eos,
        "window_s": args.window,
        "tick_hz": args.refresh,
        "seed": args.seed,
        **timeout_fields(args),
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


def ray_spec_from_args(args: argparse.Namespace) -> RaySpec | None:
    """--ray/--on-worker-loss as a RaySpec (None without --ray); one line when Ray is not installed."""
    import importlib.util

    from engine.load.ray_spec import RaySpec

    address = getattr(args, "ray", None)
    loss = getattr(args, "on_worker_loss", None)
    if address is None:
        if loss is not None:
            raise UserError("--on-worker-loss applies to the Ray workers: give --ray too")
        return None
    if not address.strip():
        raise UserError("--ray needs an address, auto or local")
    if importlib.util.find_spec("ray") is None:
        raise UserError("--ray needs Ray, which is not installed: pip install 'wattload[ray]'")
    return RaySpec(address=address.strip(), on_worker_loss=loss or "continue")


def _stderr(line: str) -> None:
    print(f"wattload: {line}", file=sys.stderr)


def session_pricing(
    args: argparse.Namespace, base_url: str, sim_url: str | None, notify: Callable[[str], None] = _stderr
) -> PricingProfile:
    """The pricing of a session (run, demo, sweep): ``pricing_from_args`` with the name of the first GPU the
    session's telemetry will read (the same source rule as ``SessionSpec.gpu_source``)."""
    from engine.session.spec import gpu_source_for, telemetry_url_for

    source = gpu_source_for(args.gpu, sim_url)
    gpu_name = None
    if source != "none":
        gpu_name = detected_gpu_name(source, telemetry_url_for(args.gpu, sim_url, base_url), args.gpus)
    return pricing_from_args(args, gpu_name, notify)


def pricing_from_args(
    args: argparse.Namespace, gpu_name: str | None = None, notify: Callable[[str], None] = _stderr
) -> PricingProfile:
    """The pricing profile named by --pricing with --gpu-hourly/--kwh/--pue applied. Without --pricing, the
    built-in profile of the detected GPU (``gpu_name``), else the default; says (``notify``) which it chose, and
    warns when a chosen profile names another GPU."""
    from engine.pricing import DEFAULT_PRICING, PricingError, apply_overrides, load_pricing
    from engine.pricing_match import mismatch, pricing_for_gpu

    name = args.pricing
    if name is None:
        matched = pricing_for_gpu(gpu_name) if gpu_name else None
        name = matched or DEFAULT_PRICING
        why = f"matches the detected {gpu_name}" if matched else "the default: no GPU a built-in profile prices"
        if gpu_name:
            notify(f"pricing {name} ({why}; --pricing to choose)")
    try:
        profile = load_pricing(name)
        profile = apply_overrides(profile, gpu_hourly=args.gpu_hourly, kwh=args.kwh, pue=args.pue)
    except PricingError as exc:
        raise UserError(str(exc)) from None
    warning = mismatch(profile.gpu, gpu_name) if gpu_name else None
    if warning:
        notify(warning)
    return profile


def detected_gpu_name(source: BackendKind, sim_url: str | None, gpus: str | None) -> str | None:
    """The first selected GPU's name from the telemetry backend ``source`` (the session's), or None; never
    raises."""
    try:
        from engine.gpu import open_backend
    except ImportError:
        return None
    backend = None
    try:
        backend, _ = open_backend(source, sim_url=sim_url, gpus=gpus)
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


def profile_from_args(args: argparse.Namespace) -> LoadedProfile | None:
    """--profile: the loaded workload profile (one line when it is invalid) with the flags given on the command
    line put over it (``with_flags``), or None."""
    if not getattr(args, "profile", None):
        return None
    from engine.workload.profile import ProfileError, load_profile

    try:
        return with_flags(load_profile(args.profile), args)
    except ProfileError as exc:
        raise UserError(str(exc)) from None


def with_flags(loaded: LoadedProfile, args: argparse.Namespace) -> LoadedProfile:
    """The profile with every field the command line also set replaced by the flag: explicit flags win.

    A profile is the defaults of a workload; ``--api``, ``--ignore-eos``, ``--seed``, ``--input-tokens`` and
    ``--max-tokens`` given beside it are the operator's decision for this run, so they must not be silently
    overridden by it (the stored profile then shows what was really sent; its sha256 stays the file's).
    """
    from engine.workload.distributions import Fixed

    update: dict[str, object] = {}
    if given(args, "api"):
        update["api"] = args.api
    if given(args, "ignore_eos"):
        update["ignore_eos"] = True
    if given(args, "seed"):
        update["seed"] = args.seed
    for dest, field, flag in (("input_tokens", "input", "--input-tokens"), ("max_tokens", "output", "--max-tokens")):
        if not given(args, dest):
            continue
        if loaded.dataset is not None or loaded.conversations is not None:
            raise UserError(f"{flag} cannot apply to {loaded.profile.name}: its lengths come from its dataset")
        update[field] = Fixed(value=getattr(args, dest))
    session = loaded.profile.session
    if session is not None and session.output is not None and "output" in update:  # every turn's max_tokens
        update["session"] = session.model_copy(update={"output": update["output"]})
    if not update:
        return loaded
    try:
        profile = loaded.profile.model_validate({**loaded.profile.model_dump(), **update})
    except ValidationError as exc:
        raise UserError(f"{loaded.profile.name} with the flags given: {exc.errors()[0]['msg']}") from None
    return loaded.with_profile(profile)


def start_recording_or_fail(controller: Controller, path: str) -> None:
    """--record: open the file before the load starts, so the whole session is in it."""
    message = controller.start_recording(path or None)
    if controller.recording_path is None:
        raise UserError(message)
    print(f"wattload: recording to {message}", file=sys.stderr)

"""Command-line flags and foreground serving, shared by ``python -m engine.sim`` and ``wattload sim``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import ipaddress
import os
import signal
import sys
import threading

from pydantic import ValidationError

from engine.sim.model import SimConfig

API_KEY_ENV = "WATTLOAD_SIM_API_KEY"

# flag -> SimConfig field; every flag defaults to None so only flags the user gave override --config-json
_FLAGS: tuple[tuple[str, str, type, str], ...] = (
    ("--model", "model", str, "model name served"),
    ("--seed", "seed", int, "seed for every random choice"),
    ("--speed", "speed", float, "time scale: 2 = everything twice as fast (J/token shrinks alike)"),
    ("--max-batch", "max_batch", int, "most sequences per step"),
    ("--kv-capacity-tokens", "kv_capacity_tokens", int, "KV cache size in tokens"),
    ("--max-model-len", "max_model_len", int, "context window"),
    ("--prefill-tokens-per-s", "prefill_tokens_per_s", float, "prompt processing throughput"),
    ("--decode-base-ms", "decode_base_ms", float, "decode step: fixed part"),
    ("--decode-per-seq-ms", "decode_per_seq_ms", float, "decode step: per running sequence"),
    ("--tokens-per-chunk", "tokens_per_chunk", int, "tokens carried by one streamed chunk"),
    ("--reasoning-tokens", "reasoning_tokens", int, "reasoning model: stream the first N tokens of every chat "
     "answer as delta.reasoning_content"),
    ("--early-eos-prob", "early_eos_prob", float, "per-token EOS chance (not with ignore_eos)"),
    ("--power-limit", "power_limit_w", float, "initial GPU power limit in watts"),
    ("--error-rate", "error_rate", float, "fault: fraction of requests answered 500"),
    ("--rate-429", "rate_429", float, "fault: fraction answered 429 with Retry-After"),
    ("--retry-after", "retry_after_s", int, "Retry-After seconds on 429"),
    ("--reset-rate", "reset_rate", float, "fault: fraction reset mid-stream"),
    ("--malformed-rate", "malformed_rate", float, "fault: fraction with one invalid-JSON chunk"),
    ("--stall-rate", "stall_rate", float, "fault: fraction that stall mid-stream"),
    ("--stall-s", "stall_s", float, "fault: stall length in wall seconds"),
)



def _resolve(future: asyncio.Future[None]) -> None:
    """Settle ``future`` unless something already did (a second signal, EOF after a signal)."""
    if not future.done():
        future.set_result(None)

def add_arguments(parser: argparse.ArgumentParser, default_port: int = 8000) -> None:
    defaults = SimConfig()
    parser.add_argument("--host", default="127.0.0.1", metavar="ADDR",
                        help="listen address, loopback unless --allow-remote (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=default_port, metavar="N",
                        help=f"listen port; 0 picks a free one (default {default_port})")
    parser.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host")
    for flag, field, kind, help_text in _FLAGS:
        default = getattr(defaults, field)
        shown = f"default {default}" if default is not None else "default: the default limit"
        metavar = {int: "N", float: "X"}.get(kind, "NAME")
        parser.add_argument(flag, dest=field, type=kind, default=None, metavar=metavar, help=f"{help_text} ({shown})")
    parser.add_argument("--usage", choices=["requested", "always"], default=None,
                        help="when to send usage (default requested: only with stream_options.include_usage)")
    parser.add_argument("--strict-fields", action="store_true", default=None, help="422 on non-OpenAI fields")
    parser.add_argument("--no-usage", action="store_true", default=None, help="fault: never send usage")
    parser.add_argument(
        "--api-key", default=None, help=f"require this bearer key on /v1 (or set {API_KEY_ENV}; prefer the env var)"
    )
    parser.add_argument("--config-json", default=None, help=argparse.SUPPRESS)  # whole SimConfig, for programs
    parser.add_argument("--cpus", default=None, help="pin the server to these CPUs, e.g. 0 or 0,1 (Linux)")
    parser.add_argument("--exit-on-stdin-eof", action="store_true", help=argparse.SUPPRESS)


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """--config-json as the base, then every flag the user gave; raises ValueError with one readable line."""
    try:
        base = SimConfig.model_validate_json(args.config_json) if args.config_json else SimConfig()
        overrides = {
            field: getattr(args, field)
            for field in [f for _, f, _, _ in _FLAGS] + ["usage", "strict_fields", "no_usage"]
            if getattr(args, field) is not None
        }
        key = args.api_key or os.environ.get(API_KEY_ENV)
        if key:
            overrides["api_key"] = key
        return SimConfig.model_validate({**base.model_dump(), "api_key": base.api_key, **overrides})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "config"
        raise ValueError(f"bad simulator setting {where}: {err['msg']}") from None


def check_host(host: str, allow_remote: bool) -> None:
    """Refuse to expose the simulator beyond this machine unless asked to."""
    from engine.sim.server import LOOPBACK_HOSTS  # the server (aiohttp) only where it is needed: the demo's
    # parent process imports this module for API_KEY_ENV and must not pay for aiohttp before its first frame

    if allow_remote or host in LOOPBACK_HOSTS:
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(f"refusing to listen on non-loopback host {host!r}; pass --allow-remote to do it anyway")


def _watch_stdin(loop: asyncio.AbstractEventLoop, stop: asyncio.Future[None]) -> None:
    """Exit when the parent's pipe closes, so a crashed parent never leaves the simulator running."""

    def wait_eof() -> None:
        # os.read on the raw fd: a daemon thread blocked in sys.stdin's buffered reader aborts interpreter exit
        with contextlib.suppress(OSError):
            while os.read(0, 4096):
                pass
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(functools.partial(_resolve, stop))

    threading.Thread(target=wait_eof, name="stdin-eof", daemon=True).start()


def serve(args: argparse.Namespace, prog: str = "wattload sim") -> int:
    """Serve in the foreground until SIGINT/SIGTERM; prints the base URL once listening. Returns an exit code."""
    try:
        cfg = config_from_args(args)
        check_host(args.host, args.allow_remote)
        if args.cpus:
            os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    except (ValueError, OSError, AttributeError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    from engine.sim.server import loop_name, new_event_loop, run_server

    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    stop: asyncio.Future[None] = loop.create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, functools.partial(_resolve, stop))
    if args.exit_on_stdin_eof:
        _watch_stdin(loop, stop)

    def ready(url: str) -> None:
        print(
            f"{prog}: serving {url} (model {cfg.model}, speed {cfg.speed:g}, {loop_name()}); Ctrl-C stops", flush=True
        )

    try:
        loop.run_until_complete(run_server(cfg, args.host, args.port, ready, stop))
    except OSError as exc:
        print(f"{prog}: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    finally:
        loop.close()
    print(f"{prog}: stopped", flush=True)
    return 0

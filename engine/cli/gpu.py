"""`wattload gpu`: list the GPUs wattload would measure, and `wattload gpu restore` to undo power caps.

Headless on purpose (never imports textual): it must work over SSH on a box whose TUI cannot start, and after a
killed run, where the only thing left to do is put the power limits back.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.cli.exits import UserError
from engine.gpu import open_backend
from engine.gpu.base import BACKEND_KINDS, GpuBackend
from engine.gpu.nvml import clock_event_labels
from engine.gpu.powercap import restore_from_state_file
from engine.gpu.statefile import StateFileError, default_state_file, read_state
from engine.records import EventKind, TelemetrySample


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "gpu",
        help="list GPUs, power limits and constraints; `gpu restore` puts back power caps a killed run left",
        description="List the GPUs wattload measures (power, energy counter, clocks, limits and their range), or "
        "with `restore`, put back the power limits saved before a run changed them.",
    )
    p.add_argument("action", nargs="?", choices=("list", "restore"), default="list")
    p.add_argument(
        "--backend",
        choices=BACKEND_KINDS,
        default=None,
        help="telemetry source (default: auto = NVML; `restore` uses the one that made the change)",
    )
    p.add_argument("--sim", metavar="URL", default=None, help="read the GPU of a wattload sim server at URL")
    p.add_argument(
        "--gpus",
        metavar="LIST",
        default=None,
        help="GPU indices or UUIDs, e.g. 0,1 (default: CUDA_VISIBLE_DEVICES, else all)",
    )
    p.add_argument(
        "--state-file",
        type=Path,
        default=None,
        help="power-cap state file (default: $WATTLOAD_STATE_DIR/powercap.json or ~/.local/state/...)",
    )
    p.add_argument("--json", action="store_true", help="list: print system and GPU information as JSON")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.action == "restore":
        return _restore(args)
    return _list(args)


def _kind(args: argparse.Namespace, default: str = "auto") -> str:
    if args.backend:
        return str(args.backend)
    return "sim" if args.sim else default


def _w(watts: float | None) -> str:
    return "n/a" if watts is None else f"{watts:.0f} W"


def _n(value: float | None, unit: str) -> str:
    return "n/a" if value is None else f"{value:g} {unit}"


def _list(args: argparse.Namespace) -> int:
    backend, message = open_backend(_kind(args), sim_url=args.sim, gpus=args.gpus)
    if backend is None:
        print(message)  # no GPU is not an error: everything else in wattload works without one
        return 0
    try:
        if args.json:
            from engine.sysinfo import collect_sysinfo

            print(collect_sysinfo(backend).model_dump_json(indent=2))
            return 0
        _print_gpus(backend, message)
    finally:
        backend.close()
    _warn_pending(args.state_file or default_state_file())
    return 0


def _print_gpus(backend: GpuBackend, message: str) -> None:
    print(message)
    driver = backend.driver_info()
    versions = [
        f"{label} {v}"
        for label, v in (
            ("driver", driver.driver_version),
            ("CUDA", driver.cuda_driver_version),
            ("NVML", driver.nvml_version),
        )
        if v
    ]
    if versions:
        print("  " + ", ".join(versions))
    samples = {s.gpu_index: s for s in backend.read([g.index for g in backend.gpus()])}
    for gpu in backend.gpus():
        print(f"GPU {gpu.index}  {gpu.name}  {gpu.uuid or ''}".rstrip())
        limits = backend.power_limits(gpu.index)
        print(
            f"  power limit {_w(limits.current_w)} (enforced {_w(limits.enforced_w)}, default {_w(limits.default_w)}"
            f", settable {_w(limits.min_w)} to {_w(limits.max_w)})"
        )
        sample = samples.get(gpu.index)
        if sample is not None:
            print("  " + _reading_line(sample))
            print(f"  clock events: {_clock_events(sample.throttle_reasons)}")
        persistence = backend.persistence_mode(gpu.index)
        if persistence is not None:
            print(f"  persistence mode {'on' if persistence else 'off'}")


def _clock_events(mask: int | None) -> str:
    if mask is None:
        return "n/a"
    return ", ".join(clock_event_labels(mask)) or "none"


def _reading_line(s: TelemetrySample) -> str:
    energy = "n/a" if s.energy_mj is None else f"{s.energy_mj / 1000:.0f} J"
    mem = "n/a" if s.mem_used_mib is None else f"{s.mem_used_mib}/{s.mem_total_mib} MiB"
    return (
        f"power {_w(s.power_w)} (instant {_w(s.power_instant_w)}), energy counter {energy}, "
        f"SM {_n(s.sm_clock_mhz, 'MHz')}, mem {_n(s.mem_clock_mhz, 'MHz')}, {_n(s.temperature_c, '°C')}, "
        f"util {_n(s.util_gpu_pct, '%')}, memory {mem}"
    )


def _warn_pending(path: Path) -> None:
    try:
        state = read_state(path)
    except StateFileError as exc:
        print(f"note: {exc}")
        return
    if state is not None and state.gpus:
        print(
            f"note: power caps changed by an earlier run are still saved in {path}; "
            "run `wattload gpu restore` to put them back"
        )


def _restore(args: argparse.Namespace) -> int:
    path = args.state_file or default_state_file()
    try:
        state = read_state(path)
    except StateFileError as exc:
        raise UserError(str(exc)) from None
    if state is None or not state.gpus:
        print(f"nothing to restore: no saved power limits in {path}")
        return 0
    kind = _kind(args, default=state.source)
    backend, message = open_backend(kind, sim_url=args.sim or state.sim_url, gpus="all")
    if backend is None:
        raise UserError(f"cannot restore power caps: {message}")
    try:
        events, complete = restore_from_state_file(backend, path)
    except (StateFileError, OSError) as exc:
        raise UserError(str(exc)) from None
    finally:
        backend.close()
    for event in events:
        stream = sys.stderr if event.kind == EventKind.ERROR else sys.stdout
        print(event.message, file=stream)
    if not complete:
        print(f"some limits were not restored; they stay saved in {path}", file=sys.stderr)
        return 1
    return 0

"""`wattload sweep URL|--sim`: find the ceiling of a server in one command (headless), or of every matrix cell.

Steps concurrency up (geometric by default), holds each step until its window is steady (at most --step-time),
and stops when output tok/s falls or stops rising, errors pass 10%, or a given SLO is passed. Prints the steps
and what it found (capacity, knee, goodput); with ``--profile matrix`` it does that for each of the 16 cells and
prints a table and heatmaps. Ctrl-C stops after the current step; what ran is still printed and written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr, ValidationError

from engine.cli import capsweep
from engine.cli.common import (
    add_http_client_option,
    check_output_path,
    parse_duration,
    positive,
    ray_spec_from_args,
    session_pricing,
    sigint_blocked,
    timeout_fields,
    with_flags,
)
from engine.cli.exits import EXIT_FAILED, UserError
from engine.cli.options import add_endpoint_args, add_gpu_cost_args, add_ray_args, run_default
from engine.cli.trace_args import add_trace_args
from engine.config import RunConfig, api_key_from_env
from engine.redact import redact_url

if TYPE_CHECKING:
    from engine.pricing import PricingProfile
    from engine.session.spec import TraceSpec
    from engine.sweep.matrix import MatrixProgress
    from engine.sweep.rules import SweepSettings
    from engine.sweep.runner import StepProgress
    from engine.sweep.session import CeilingResult, SweepTarget
    from engine.workload.profile import LoadedProfile, ProfileInfo



def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sweep",
        help="find the ceiling: step concurrency up until throughput stops rising (or run the token matrix)",
        description="Step concurrency up until output tok/s falls or stops rising, errors pass 10%, or an SLO is "
        "passed; report capacity, knee and goodput. With --profile matrix: the ceiling of every input x output cell.",
    )
    p.add_argument("url", nargs="?", help="the server root or its /v1 base, e.g. http://127.0.0.1:8000")
    p.add_argument("--sim", action="store_true", help="start the built-in simulated server and sweep it")
    p.add_argument(
        "--sim-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a simulator setting (repeatable), e.g. speed=10 kv_capacity_tokens=20000 max_model_len=2048",
    )
    p.add_argument(
        "--profile",
        default=None,
        metavar="NAME|FILE",
        help="workload profile: a built-in name (chat-short, chat, rag, doc, code, matrix) or a TOML file "
        "(default chat)",
    )

    steps = p.add_argument_group("steps and stop rules")
    steps.add_argument("--start", type=positive(float), default=None, metavar="N",
                       help="first concurrency (1); with --trace the first trace speed (--trace-speed, 1)")
    steps.add_argument("--max", type=positive(float), default=None, metavar="N",
                       help="highest concurrency (512); with --trace the highest trace speed (64)")
    shape = steps.add_mutually_exclusive_group()
    shape.add_argument(
        "--factor",
        type=positive(float),
        default=None,
        metavar="X",
        help="geometric steps: multiply the concurrency by X (default 2)",
    )
    shape.add_argument(
        "--linear", type=positive(float), default=None, metavar="STEP", help="linear steps: add STEP each time"
    )
    steps.add_argument(
        "--step-time",
        type=parse_duration,
        default=None,
        metavar="TIME",
        help="longest hold per step (default 20s); a step ends sooner once its window is steady",
    )
    steps.add_argument(
        "--window",
        type=parse_duration,
        default=None,
        metavar="TIME",
        help="window each step is measured over (default 10s)",
    )
    steps.add_argument(
        "--threshold",
        type=float,
        default=None,
        metavar="F",
        help="stop when output tok/s falls more than F below the best step, or gains less (0.05)",
    )
    steps.add_argument(
        "--max-error-rate",
        type=float,
        default=None,
        metavar="F",
        help="stop when the error rate passes F (default 0.10)",
    )
    steps.add_argument(
        "--slo-ttft-p99",
        type=parse_duration,
        default=None,
        metavar="TIME",
        help="stop when TTFT p99 passes this (e.g. 2s); goodput counts only steps within it",
    )
    steps.add_argument(
        "--slo-tpot-p99",
        type=parse_duration,
        default=None,
        metavar="TIME",
        help="stop when TPOT p99 passes this (e.g. 100ms)",
    )

    out = p.add_argument_group("output")
    out.add_argument("--json", metavar="FILE", help="write the report (profile + sha256, seed, settings, system)")
    out.add_argument("--csv", metavar="FILE", help="write the table: one row per step, or per matrix cell")
    out.add_argument(
        "--resume",
        action="store_true",
        help="matrix: skip the cells already finished in the state file next to the output",
    )
    out.add_argument(
        "--heatmap",
        default="tokens,joules",
        metavar="LIST",
        help="matrix heatmaps: tokens, capacity, joules, dollars, ttft (default tokens,joules)",
    )

    add_endpoint_args(p)  # --api given wins over the profile's api
    run = p.add_argument_group("load")
    run.add_argument("--workers", type=positive(int), default=None, metavar="N", help="worker processes")
    add_http_client_option(run)
    add_ray_args(run)
    run.add_argument("--seed", type=int, default=None, help="seed for prompts (default: the profile's, else 0)")
    run.add_argument("--refresh", type=positive(float), default=run_default("tick_hz"), metavar="HZ",
                     help=f"snapshots per second ({run_default('tick_hz'):g})")
    run.add_argument("--headless", action="store_true",
                     help="accepted as in run and demo; sweep always prints tables and never opens the dashboard")
    add_gpu_cost_args(p)
    capsweep.add_arguments(p)
    add_trace_args(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from engine.workload.profile import ProfileError, load_profile

    if bool(args.url) == bool(args.sim):
        raise UserError("give the endpoint URL (e.g. http://127.0.0.1:8000), or --sim for the simulated server")
    if args.sim_set and not args.sim:
        raise UserError("--sim-set needs --sim")
    check_output_path(args.json, "--json")
    check_output_path(args.csv, "--csv")
    if args.trace:
        return _trace_sweep(args)
    try:
        loaded = with_flags(load_profile(args.profile or "chat"), args)
    except ProfileError as exc:
        raise UserError(str(exc)) from None
    if args.power_caps and args.window is None:
        args.window = args.step_time or 20.0  # a cap step's measured window is its --step-time
    settings = settings_from_args(args, loaded)
    seed = args.seed if args.seed is not None else (loaded.profile.seed or 0)
    heatmaps = _heatmaps(args.heatmap)
    if args.resume and loaded.profile.matrix is None:
        raise UserError("--resume applies to matrix profiles only")
    with _sim_server(args, seed) as sim_url:
        pricing = session_pricing(args, sim_url or args.url, sim_url)  # the GPU's own profile, as run picks it
        target = _target(args, loaded, sim_url, pricing)
        if args.power_caps:
            return capsweep.run(args, loaded, settings, seed, target)
        return _sweep(args, loaded, settings, seed, target, heatmaps)


def _whole(value: float | None, flag: str) -> int | None:
    """A concurrency flag: the steps are whole requests in flight (decimals are for --trace speeds)."""
    if value is None:
        return None
    if value != int(value):
        raise UserError(f"{flag} {value:g}: concurrency steps are whole numbers (decimals are for --trace speeds)")
    return int(value)


def settings_from_args(args: argparse.Namespace, loaded: LoadedProfile | None) -> SweepSettings:
    """Sweep settings: the command line first, then the profile's [sweep] table, then the defaults. Without a
    profile (``--trace``) the steps are trace speeds: from --start (or --trace-speed) to --max (64)."""
    from engine.sweep.rules import SweepSettings, speed_steps
    from engine.workload.profile import SweepDefaults

    suggested = loaded.profile.sweep if loaded is not None else SweepDefaults()
    speeds: dict[str, Any] = {}
    if loaded is None:
        first = args.start if args.start is not None else args.trace_speed
        try:
            plan = speed_steps(first, args.max if args.max is not None else max(first, SPEED_MAX),
                               args.factor or 2.0, args.linear)  # fmt: skip
        except ValueError as exc:
            raise UserError(f"invalid sweep setting: {exc}") from None
        speeds = {"axis": "speed", "speeds": plan}
        start = maximum = linear = None
    else:
        start, maximum = _whole(args.start, "--start"), _whole(args.max, "--max")
        linear = _whole(args.linear, "--linear")
    given: dict[str, Any] = {
        **speeds,
        "start": start if start is not None else suggested.start,
        "max": maximum if maximum is not None else suggested.max,
        "factor": args.factor if args.factor is not None else suggested.factor,
        "linear_step": linear if linear is not None else (None if args.factor else suggested.linear),
        "step_time_s": args.step_time if args.step_time is not None else suggested.step_time_s,
        "window_s": args.window if args.window is not None else suggested.window_s,
        "threshold": args.threshold if args.threshold is not None else suggested.threshold,
        "max_error_rate": args.max_error_rate,
        "slo_ttft_p99_ms": None if args.slo_ttft_p99 is None else args.slo_ttft_p99 * 1000,
        "slo_tpot_p99_ms": None if args.slo_tpot_p99 is None else args.slo_tpot_p99 * 1000,
    }
    try:
        settings = SweepSettings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise UserError(
            f"invalid sweep setting{' ' + where if where else ''}: {err['msg']}".replace("Value error, ", "")
        ) from None
    if settings.step_time_s < settings.window_s:
        settings = settings.model_copy(update={"step_time_s": settings.window_s * 1.5})
        print(
            f"wattload: --step-time raised to {settings.step_time_s:g}s: a step must outlast its window",
            file=sys.stderr,
        )
    return settings


SPEED_MAX = 64.0  # the default --max of a trace sweep: 64 times the recorded traffic


def _trace_sweep(args: argparse.Namespace) -> int:
    """``sweep --trace FILE``: the load axis is the trace speed (``engine.sweep.trace_sweep`` says why)."""
    from engine.cli.argtypes import given
    from engine.cli.trace_args import trace_spec

    for flag, bad in (("--profile", args.profile), ("--power-caps", args.power_caps), ("--resume", args.resume)):
        if bad:
            raise UserError(f"--trace and {flag} cannot be combined: a trace sweep steps the trace's speed")
    if args.start is not None and given(args, "trace_speed"):
        raise UserError("give the first speed once: --start or --trace-speed")
    trace = trace_spec(args)
    assert trace is not None
    settings = settings_from_args(args, None)
    seed = args.seed if args.seed is not None else 0
    with _sim_server(args, seed) as sim_url:
        pricing = session_pricing(args, sim_url or args.url, sim_url)
        target = _target(args, None, sim_url, pricing)
        return _sweep(args, None, settings, seed, target, (), trace=trace)


def _heatmaps(text: str) -> tuple[str, ...]:
    from engine.cli.sweep_view import HEATMAPS

    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in HEATMAPS]
    if unknown:
        raise UserError(f"unknown heatmap {unknown[0]!r}; choose from {', '.join(HEATMAPS)}")
    return names


@contextlib.contextmanager
def _sim_server(args: argparse.Namespace, seed: int) -> Iterator[str | None]:
    """With --sim, the simulated server in a subprocess (its own CPU, not our GIL) for the whole sweep."""
    if not args.sim:
        yield None
        return
    from engine.sim.model import SimConfig
    from engine.sim.process import SimStartError, start_sim_process

    fields: dict[str, Any] = {"seed": seed}
    for item in args.sim_set:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--sim-set wants KEY=VALUE, got {item!r}")
        try:
            fields[key.strip()] = json.loads(raw)
        except ValueError:
            fields[key.strip()] = raw
    try:
        config = SimConfig(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise UserError(f"--sim-set {'.'.join(str(p) for p in err['loc'])}: {err['msg']}") from None
    try:
        with sigint_blocked():
            sim = start_sim_process(config)
    except SimStartError as exc:
        raise UserError(str(exc)) from None
    try:
        print(f"wattload: simulated server at {sim.url}", file=sys.stderr)
        yield sim.url
    finally:
        sim.stop()


def _target(
    args: argparse.Namespace, loaded: LoadedProfile | None, sim_url: str | None, pricing: PricingProfile
) -> SweepTarget:
    """Resolve the endpoint and model, check one request shaped like the profile's, and describe the target."""
    from engine.endpoint.errors import ProbeError
    from engine.session.build import join_ray, probe
    from engine.session.spec import SessionSpec
    from engine.sweep.session import SweepTarget

    key = args.api_key or api_key_from_env()
    ray = ray_spec_from_args(args)
    try:
        fields: dict[str, Any] = {
            "base_url": sim_url or args.url,
            "model": args.model or "",
            "api": loaded.profile.api if loaded is not None else args.api,
            "api_key": SecretStr(key) if key else None,
            "ignore_eos": loaded.profile.ignore_eos if loaded is not None else True,
            "tick_hz": args.refresh,
            "workload": loaded.profile.name if loaded is not None else "trace",
            **timeout_fields(args),
        }
        if args.workers is not None:
            fields["workers"] = args.workers
        fields["http_client"] = args.http_client
        spec = SessionSpec(config=RunConfig(**fields), gpu=args.gpu, gpus=args.gpus, sim_url=sim_url,
                           pricing=pricing, recording=None, ray=ray)
        probed = probe(spec, notify=lambda line: print(f"wattload: {line}", file=sys.stderr)).spec
        if ray is not None:
            print(f"wattload: {join_ray(probed, probed.config.workers)}", file=sys.stderr)
    except ProbeError as exc:
        raise UserError(str(exc)) from None
    config = probed.config
    return SweepTarget(config=config, gpu=probed.gpu_source, gpus=args.gpus, ray=ray,
                       sim_url=probed.telemetry_url(config.base_url), pricing=pricing)


def _sweep(
    args: argparse.Namespace,
    loaded: LoadedProfile | None,
    settings: SweepSettings,
    seed: int,
    target: SweepTarget,
    heatmaps: tuple[str, ...],
    *,
    trace: TraceSpec | None = None,
) -> int:
    from rich.console import Console

    from engine.cli.sweep_view import matrix_view, sweep_view
    from engine.reports.summary import wall_clock_label
    from engine.reports.sweep import SweepReport, write_csv, write_json
    from engine.signals import OWNER, SIGINT, signal_name
    from engine.sweep.matrix import MatrixError, run_matrix, state_path_for

    stop = threading.Event()

    def on_stop(signum: int) -> None:
        stop.set()
        again = "Ctrl-C" if signum == SIGINT else f"{signal_name(signum)} or Ctrl-C"
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
            print(f"\nwattload: stopping the sweep ({signal_name(signum)}); what ran is still reported; "
                  f"{again} again to quit at once", file=sys.stderr)

    created = wall_clock_label()
    printer = ProgressPrinter()
    is_matrix = loaded is not None and loaded.profile.matrix is not None
    _print_plan(loaded, settings, seed, target)
    profile_info = loaded.info() if loaded is not None else None
    with OWNER.stopping(on_stop, sigint=True) as stopped:
        try:
            if is_matrix:
                state_path = state_path_for(args.json or args.csv)
                assert loaded is not None
                try:
                    cells = run_matrix(
                        target,
                        loaded,
                        settings,
                        seed=seed,
                        state_path=state_path,
                        resume=args.resume,
                        on_progress=printer.matrix,
                        stop_flag=stop,
                    )
                except MatrixError as exc:
                    raise UserError(str(exc)) from None
                result = None
            else:
                cells = None
                result, profile_info = _run_one(target, loaded, trace, settings, seed, printer, stop)
        finally:
            printer.close()

    interrupted = stopped.received

    # Piped output (CI logs, `| tee`) gets a fixed width wide enough for the tables, not rich's 80 columns.
    console = Console(soft_wrap=False, width=None if sys.stdout.isatty() else 150)
    if cells is not None:
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone; the files still get written
            console.print(matrix_view(cells, heatmaps))
        matrix = loaded.profile.matrix if loaded is not None else None
        if matrix is not None and len(cells) < len(matrix.inputs) * len(matrix.outputs):
            print(f"wattload: {len(cells)} cells finished; rerun with --resume to run the rest", file=sys.stderr)
    elif result is not None:
        with contextlib.suppress(OSError):
            console.print(sweep_view(result))
    report = SweepReport(
        kind="matrix" if is_matrix else "sweep",
        created=created,
        endpoint=redact_url(target.config.base_url),
        model=target.config.model,
        profile=_known(profile_info),
        seed=seed,
        settings=settings,
        run_settings=target.config.safe_dump(),
        pricing=getattr(target.pricing, "name", None),
        sysinfo=_sysinfo(target),
        interrupted=interrupted,
        result=result,
        cells=cells,
    )
    for path, write in ((args.json, write_json), (args.csv, write_csv)):
        if path:
            try:
                write(report, path)
            except OSError as exc:
                raise UserError(f"cannot write {path}: {exc.strerror}") from None
    if stopped.exit_code is not None:
        return stopped.exit_code
    if result is not None and result.status == "failed":
        print(f"wattload: the sweep failed: {result.message}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _known(info: ProfileInfo | None) -> ProfileInfo:
    assert info is not None, "every branch of the sweep names its workload"
    return info


def _run_one(target: SweepTarget, loaded: LoadedProfile | None, trace: TraceSpec | None, settings: SweepSettings,
             seed: int, printer: ProgressPrinter, stop: threading.Event) -> tuple[CeilingResult, ProfileInfo]:
    """One ceiling search: of a profile (concurrency steps), or of a trace (trace-speed steps)."""
    from engine.sweep.session import find_ceiling

    if trace is None:
        assert loaded is not None
        result = find_ceiling(target, loaded, settings, seed=seed, on_progress=printer.step, stop_flag=stop)
        return result, loaded.info()
    from engine.sweep.trace_sweep import TraceError, find_trace_ceiling, trace_profile_info
    from engine.workload.profile import ProfileInfo

    try:
        result, plan = find_trace_ceiling(target, trace, settings, seed=seed, on_progress=printer.step,
                                          stop_flag=stop, notify=printer.note)  # fmt: skip
    except TraceError as exc:
        raise UserError(str(exc)) from None
    info = trace_profile_info(plan) if plan is not None else ProfileInfo(name="trace", path=trace.path, sha256="",
                                                                         profile={})  # fmt: skip
    return result, info


def _print_plan(loaded: LoadedProfile | None, settings: SweepSettings, seed: int, target: SweepTarget) -> None:
    if loaded is None:
        speeds = ", ".join(f"×{s:g}" for s in settings.speeds)
        print(f"wattload: sweeping {redact_url(target.config.base_url)} ({target.config.model}) with a trace, "
              f"trace speed {speeds}, window {settings.window_s:g}s, steps up to {settings.step_time_s:g}s, "
              f"seed {seed}", file=sys.stderr)  # fmt: skip
        return
    p = loaded.profile
    steps = "linear +" + str(settings.linear_step) if settings.linear_step else f"x{settings.factor:g}"
    slo = []
    if settings.slo_ttft_p99_ms is not None:
        slo.append(f"TTFT p99 <= {settings.slo_ttft_p99_ms:g} ms")
    if settings.slo_tpot_p99_ms is not None:
        slo.append(f"TPOT p99 <= {settings.slo_tpot_p99_ms:g} ms")
    what = "matrix" if p.matrix is not None else f"{p.input.describe()} -> {p.output.describe()} tokens"
    print(
        f"wattload: sweeping {redact_url(target.config.base_url)} ({target.config.model}) with {p.name} [{what}], "
        f"concurrency {settings.start}..{settings.max} {steps}, window {settings.window_s:g}s, "
        f"steps up to {settings.step_time_s:g}s, seed {seed}" + (f", SLO {' and '.join(slo)}" if slo else ""),
        file=sys.stderr,
    )


def _sysinfo(target: SweepTarget) -> dict[str, Any] | None:
    """System metadata for the report; never fails the sweep."""
    try:
        from engine.gpu import open_backend
        from engine.sysinfo import collect_sysinfo
    except ImportError:
        return None
    backend = None
    try:
        backend, _ = open_backend(target.gpu, sim_url=target.sim_url, gpus=target.gpus)
        return collect_sysinfo(backend).model_dump(mode="json")
    except Exception:  # metadata is decoration: its absence must not lose a sweep's result
        return None
    finally:
        if backend is not None:
            with contextlib.suppress(Exception):
                backend.close()


class ProgressPrinter:
    """Progress on stderr: one rewritten line on a terminal, one line per finished step otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self._open = False
        self._prefix = ""

    def step(self, p: StepProgress) -> None:
        if p.finished is not None:
            st = p.finished
            self._line(
                f"{self._prefix}step {p.index + 1}: {st.load_label}: {st.output_tokens_per_s:,.0f} "
                f"out tok/s, TTFT p99 {'≥ ' if st.ttft_p99_censored else ''}{_ms(st.ttft_p99_ms)}, "
                f"errors {st.error_rate:.1%} -> {st.verdict}",
                final=True,
            )
        elif self.tty:
            self._line(
                f"{self._prefix}step {p.index + 1}: {p.load_label}, {p.held_s:.0f}/{p.step_time_s:.0f}s",
                final=False,
            )

    def matrix(self, p: MatrixProgress) -> None:
        eta = "" if p.eta_s is None else f", ETA {_duration(p.eta_s)}"
        self._prefix = f"cell {p.cell_index}/{p.cells} ({p.input_tokens}x{p.output_tokens}{eta}) "
        if p.skipped and p.finished is not None:
            self._line(f"{self._prefix}already done ({p.finished.status}), skipped", final=True)
        elif p.finished is not None:
            self._line(f"{self._prefix}done: {p.finished.result.capacity_line}", final=True)
        elif p.step is not None:
            self.step(p.step)
        elif p.calibrating and self.tty:
            self._line(f"{self._prefix}calibrating", final=False)

    def _line(self, text: str, *, final: bool) -> None:
        with contextlib.suppress(OSError):  # a terminal that hung up must not end the sweep
            self._write(text, final=final)

    def _write(self, text: str, *, final: bool) -> None:
        if self.tty:
            sys.stderr.write("\r\x1b[2K" + text + ("\n" if final else ""))
            self._open = not final
        elif final:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def note(self, line: str) -> None:
        """A line that is not progress (what the trace was detected as): on its own line, before the steps."""
        self._line(f"wattload: {line}", final=True)

    def close(self) -> None:
        if self._open:
            sys.stderr.write("\n")
            self._open = False


def _ms(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v / 1000:.2f} s" if v >= 1000 else f"{v:.0f} ms"


def _duration(s: float) -> str:
    s = max(0, round(s))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"

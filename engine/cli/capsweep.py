"""`wattload sweep URL --power-caps 700:300:50`: hold the load, step the GPU power cap down, find the sweet spot.

Its options live on the `sweep` parser (``add_arguments``); ``sweep`` hands over to ``run`` when --power-caps is
given. Ctrl-C stops after the current cap (a second Ctrl-C at once); the original caps come back on every exit
path because the controller's GPU session restores them when it closes (and on SIGTERM/SIGHUP itself).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from typing import TYPE_CHECKING

from engine.cli.common import parse_duration, positive
from engine.cli.exits import EXIT_FAILED, EXIT_INTERRUPTED, UserError
from engine.redact import redact_url
from engine.signals import OWNER, SIGINT, signal_name

if TYPE_CHECKING:
    from engine.sweep.powercap_session import CapLoad
    from engine.sweep.powercap_sweep import CapProgress, CapSummary, CapSweepResult, CapSweepSettings
    from engine.sweep.rules import SweepSettings
    from engine.sweep.session import SweepTarget
    from engine.workload.profile import LoadedProfile


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("power-cap sweep (needs root or CAP_SYS_ADMIN on a real GPU)")
    g.add_argument(
        "--power-caps",
        metavar="HIGH:LOW:STEP|LIST",
        help="step the GPU power cap from high to low (e.g. 700:300:50 or 700,500,350) holding the load",
    )
    load = g.add_mutually_exclusive_group()
    load.add_argument("--concurrency", "-c", type=positive(int), default=None, metavar="N",
                      help="cap sweep: keep N requests in flight (default 16)")  # fmt: skip
    load.add_argument("--rate", "-r", type=positive(float), default=None, metavar="R",
                      help="cap sweep: Poisson arrivals at R req/s")  # fmt: skip
    load.add_argument("--at", choices=("capacity",), default=None,
                      help="cap sweep: find the ceiling first, then hold its capacity")  # fmt: skip
    load.add_argument("--grid", metavar="LIST", default=None,
                      help="cap sweep: every concurrency in LIST (e.g. 8,16,32) x every cap: the 2-D grid and its "
                      "Pareto frontiers")  # fmt: skip
    g.add_argument("--min-requests", type=positive(int), default=20, metavar="N",
                   help="completed requests a cap's window needs (20)")  # fmt: skip
    g.add_argument("--cooldown", type=parse_duration, default=None, metavar="TIME",
                   help="pause the load this long between caps")  # fmt: skip
    g.add_argument("--repeat", type=positive(int), default=1, metavar="N",
                   help="repeat the whole sweep N times: mean and 95%% interval per cap")  # fmt: skip
    g.add_argument("--max-slowdown", default="5%", metavar="X%",
                   help="the sweet spot keeps throughput within X%% of the highest cap (5%%)")  # fmt: skip
    g.add_argument("--pick", default="slowdown", metavar="RULE",
                   help="sweet-spot rule: slowdown (default: lowest J/token within --max-slowdown), energy "
                   "(lowest J/token), cost (lowest $/M within --max-slowdown), slowdown:X%%")  # fmt: skip


def run(
    args: argparse.Namespace,
    loaded: LoadedProfile,
    ceiling: SweepSettings,
    seed: int,
    target: SweepTarget,
) -> int:
    from engine.cli.sweep import ProgressPrinter, _sysinfo
    from engine.reports.summary import wall_clock_label
    from engine.reports.sweep import SweepReport, write_json
    from engine.sweep.powercap_session import CapSweepError, run_cap_sweep

    settings, load = settings_from_args(args, ceiling)
    stop = threading.Event()

    def on_stop(signum: int) -> None:
        stop.set()
        again = "Ctrl-C" if signum == SIGINT else f"{signal_name(signum)} or Ctrl-C"
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
            print(f"\nwattload: stopping after this cap ({signal_name(signum)}); what ran is still reported; "
                  f"{again} again to quit at once", file=sys.stderr)

    created = wall_clock_label()
    caps = ", ".join(f"{c:g}" for c in settings.caps_w)
    print(
        f"wattload: power-cap sweep of {redact_url(target.config.base_url)} ({target.config.model}) with "
        f"{loaded.profile.name}, "
        f"{load.describe()}, caps {caps} W, window {settings.step_time_s:g}s, x{settings.repeat}; sweet spot: "
        f"{settings.rule.describe()}",
        file=sys.stderr,
    )
    with OWNER.stopping(on_stop, sigint=True) as stopped:
        try:
            result, found = run_cap_sweep(
                target,
                loaded,
                settings,
                load,
                seed=seed,
                ceiling_settings=ceiling,
                on_progress=_progress,
                on_ceiling_progress=ProgressPrinter().step,
                stop_flag=stop,
            )
        except CapSweepError as exc:
            raise UserError(str(exc)) from None
    interrupted = stopped.received
    print(render_text(result))
    report = SweepReport(
        kind="powercap",
        created=created,
        endpoint=redact_url(target.config.base_url),
        model=target.config.model,
        profile=loaded.info(),
        seed=seed,
        settings=ceiling,
        run_settings=target.config.safe_dump(),
        pricing=getattr(target.pricing, "name", None),
        sysinfo=_sysinfo(target),
        interrupted=interrupted,
        result=found,
        powercap=result,
    )
    if args.json:
        try:
            write_json(report, args.json)
        except OSError as exc:
            raise UserError(f"cannot write {args.json}: {exc.strerror}") from None
    if args.csv:
        try:
            write_cap_csv(result, args.csv)
        except OSError as exc:
            raise UserError(f"cannot write {args.csv}: {exc.strerror}") from None
    if interrupted:
        return stopped.exit_code or EXIT_INTERRUPTED  # 128 + the signal: 130 for Ctrl-C, 143 for SIGTERM
    if not result.steps:
        print(f"wattload: the power-cap sweep measured nothing: {result.stop_reason}", file=sys.stderr)
        return EXIT_FAILED
    if not result.completed:
        print(f"wattload: the power-cap sweep stopped early: {result.stop_reason}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def settings_from_args(args: argparse.Namespace, ceiling: SweepSettings) -> tuple[CapSweepSettings, CapLoad]:
    from pydantic import ValidationError

    from engine.sweep.powercap_session import CapLoad
    from engine.sweep.powercap_sweep import CapSweepSettings
    from engine.sweep.sweetspot import parse_caps, parse_fraction, parse_pick

    try:
        caps = parse_caps(args.power_caps)
        slowdown = parse_fraction(args.max_slowdown)
        rule = parse_pick(args.pick, slowdown).model_copy(
            update={"slo_ttft_p99_ms": ceiling.slo_ttft_p99_ms, "slo_tpot_p99_ms": ceiling.slo_tpot_p99_ms}
        )
        grid = tuple(int(x) for x in args.grid.split(",") if x.strip()) if args.grid else ()
    except ValueError as exc:
        raise UserError(str(exc).splitlines()[0]) from None
    if any(c < 1 for c in grid):
        raise UserError("--grid wants positive concurrencies, e.g. 8,16,32")
    step_time = args.step_time if args.step_time is not None else 20.0
    try:
        settings = CapSweepSettings(
            caps_w=caps,
            step_time_s=step_time,
            min_requests=args.min_requests,
            cooldown_s=args.cooldown or 0.0,
            repeat=args.repeat,
            rule=rule,
        )
    except ValidationError as exc:
        raise UserError(f"invalid power-cap sweep setting: {exc.errors()[0]['msg']}") from None
    if args.rate is not None:
        load = CapLoad(kind="rate", rate=args.rate)
    elif args.at == "capacity":
        load = CapLoad(kind="capacity", concurrency=0)
    else:
        load = CapLoad(kind="concurrency", concurrency=args.concurrency or 16, grid=grid)
    return settings, load


def _progress(p: CapProgress) -> None:
    where = f"run {p.repetition}/{p.repeats} cap {p.index + 1}/{p.caps} {p.cap_w:g} W"
    if p.concurrency is not None:
        where += f" at c={p.concurrency}"
    if p.finished is not None:
        st = p.finished
        s = st.step
        j = f"{s.joules_per_output_token:.3f} J/tok" if s.joules_per_output_token is not None else "J/tok n/a"
        rel = f" ({st.relative_throughput:.1%})" if st.relative_throughput is not None else ""
        steady = "" if s.steady else ", not steady"
        w = f"{s.watts:.0f} W" if s.watts is not None else "n/a W"
        line = f"{where}: {s.output_tokens_per_s:,.0f} out tok/s{rel}, {w}, {j}{steady}"
        if sys.stderr.isatty():
            sys.stderr.write("\r\x1b[2K")
        sys.stderr.write(line + "\n")
    elif sys.stderr.isatty():
        sys.stderr.write(f"\r\x1b[2K{where}: {p.phase} {p.held_s:.0f}s")
    sys.stderr.flush()


def render_text(result: CapSweepResult) -> str:
    """The per-cap table and the sweet spot, plain text (stdout)."""
    from engine.reports.numbers import fmt_num
    from engine.reports.text import sweet_spot_text

    rows = [("cap W", "runs", "out tok/s", "rel", "W", "J/tok", "$/M out", "TTFT p99", "TPOT p99", "binding")]
    for s in result.summaries:
        rel = s.mean("relative_throughput")

        def iv(name: str, unit: str = "", s: CapSummary = s) -> str:
            v = s.figures.get(name)
            if v is None:
                return "n/a"
            text = fmt_num(v.mean) + unit
            return text + (f" ±{fmt_num(v.half_width)}" if v.half_width is not None else "")

        rows.append(
            (
                fmt_num(s.cap_w),
                str(s.runs),
                iv("output_tokens_per_s"),
                "n/a" if rel is None else f"{rel:.1%}",
                iv("watts"),
                iv("joules_per_output_token"),
                iv("dollars_per_million_output"),
                iv("ttft_p99_ms", " ms"),
                iv("tpot_p99_ms", " ms"),
                "yes" if s.cap_binding else "no",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.append("")
    lines.append(f"load: {result.load}; sweet spot rule: {result.sweet_spot.rule}")
    lines.append(sweet_spot_text(result))
    for kind, alt in result.alternatives.items():
        if alt.cap_w is not None:
            lines.append(f"  --pick {kind}: {fmt_num(alt.cap_w)} W ({alt.reason})")
    if result.pareto_throughput_watts and result.grid:
        front = ", ".join(f"c={s.concurrency} {fmt_num(s.cap_w)} W" for s in result.pareto_throughput_watts)
        lines.append(f"Pareto frontier, tok/s against watts: {front}")
        front = ", ".join(f"c={s.concurrency} {fmt_num(s.cap_w)} W" for s in result.pareto_energy_latency)
        lines.append(f"Pareto frontier, J/token against TTFT p99: {front}")
    lines += [f"warning: {w}" for w in result.warnings]
    if not result.completed:
        lines.append(f"stopped early: {result.stop_reason}")
    return "\n".join(lines)


CAP_COLUMNS = (
    "repetition",
    "concurrency",
    "cap_w",
    "enforced_limit_w",
    "cap_binding",
    "sm_clock_mhz",
    "temperature_c",
    "held_s",
    "steady",
    "requests",
    "output_tokens_per_s",
    "relative_throughput",
    "watts",
    "joules_per_output_token",
    "dollars_per_million_output",
    "ttft_p99_ms",
    "tpot_p99_ms",
)


def write_cap_csv(result: CapSweepResult, path: str) -> None:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=CAP_COLUMNS)
        w.writeheader()
        for st in result.steps:
            row = {**st.step.model_dump(mode="json"), **st.model_dump(mode="json", exclude={"step"})}
            w.writerow({k: row.get(k) for k in CAP_COLUMNS})

"""`wattload plan RESULT.json [...] --demand 2e9/day`: GPUs, nodes, $/month, kWh/month and break-even price.

Headless (no textual). Several results are planned side by side, cheapest per M output tokens first.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from engine.cli.common import parse_duration, positive
from engine.cli.exits import UserError

if TYPE_CHECKING:
    from engine.plan.capacity import Demand, Plan


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "plan",
        help="capacity plan: GPUs, nodes, $/month, kWh/month and break-even API price for a demand",
        description="Turn measured goodput (sweep --json results) into the fleet a demand needs at its peak, its "
        "monthly cost and energy, and the break-even API price. Several results are ranked, cheapest first.",
    )
    p.add_argument("results", nargs="+", metavar="RESULT.json", help="`wattload sweep --json` results")
    p.add_argument("--demand", required=True, metavar="N/UNIT", help="output tokens, e.g. 2e9/day, 5M/h, 30000/s")
    p.add_argument("--peak", type=positive(float), default=1.0, metavar="X", help="peak / mean demand (1)")
    p.add_argument("--headroom", default="0%", metavar="X%", help="capacity kept free at peak (e.g. 20%%)")
    p.add_argument("--slo-ttft-p99", type=parse_duration, default=None, metavar="TIME",
                   help="only steps within this TTFT p99 count")  # fmt: skip
    p.add_argument("--slo-tpot-p99", type=parse_duration, default=None, metavar="TIME",
                   help="only steps within this TPOT p99 count")  # fmt: skip
    p.add_argument("--api-price", type=positive(float, allow_zero=True), default=None, metavar="USD",
                   help="$ per M output tokens of the API to compare with")  # fmt: skip
    p.add_argument("--gpus-per-node", type=positive(int), default=8, metavar="N", help="GPUs per node (8)")
    p.add_argument("--idle-watts", type=positive(float, allow_zero=True), default=120.0, metavar="W",
                   help="idle draw per GPU for the hours the fleet is not busy (120)")  # fmt: skip
    p.add_argument("--pricing", default=None, metavar="NAME|FILE", help="pricing profile (default: the result's)")
    p.add_argument("--gpu-hourly", type=positive(float), default=None, metavar="USD", help="override: $/GPU-hour")
    p.add_argument("--kwh", type=positive(float, allow_zero=True), default=None, metavar="USD", help="override: $/kWh")
    p.add_argument("--pue", type=positive(float), default=None, metavar="X", help="override: PUE (>= 1)")
    p.add_argument("--json", metavar="FILE", help="write the plans as JSON")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from engine.plan.capacity import Demand, ranked
    from engine.plan.points import PlanInputError, load_point
    from engine.pricing import DEFAULT_PRICING, PricingError, apply_overrides, load_pricing
    from engine.sweep.sweetspot import parse_fraction

    try:
        from engine.plan.capacity import parse_demand

        demand = Demand(
            tokens_per_s=parse_demand(args.demand),
            peak=args.peak,
            headroom=parse_fraction(args.headroom),
            gpus_per_node=args.gpus_per_node,
            api_price=args.api_price,
        )
    except ValueError as exc:
        raise UserError(str(exc).splitlines()[0]) from None
    points = []
    for path in args.results:
        name = args.pricing or _pricing_of(path) or DEFAULT_PRICING
        try:
            pricing = apply_overrides(load_pricing(name), gpu_hourly=args.gpu_hourly, kwh=args.kwh, pue=args.pue)
            points.append(
                load_point(
                    path,
                    pricing,
                    slo_ttft_p99_ms=None if args.slo_ttft_p99 is None else args.slo_ttft_p99 * 1000,
                    slo_tpot_p99_ms=None if args.slo_tpot_p99 is None else args.slo_tpot_p99 * 1000,
                    idle_watts_per_gpu=args.idle_watts,
                )
            )
        except (PricingError, PlanInputError) as exc:
            raise UserError(f"{path}: {exc}" if not str(exc).startswith(path) else str(exc)) from None
    plans = ranked(points, demand)
    print(render(plans, demand))
    if args.json:
        try:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump([p.model_dump(mode="json") for p in plans], f, indent=2)
        except OSError as exc:
            raise UserError(f"cannot write {args.json}: {exc.strerror}") from None
    return 0


def _pricing_of(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            name = json.load(f).get("pricing")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) and name else None


def render(plans: list[Plan], d: Demand) -> str:
    from engine.reports.numbers import fmt_num, fmt_pct

    head = (
        f"demand {fmt_num(d.tokens_per_s)} output tok/s mean, x{d.peak:g} at peak = "
        f"{fmt_num(d.tokens_per_s * d.peak)} tok/s, headroom {d.headroom:.0%}"
    )
    rows = [("#", "configuration", "goodput/replica", "GPUs", "nodes", "util", "kWh/month", "$/month", "$/M out",
             "margin/M")]  # fmt: skip
    for i, p in enumerate(plans, start=1):
        margin = "n/a"
        if p.margin_per_million is not None:
            margin = f"{'+' if p.margin_per_million >= 0 else '-'}${fmt_num(abs(p.margin_per_million))}"
            margin += f" ({fmt_pct(p.margin_fraction)})" if p.margin_fraction is not None else ""
        rows.append(
            (
                str(i),
                p.point.name,
                fmt_num(p.point.goodput_tokens_per_s),
                str(p.gpus),
                str(p.nodes),
                fmt_pct(p.utilisation),
                fmt_num(p.kwh_per_month),
                "n/a" if p.dollars_per_month is None else "$" + fmt_num(p.dollars_per_month),
                "n/a" if p.dollars_per_million is None else "$" + fmt_num(p.dollars_per_million),
                margin,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [head, ""]
    lines += ["  ".join(c.ljust(w) if j == 1 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths, strict=True)))
              for r in rows]  # fmt: skip
    if plans and plans[0].dollars_per_million is not None:
        best = plans[0]
        lines.append("")
        lines.append(f"break-even API price: ${fmt_num(best.dollars_per_million)} per M output tokens "
                     f"({best.point.name})")  # fmt: skip
        if best.margin_per_million is not None and best.margin_dollars_per_month is not None:
            verdict = "cheaper than" if best.margin_per_million > 0 else "dearer than"
            lines.append(f"self-hosting is {verdict} the API at ${fmt_num(d.api_price)}/M: "
                         f"{'+' if best.margin_dollars_per_month >= 0 else '-'}"
                         f"${fmt_num(abs(best.margin_dollars_per_month))} per month")  # fmt: skip
    return "\n".join(lines)

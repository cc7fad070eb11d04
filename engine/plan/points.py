"""Operating points from what wattload wrote: a `sweep --json` report (ceiling or power-cap sweep).

A ceiling sweep gives the fastest step within the SLO (its goodput; without an SLO, the capacity step); a
power-cap sweep gives its sweet spot's means (or, with an SLO, the lowest-J/token cap within it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.cost import gpu_dollars_per_gpu_hour
from engine.plan.capacity import OperatingPoint
from engine.pricing import PricingProfile


class PlanInputError(ValueError):
    """A result file that cannot be planned from; ``str()`` is one line."""


def load_point(
    path: str | Path,
    pricing: PricingProfile,
    *,
    slo_ttft_p99_ms: float | None = None,
    slo_tpot_p99_ms: float | None = None,
    idle_watts_per_gpu: float = 120.0,
) -> OperatingPoint:
    p = Path(path)
    try:
        data = json.loads(p.read_bytes())
    except OSError as exc:
        raise PlanInputError(f"{p}: cannot read: {exc.strerror or exc}") from None
    except ValueError:
        raise PlanInputError(f"{p}: not JSON (give a `wattload sweep --json` result)") from None
    if not isinstance(data, dict) or data.get("format") != "wattload-sweep":
        raise PlanInputError(f"{p}: not a wattload sweep result (give a `wattload sweep --json` file)")
    gpus = max(1, len((data.get("sysinfo") or {}).get("gpus") or []) or pricing.gpus)
    if data.get("kind") == "powercap" and data.get("powercap"):
        tps, watts, what = _from_caps(data["powercap"], slo_ttft_p99_ms, slo_tpot_p99_ms)
    elif data.get("kind") == "sweep" and data.get("result"):
        tps, watts, what = _from_ceiling(data["result"], slo_ttft_p99_ms, slo_tpot_p99_ms)
    else:
        raise PlanInputError(f"{p}: a {data.get('kind')!r} result has no single operating point to plan from")
    gpu_names = sorted({g.get("name", "") for g in (data.get("sysinfo") or {}).get("gpus") or []} - {""})
    name = f"{p.stem}: {', '.join(gpu_names) or data.get('model', '')} {what}".strip()
    return OperatingPoint(
        name=name,
        goodput_tokens_per_s=tps,
        gpus_per_replica=gpus,
        watts_per_replica=watts,
        idle_watts_per_gpu=idle_watts_per_gpu,
        gpu_dollars_per_hour=gpu_dollars_per_gpu_hour(pricing),
        dollars_per_kwh=pricing.energy.dollars_per_kwh,
        pue=pricing.energy.pue,
        energy_included=pricing.energy.included_in_gpu_price,
        note=f"pricing {pricing.name}",
    )


def _ok(step: dict[str, Any], ttft: float | None, tpot: float | None) -> bool:
    if ttft is not None and (step.get("ttft_p99_ms") is None or step["ttft_p99_ms"] > ttft):
        return False
    return not (tpot is not None and (step.get("tpot_p99_ms") is None or step["tpot_p99_ms"] > tpot))


def _from_ceiling(
    result: dict[str, Any], ttft: float | None, tpot: float | None
) -> tuple[float, float | None, str]:
    outcome = result.get("outcome") or {}
    steps = [s for s in outcome.get("steps") or [] if s.get("requests") and s.get("verdict") != "errors"]
    good = [s for s in steps if _ok(s, ttft, tpot)]
    if ttft is None and tpot is None and outcome.get("capacity_step"):
        good = [outcome["capacity_step"]]
    if not good:
        raise PlanInputError("no step of the sweep met the SLO: nothing to plan from")
    best = max(good, key=lambda s: s["output_tokens_per_s"])
    return best["output_tokens_per_s"], best.get("watts"), f"at concurrency {best['concurrency']}"


def _from_caps(result: dict[str, Any], ttft: float | None, tpot: float | None) -> tuple[float, float | None, str]:
    rows = []
    for s in result.get("summaries") or []:
        f = s.get("figures") or {}
        if "output_tokens_per_s" not in f:
            continue
        step = {k: (v or {}).get("mean") for k, v in f.items()}
        rows.append((s["cap_w"], step))
    if not rows:
        raise PlanInputError("the power-cap sweep measured no cap")
    spot = (result.get("sweet_spot") or {}).get("cap_w")
    if ttft is None and tpot is None and spot is not None:
        chosen = [r for r in rows if r[0] == spot]
    else:  # the sweep's own rule (lowest J/token within its slowdown limit), among the caps within this SLO
        limit = ((result.get("settings") or {}).get("rule") or {}).get("max_slowdown", 0.05)
        ok = [r for r in rows if _ok(r[1], ttft, tpot) and (r[1].get("relative_throughput") or 0.0) >= 1 - limit]
        chosen = sorted(ok, key=lambda r: (r[1].get("joules_per_output_token") or float("inf"), -r[0]))[:1]
    if not chosen:
        raise PlanInputError("no cap of the sweep met the SLO: nothing to plan from")
    cap, step = chosen[0]
    watts = step.get("watts")
    tps = float(step["output_tokens_per_s"] or 0.0)
    return tps, None if watts is None else float(watts), f"capped at {cap:g} W"

"""Text lines shared by the CLI and the HTML report."""

from __future__ import annotations

from engine.reports.numbers import fmt_num
from engine.sweep.powercap_sweep import CapSweepResult


def sweet_spot_text(result: CapSweepResult) -> str:
    """One line: the sweet spot and what it saves (the CLI prints it, the HTML report shows it)."""
    spot = result.sweet_spot
    if spot.cap_w is None:
        return f"sweet spot: none ({spot.reason})"
    sv = spot.savings
    parts = [f"sweet spot: {fmt_num(spot.cap_w)} W ({spot.reason})"]
    if sv.watts is not None:
        parts.append(f"saves {fmt_num(sv.watts)} W")
    if sv.joules_per_output_token is not None and sv.joules_fraction is not None:
        parts.append(f"{fmt_num(sv.joules_per_output_token)} J/token ({sv.joules_fraction:.1%})")
    if sv.kwh_per_month is not None:
        parts.append(f"{fmt_num(sv.kwh_per_month)} kWh/month")
    if sv.dollars_per_month is not None:
        parts.append(f"${fmt_num(sv.dollars_per_month)}/month")
    return parts[0] + (": " + ", ".join(parts[1:]) if len(parts) > 1 else "")

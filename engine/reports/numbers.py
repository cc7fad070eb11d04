"""One number format for every report and export: three significant figures, thousands separated, n/a for None.

Tables that mix 0.0731 J/token with 4,862 tok/s stay readable, and the same figure prints the same way in the
text report, the cap sweep table, ``plan`` and the HTML report.
"""

from __future__ import annotations

import math


def fmt_num(value: float | None, na: str = "n/a") -> str:
    """1234.5 -> '1,235'; 123.45 -> '123'; 12.345 -> '12.3'; 1.2345 -> '1.23'; 0.012345 -> '0.0123'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return na
    v = float(value)
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    a = abs(v)
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    if a == 0:
        return "0"
    digits = 2 - math.floor(math.log10(a))  # three significant figures
    return f"{v:.{digits}f}"


def fmt_pct(fraction: float | None, na: str = "n/a") -> str:
    return na if fraction is None else f"{fraction * 100:.1f}%"

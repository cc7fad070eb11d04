"""Number formatting for the panels: one place decides how a figure, a missing figure and an estimate look.

Widgets never format numbers themselves, so "n/a", units and the estimate marker read the same everywhere
(and the text export of a screen stays greppable by tests).
"""

from __future__ import annotations

import math

NA = "n/a"  # the hardware or driver cannot tell us (e.g. no power limit on this GPU)
DASH = "–"  # not known yet (no completed request in the window)
ESTIMATED = "~"  # prefix for figures counted from stream chunks rather than the server's usage
ESTIMATED_LEGEND = "~ estimated"

_SUFFIXES = ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"))


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def sig(value: float | None, digits: int = 3, missing: str = DASH) -> str:
    """Compact number with ``digits`` significant digits and k/M/G suffixes: 0.123, 12.3, 4.56k, 7.80M."""
    if _missing(value):
        return missing
    assert value is not None
    return _scaled(value, digits, _SUFFIXES, "")


def _scaled(value: float, digits: int, scales: tuple[tuple[float, str], ...], base_unit: str) -> str:
    """Pick the largest scale the value reaches *after* rounding (so 999.96 reads 1.00k, not 1000)."""
    for scale, suffix in scales:
        text = _plain(value / scale, digits)
        if abs(float(text)) >= 1:
            return text + suffix
    return _plain(value, digits) + base_unit


def _plain(value: float, digits: int) -> str:
    """``digits`` significant digits, fixed-point; whole numbers below 10**digits print without decimals."""
    if value == 0:
        return "0"
    if value == int(value) and abs(value) < 10**digits:
        return str(int(value))
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    text = f"{value:.{decimals}f}"
    rounded = abs(float(text))
    if rounded >= 10 ** (digits - decimals) and decimals > 0:  # 9.996 -> "10.00": one decimal fewer
        text = f"{value:.{decimals - 1}f}"
    return text


def integer(value: int | None, missing: str = DASH) -> str:
    """Counts with thousands separators: 12,345."""
    return missing if value is None else f"{value:,}"


def ms(value: float | None, missing: str = DASH) -> str:
    """Latency in milliseconds, always (a panel titled "ms" never shows seconds): whole ms from 1 s, thousands of
    ms as "k" from 100 s, so cells stay five characters wide."""
    if _missing(value):
        return missing
    assert value is not None
    if value >= 99_950:
        return f"{value / 1000:.0f}k"
    if value >= 999.5:
        return f"{value:.0f}"
    if value < 0.995:
        return f"{value:.2f}"
    return _plain(value, 3)


def rate(value: float | None, unit: str = "/s", missing: str = DASH, estimated: bool = False) -> str:
    """A per-second figure such as tokens/s, with the estimate marker when the count is not the server's."""
    text = sig(value, missing=missing)
    if text == missing:
        return text
    return f"{ESTIMATED if estimated else ''}{text}{unit}"


def watts(value: float | None, missing: str = NA) -> str:
    return missing if _missing(value) else f"{value:,.0f} W"


def mhz(value: int | None, missing: str = NA) -> str:
    return missing if value is None else f"{value:,} MHz"


def energy(joules: float | None, missing: str = DASH) -> str:
    """Energy in J, kJ or MJ (three significant digits)."""
    if _missing(joules):
        return missing
    assert joules is not None
    return _scaled(joules, 3, ((1e9, " GJ"), (1e6, " MJ"), (1e3, " kJ")), " J")


def dollars(value: float | None, missing: str = DASH) -> str:
    """Money: cents for large sums, more digits for the small per-token figures."""
    if _missing(value):
        return missing
    assert value is not None
    if abs(value) >= 100:
        return f"${value:,.0f}"
    if abs(value) >= 1 or value == 0:
        return f"${value:,.2f}"
    return f"${sig(value)}"


def percent(fraction: float | None, missing: str = DASH) -> str:
    """A 0..1 fraction as a percentage: 0.0123 -> 1.2%."""
    if _missing(fraction):
        return missing
    assert fraction is not None
    pct = fraction * 100
    if pct == 0:
        return "0%"
    if pct < 0.1:
        return "<0.1%"
    return f"{pct:.1f}%" if pct < 10 else f"{pct:.0f}%"


def clock(seconds: float | None) -> str:
    """Elapsed time as H:MM:SS (hours grow as needed); a session clock, not wall time."""
    if _missing(seconds) or seconds is None or seconds < 0:
        return "0:00:00"
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def axis_clock(seconds: float) -> str:
    """Chart axis labels: m:ss (h:mm:ss past an hour)."""
    total = max(0, round(seconds))
    if total >= 3600:
        return clock(total)
    minutes, secs = divmod(total, 60)
    return f"{minutes}:{secs:02d}"


def short_span(seconds: float) -> str:
    """Short spans for narrow panels: 45s, 2m, 1m30s."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    return f"{minutes}m" if secs == 0 else f"{minutes}m{secs:02d}s"


def trace_speed(speed: float) -> str:
    """A trace replay's speed as a multiple of the recorded clock: '×1.0', '×0.25', '×16'."""
    if 0 < speed < 10 and round(speed, 1) == speed:
        return f"×{speed:.1f}"
    return f"×{sig(speed)}"


def load_target(mode: str, concurrency: int, rate_per_s: float, trace: bool = False) -> str:
    """The operator's knob as they set it: '8 streams', '2.5 req/s', or a trace's speed '×2.0'."""
    if mode == "rate" and trace:
        return trace_speed(rate_per_s)
    if mode == "rate":
        return f"{sig(rate_per_s)} req/s"
    return f"{concurrency} stream{'s' if concurrency != 1 else ''}"

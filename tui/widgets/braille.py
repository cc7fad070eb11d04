"""Braille line charts with numpy: each character cell holds a 2x4 grid of dots, so a 100x6 cell chart has
200x24 points of resolution. Pure functions (arrays in, code points out) so they are cheap and testable.

Rendering cost is O(width x height) numpy work per frame, independent of how many samples the history holds:
samples are binned into pixel columns, spikes inside a column are kept (its min..max), and consecutive columns
are joined so the line reads as continuous.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

BRAILLE_BASE = 0x2800
# Bit of each dot, indexed [row within cell (top first)][column within cell].
DOT_BITS = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]], dtype=np.uint16)

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
CodeArray = npt.NDArray[np.uint16]


def column_ranges(
    t: FloatArray,
    y: FloatArray,
    t_lo: float,
    t_hi: float,
    y_lo: float,
    y_hi: float,
    cols: int,
    rows: int,
    max_gap_s: float,
) -> tuple[BoolArray, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Per pixel column: whether it has data, and the lowest and highest lit pixel row (0 = bottom).

    NaN samples are gaps; two samples further apart than ``max_gap_s`` are not joined.
    """
    covered = np.zeros(cols, dtype=bool)
    lo = np.zeros(cols, dtype=np.int64)
    hi = np.zeros(cols, dtype=np.int64)
    ok = np.isfinite(y) & np.isfinite(t)
    tv, yv = t[ok], y[ok]
    if tv.size == 0 or cols <= 0 or rows <= 0 or t_hi <= t_lo:
        return covered, lo, hi
    col_w = (t_hi - t_lo) / cols
    centres = t_lo + (np.arange(cols) + 0.5) * col_w
    # A column is covered when it lies between two samples that are close enough, or next to a sample.
    right = np.searchsorted(tv, centres)
    left = np.clip(right - 1, 0, tv.size - 1)
    right_c = np.clip(right, 0, tv.size - 1)
    near = np.minimum(np.abs(centres - tv[left]), np.abs(tv[right_c] - centres)) <= col_w
    bridged = (right > 0) & (right < tv.size) & ((tv[right_c] - tv[left]) <= max_gap_s)
    covered = near | bridged
    values = np.interp(centres, tv, yv)
    vmin = values.copy()
    vmax = values.copy()
    # Keep spikes: every sample inside a column widens that column's range.
    inside = (tv >= t_lo) & (tv < t_hi)
    if inside.any():
        idx = ((tv[inside] - t_lo) / col_w).astype(np.int64).clip(0, cols - 1)
        np.minimum.at(vmin, idx, yv[inside])
        np.maximum.at(vmax, idx, yv[inside])
        covered[idx] = True
    span = y_hi - y_lo if y_hi > y_lo else 1.0
    scale = (rows - 1) / span
    pmin = np.clip(np.rint((vmin - y_lo) * scale), 0, rows - 1).astype(np.int64)
    pmax = np.clip(np.rint((vmax - y_lo) * scale), 0, rows - 1).astype(np.int64)
    pmid = np.clip(np.rint((values - y_lo) * scale), 0, rows - 1).astype(np.int64)
    lo, hi = pmin.copy(), pmax.copy()
    # Join each covered column to its covered left neighbour so steep changes draw as a connected line.
    joined = covered[1:] & covered[:-1]
    lo[1:] = np.where(joined, np.minimum(lo[1:], pmid[:-1]), lo[1:])
    hi[1:] = np.where(joined, np.maximum(hi[1:], pmid[:-1]), hi[1:])
    return covered, lo, hi


def lit_grid(
    covered: BoolArray, lo: npt.NDArray[np.int64], hi: npt.NDArray[np.int64], rows: int, fill: bool = False
) -> BoolArray:
    """Boolean pixel grid (rows x cols, row 0 = bottom) for one series; ``fill`` shades down to the floor."""
    r = np.arange(rows)[:, None]
    low = np.zeros_like(lo) if fill else lo
    return covered[None, :] & (r >= low[None, :]) & (r <= hi[None, :])


def dotted_columns(columns: npt.NDArray[np.int64], cols: int, rows: int, every: int = 2) -> BoolArray:
    """Vertical dotted lines at the given pixel columns (event markers), a dot every ``every`` pixel rows."""
    grid = np.zeros((rows, cols), dtype=bool)
    columns = columns[(columns >= 0) & (columns < cols)]
    if columns.size:
        grid[::every, columns] = True
    return grid


def dashed(grid: BoolArray) -> BoolArray:
    """Every other character cell of a series left blank: a dashed line, told apart from a solid one without
    colour (NO_COLOR, a monochrome terminal, a colour-blind reader)."""
    out = grid.copy()
    out[:, (np.arange(grid.shape[1]) // 2) % 2 == 1] = False
    return out


def to_cells(grid: BoolArray) -> CodeArray:
    """Pack a (4H x 2W) pixel grid (row 0 = bottom) into H x W braille bit masks (top row first)."""
    rows, cols = grid.shape
    h, w = rows // 4, cols // 2
    top_first = grid[::-1][: h * 4, : w * 2].reshape(h, 4, w, 2)
    cells: CodeArray = (top_first * DOT_BITS[None, :, None, :]).sum(axis=(1, 3), dtype=np.uint16)
    return cells


def nice_ceiling(value: float) -> float:
    """Round up to 1, 2, 2.5 or 5 times a power of ten, so the axis maximum reads cleanly."""
    if not math.isfinite(value) or value <= 0:
        return 1.0
    power: float = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10 * power


def nice_step(span: float, max_ticks: int) -> float:
    """A tick interval from a fixed ladder of round durations (seconds) giving at most ``max_ticks`` ticks."""
    for step in (5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if span / step <= max_ticks:
            return float(step)
    return 3600.0 * math.ceil(span / 3600 / max(1, max_ticks))

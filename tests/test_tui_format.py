"""Number formatting and the braille chart core: pure functions, checked against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.reports import format as fmt
from engine.snapshot import EventView
from tui.widgets.braille import BRAILLE_BASE, column_ranges, dotted_columns, lit_grid, nice_ceiling, to_cells
from tui.widgets.charts import ChartHistory


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "–"), (math.nan, "–"), (0, "0"), (8, "8"), (0.5, "0.500"), (12.34, "12.3"), (999.6, "1.00k"),
     (1234, "1.23k"), (9.9996, "10.0"), (2.5e6, "2.50M")],
)  # fmt: skip
def test_sig_keeps_three_significant_digits(value, text):
    assert fmt.sig(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "–"), (0.5, "0.50"), (12.34, "12.3"), (123.4, "123"), (1234.4, "1234"), (12_345, "12345"),
     (99_949, "99949"), (123_456, "123k")],
)  # fmt: skip
def test_ms_stays_five_characters_and_never_switches_to_seconds(value, text):
    assert fmt.ms(value) == text


def test_missing_hardware_fields_read_na_and_estimates_are_marked():
    assert fmt.watts(None) == "n/a"
    assert fmt.mhz(None) == "n/a"
    assert fmt.watts(312.4) == "312 W"
    assert fmt.rate(1234.0, " tok/s", estimated=True) == "~1.23k tok/s"
    assert fmt.rate(1234.0, " tok/s") == "1.23k tok/s"


def test_energy_money_percent_and_clock():
    assert fmt.energy(999.99) == "1.00 kJ"
    assert fmt.energy(3.6e6) == "3.60 MJ"
    assert fmt.dollars(0.0123) == "$0.0123"
    assert fmt.dollars(2.5) == "$2.50"
    assert fmt.dollars(1234.5) == "$1,234"
    assert fmt.percent(0.0004) == "<0.1%"
    assert fmt.percent(0.123) == "12%"
    assert fmt.clock(3725.9) == "1:02:05"
    assert fmt.axis_clock(90) == "1:30"


def test_braille_cells_pack_dots_in_unicode_order():
    grid = np.zeros((4, 2), dtype=bool)  # one cell; row 0 is the bottom
    grid[3, 0] = True  # top-left dot = bit 0x01
    grid[0, 1] = True  # bottom-right dot = bit 0x80
    assert to_cells(grid).tolist() == [[0x81]]
    assert chr(BRAILLE_BASE + 0x81) == "⢁"


def test_a_rising_series_lights_the_bottom_left_and_the_top_right():
    t = np.array([0.0, 10.0])
    y = np.array([0.0, 100.0])
    covered, lo, hi = column_ranges(t, y, 0.0, 10.0, 0.0, 100.0, cols=10, rows=8, max_gap_s=20.0)
    assert covered.all()
    assert lo[0] == 0 and hi[-1] == 7
    assert all(np.diff(hi) >= 0)  # monotone
    grid = lit_grid(covered, lo, hi, rows=8)
    assert grid[0, 0] and grid[7, 9] and not grid[7, 0]


def test_samples_further_apart_than_the_gap_are_not_joined():
    t = np.array([0.0, 1.0, 9.0, 10.0])
    y = np.array([50.0, 50.0, 50.0, 50.0])
    covered, _, _ = column_ranges(t, y, 0.0, 10.0, 0.0, 100.0, cols=10, rows=8, max_gap_s=3.0)
    assert covered[0] and covered[-1]
    assert not covered[4:6].any()  # the stall in the middle shows as a hole


def test_a_spike_inside_one_column_is_kept():
    t = np.linspace(0, 10, 101)
    y = np.zeros(101)
    y[50] = 100.0
    _, _, hi = column_ranges(t, y, 0.0, 10.0, 0.0, 100.0, cols=5, rows=8, max_gap_s=3.0)
    assert hi.max() == 7


def test_markers_are_dotted_vertical_lines():
    grid = dotted_columns(np.array([3, 99]), cols=8, rows=8)
    assert grid[:, 3].sum() == 4 and grid.sum() == 4  # every other row; out-of-range marker dropped


def test_nice_ceiling():
    assert [nice_ceiling(v) for v in (0, 0.7, 3, 7, 26, 700 * 1.05)] == [1.0, 1.0, 5.0, 10.0, 50.0, 1000.0]


def test_history_is_a_bounded_ring_and_restarts_when_time_goes_back():
    history = ChartHistory(capacity=5, columns=1)
    for i in range(8):
        history.append(float(i), (float(i) * 10,), [EventView(t_s=float(i), kind="concurrency", message="")])
    t, v = history.ordered()
    assert t.tolist() == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert v[:, 0].tolist() == [30.0, 40.0, 50.0, 60.0, 70.0]
    assert len(history.markers) == 8
    history.append(2.0, (1.0,))  # a replay seek backwards
    assert len(history) == 1 and not history.markers

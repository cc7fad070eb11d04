"""What every trace format reduces to: one row per request, its time offset, lengths and prefix/session ids."""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.workload.profile import ProfileError

BLOCK_TOKENS = 512
"""Tokens per ``hash_ids`` block in Mooncake and Bailian traces: equal ids mean identical 512-token blocks."""


class TraceError(ProfileError):
    """A trace the user must fix; ``str()`` is one line: ``file:row: problem``."""


@dataclass(frozen=True, slots=True)
class TraceRow:
    """One request of a trace. ``t_s`` counts from the trace's first row; lengths are in the server's tokens."""

    row: int  # 1-based line number in the file (the header of a CSV is line 1)
    t_s: float
    input_tokens: int
    output_tokens: int
    hash_ids: tuple[int, ...] = ()
    chat_id: int | None = None  # session traces: this turn's id
    parent_chat_id: int | None = None  # the turn it continues (None: the first turn of a conversation)
    turn: int = 0  # 1-based turn number in session traces, 0 elsewhere


@dataclass(frozen=True, slots=True)
class TraceWindow:
    """A slice of a trace in its own seconds: ``--trace-window 60:120`` replays rows with 60 <= t < 120."""

    start_s: float = 0.0
    end_s: float = math.inf

    @classmethod
    def parse(cls, text: str) -> TraceWindow:
        """``START:END`` in seconds, either side may be empty (``:300``, ``60:``)."""
        start, sep, end = text.partition(":")
        if not sep:
            raise ValueError(f"expected START:END in seconds (e.g. 60:120), got {text!r}")
        try:
            window = cls(float(start) if start.strip() else 0.0, float(end) if end.strip() else math.inf)
        except ValueError:
            raise ValueError(f"expected START:END in seconds (e.g. 60:120), got {text!r}") from None
        if window.start_s < 0 or window.end_s <= window.start_s:
            raise ValueError(f"the window must satisfy 0 <= START < END, got {text!r}")
        return window

    def contains(self, t_s: float) -> bool:
        return self.start_s <= t_s < self.end_s


def positive_length(path: str, row: int, name: str, value: object, *, allow_zero: bool = False) -> int:
    """A token count from a trace cell: a whole, non-negative number, or a one-line TraceError naming the cell."""
    if isinstance(value, bool):
        raise TraceError(f"{path}:{row}: {name} is not a number ({value!r})")
    try:
        number = float(value) if isinstance(value, str | int | float) else math.nan
    except ValueError:
        raise TraceError(f"{path}:{row}: {name} is not a number ({value!r})") from None
    if not math.isfinite(number) or number != int(number):
        raise TraceError(f"{path}:{row}: {name} is not a whole number ({value!r})")
    if number < 0 or (number == 0 and not allow_zero):
        raise TraceError(f"{path}:{row}: {name} must be {'>= 0' if allow_zero else '> 0'} (got {value!r})")
    return int(number)


def finite_number(path: str, row: int, name: str, value: object) -> float:
    if isinstance(value, bool):
        raise TraceError(f"{path}:{row}: {name} is not a number ({value!r})")
    try:
        number = float(value) if isinstance(value, str | int | float) else math.nan
    except ValueError:
        raise TraceError(f"{path}:{row}: {name} is not a number ({value!r})") from None
    if not math.isfinite(number):
        raise TraceError(f"{path}:{row}: {name} is not a finite number ({value!r})")
    return number

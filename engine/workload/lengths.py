"""Target versus actual lengths: what a run asked for, and what the server's usage says it got.

Every run reports both, input and output, as a mean and an error, because "512 -> 512" is a claim about the
server's tokenizer that only its ``usage`` can confirm. ``LengthTally`` is a session sink: it sees every finished
request (exact per-request usage, unlike window totals, which also hold tokens of requests still streaming) and
keeps the sums per phase so a sweep can show them per step.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from engine.records import ControlEvent, RequestRecord, StreamProgress, TelemetrySample
from engine.snapshot import Snapshot
from engine.workload.profile import LoadedProfile


class LengthCheck(BaseModel):
    """Mean target and measured lengths over successful requests; errors in percent of the target."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    requests: int = 0
    target_input: float | None = None  # None for datasets: their prompts are what they are
    actual_input: float | None = None
    input_error_pct: float | None = None
    target_output: float | None = None
    actual_output: float | None = None
    output_error_pct: float | None = None
    output_estimated: bool = False  # some output counts came from chunks, not usage
    input_unknown: int = 0  # successful requests that came without usage.prompt_tokens

    def line(self) -> str:
        """One human line: 'input 512 -> 511.8 (-0.0%), output 512 -> 512.0 (+0.0%) over 240 requests'."""
        return (
            f"input {_pair(self.target_input, self.actual_input, self.input_error_pct)}, "
            f"output {_pair(self.target_output, self.actual_output, self.output_error_pct)} "
            f"over {self.requests} requests"
        )


def targets_of(loaded: LoadedProfile) -> tuple[float | None, float]:
    """The mean input and output lengths a profile aims for (input None for datasets)."""
    p = loaded.profile
    if loaded.dataset is None:
        return p.input.expected(), p.output.expected()
    outs = [e.output_tokens if e.output_tokens is not None else p.output.expected() for e in loaded.dataset]
    return None, sum(outs) / len(outs)


class _Sums:
    __slots__ = ("estimated", "input_n", "input_sum", "n", "output_sum", "unknown")

    def __init__(self) -> None:
        self.n = 0
        self.input_n = 0
        self.input_sum = 0
        self.output_sum = 0
        self.estimated = False
        self.unknown = 0

    def add(self, r: RequestRecord) -> None:
        self.n += 1
        self.output_sum += r.output_tokens
        self.estimated |= r.output_estimated
        if r.input_tokens is None:
            self.unknown += 1
        else:
            self.input_n += 1
            self.input_sum += r.input_tokens


class LengthTally:
    """A SessionSink that sums the lengths of successful requests, in total and per phase (sweep step)."""

    def __init__(self, target_input: float | None, target_output: float | None) -> None:
        self.target_input = target_input
        self.target_output = target_output
        self._lock = threading.Lock()
        self._total = _Sums()
        self._phases: dict[int, _Sums] = {}
        self._phase = 0

    @classmethod
    def for_profile(cls, loaded: LoadedProfile) -> LengthTally:
        return cls(*targets_of(loaded))

    def begin_phase(self, phase: int) -> None:
        """Requests that finish from now on count toward ``phase`` (and the total)."""
        with self._lock:
            self._phase = phase

    def check(self, phase: int | None = None) -> LengthCheck:
        with self._lock:
            sums = self._total if phase is None else self._phases.get(phase, _Sums())
            return self._check(sums)

    def _check(self, s: _Sums) -> LengthCheck:
        actual_in = s.input_sum / s.input_n if s.input_n else None
        actual_out = s.output_sum / s.n if s.n else None
        return LengthCheck(
            requests=s.n,
            target_input=self.target_input,
            actual_input=actual_in,
            input_error_pct=_err(self.target_input, actual_in),
            target_output=self.target_output,
            actual_output=actual_out,
            output_error_pct=_err(self.target_output, actual_out),
            output_estimated=s.estimated,
            input_unknown=s.unknown,
        )

    # -- SessionSink -------------------------------------------------------------------------------------------

    def on_records(self, records: Sequence[RequestRecord]) -> None:
        with self._lock:
            phase = self._phases.setdefault(self._phase, _Sums())
            for r in records:
                if r.error is None:
                    self._total.add(r)
                    phase.add(r)

    def on_progress(self, progress: Sequence[StreamProgress]) -> None:
        pass

    def on_telemetry(self, samples: Sequence[TelemetrySample]) -> None:
        pass

    def on_event(self, event: ControlEvent) -> None:
        pass

    def on_snapshot(self, snapshot: Snapshot) -> None:
        pass

    def close(self) -> None:
        pass


def _err(target: float | None, actual: float | None) -> float | None:
    if target is None or actual is None or target == 0:
        return None
    return (actual - target) / target * 100


def _pair(target: float | None, actual: float | None, err: float | None) -> str:
    if actual is None:
        return f"{target:g} -> n/a" if target is not None else "n/a"
    if target is None:
        return f"{actual:.1f} (no target)"
    return f"{target:g} -> {actual:.1f} ({err:+.1f}%)"

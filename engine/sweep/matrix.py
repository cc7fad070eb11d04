"""The token matrix: the ceiling finder for every input x output cell of a profile's ``[matrix]``, resumable.

A 4x4 matrix on a real server takes long enough that an interruption must not cost the finished cells: each
finished cell is written at once to a small JSON state file next to the output, and ``resume=True`` skips the
cells found there (when the state belongs to the same profile content, endpoint, model, settings and seed). A
cell the server cannot hold (HTTP 400: context window) is reported "exceeds context" and the matrix goes on.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from time import perf_counter_ns
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.records import ControlEvent, EventKind
from engine.snapshot import RunState
from engine.sweep.rules import SweepSettings
from engine.sweep.runner import StepProgress
from engine.sweep.session import CeilingResult, Prepared, SweepTarget, open_controller, prepare, search
from engine.workload.lengths import LengthTally
from engine.workload.profile import LoadedProfile
from engine.workload.prompts import SwitchableFactory

if TYPE_CHECKING:
    from engine.load.controller import Controller

STATE_FORMAT = "wattload-matrix-state"
STATE_VERSION = 1
DRAIN_TIMEOUT_S = 120.0  # the longest a cell's last requests may take to finish before the next cell starts


class MatrixError(ValueError):
    """A state file that cannot be used; ``str()`` is one line."""


class MatrixCell(BaseModel):
    """One cell's result, with the figures the table shows pulled up front."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_tokens: int
    output_tokens: int
    result: CeilingResult

    @property
    def key(self) -> str:
        return cell_key(self.input_tokens, self.output_tokens)

    @property
    def status(self) -> str:
        return self.result.status

    def figures(self) -> dict[str, float | int | None]:
        """Capacity and the figures at the capacity step (None where unknown)."""
        o = self.result.outcome
        step = o.capacity_step if o is not None else None
        return {
            "capacity": o.capacity if o is not None else None,
            "knee": o.knee if o is not None else None,
            "output_tokens_per_s": step.output_tokens_per_s if step else None,
            "ttft_p99_ms": step.ttft_p99_ms if step else None,
            "tpot_p99_ms": step.tpot_p99_ms if step else None,
            "joules_per_output_token": step.joules_per_output_token if step else None,
            "dollars_per_million_output": step.dollars_per_million_output if step else None,
            "dollars_per_million_total": step.dollars_per_million_total if step else None,
            "goodput_tokens_per_s": o.goodput_tokens_per_s if o is not None else None,
        }


def cell_key(input_tokens: int, output_tokens: int) -> str:
    return f"{input_tokens}x{output_tokens}"


class MatrixState(BaseModel):
    """Finished cells of one matrix run, keyed by ``INPUTxOUTPUT``; rewritten after every cell."""

    model_config = ConfigDict(extra="forbid")

    format: str = STATE_FORMAT
    version: int = STATE_VERSION
    fingerprint: str
    cells: dict[str, MatrixCell] = Field(default_factory=dict)


def state_path_for(output: str | Path | None) -> Path:
    """The state file next to the output (``out.json`` -> ``out.state.json``); in the working directory without
    an output."""
    if output is None:
        return Path("wattload-matrix.state.json")
    p = Path(output)
    return p.with_name(p.stem + ".state.json")


def fingerprint(loaded: LoadedProfile, target: SweepTarget, settings: SweepSettings, seed: int) -> str:
    """What must match for finished cells to be reused: profile content, endpoint, model, settings, seed."""
    parts = {
        "profile": loaded.sha256,
        "endpoint": target.config.base_url,
        "model": target.config.model,
        "settings": settings.model_dump(mode="json"),
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def load_state(path: Path, expected: str) -> MatrixState:
    try:
        state = MatrixState.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise MatrixError(f"{path}: cannot read the matrix state: {exc.strerror or exc}") from None
    except ValidationError:
        raise MatrixError(f"{path}: not a wattload matrix state file (remove it or run without --resume)") from None
    if state.format != STATE_FORMAT or state.version != STATE_VERSION:
        raise MatrixError(f"{path}: unsupported matrix state format (remove it or run without --resume)")
    if state.fingerprint != expected:
        raise MatrixError(
            f"{path}: made with another profile, endpoint, model, seed or settings; remove it or run without --resume"
        )
    return state


def save_state(path: Path, state: MatrixState) -> None:
    """Write atomically (temp file + rename): an interruption mid-write never corrupts the finished cells."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(state.model_dump_json(indent=1))
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class MatrixProgress:
    """Where the matrix is, for the progress line: cell k of n, the running step, and an ETA."""

    cell_index: int  # 1-based, counting skipped (resumed) cells
    cells: int
    input_tokens: int
    output_tokens: int
    step: StepProgress | None
    eta_s: float | None
    finished: MatrixCell | None = None
    skipped: bool = False
    calibrating: bool = False


MatrixCallback = Callable[[MatrixProgress], None]


def run_matrix(
    target: SweepTarget,
    loaded: LoadedProfile,
    settings: SweepSettings,
    *,
    seed: int = 0,
    state_path: Path | None = None,
    resume: bool = False,
    on_progress: MatrixCallback | None = None,
    stop_flag: threading.Event | None = None,
) -> list[MatrixCell]:
    """Find the ceiling of every cell (rows = inputs, columns = outputs); returns the cells in grid order.

    Every cell is calibrated first (a few one-token probes each; cells the server cannot hold end there), then
    all runnable cells share one controller and its workers, switching the request factory between cells while
    no request is in flight. Cells not run because ``stop_flag`` was set are absent from the result and from
    the state file.
    """
    spec = loaded.profile.matrix
    if spec is None:
        raise MatrixError(f"{loaded.path}: the profile has no [matrix] table")
    stop = stop_flag or threading.Event()
    fp = fingerprint(loaded, target, settings, seed)
    state = MatrixState(fingerprint=fp)
    if resume and state_path is not None and state_path.exists():
        state = load_state(state_path, fp)
        state.cells = {k: c for k, c in state.cells.items() if c.status != "failed"}  # failed cells run again
    grid = [(i, o) for i in spec.inputs for o in spec.outputs]
    run = _MatrixRun(len(grid), state, state_path, on_progress)

    todo: list[tuple[int, int, int, Prepared]] = []
    for k, (inp, out) in enumerate(grid, start=1):
        if stop.is_set():
            break
        done = state.cells.get(cell_key(inp, out))
        if done is not None:
            run.notify(MatrixProgress(k, len(grid), inp, out, None, None, done, skipped=True))
            continue
        run.notify(MatrixProgress(k, len(grid), inp, out, None, None, calibrating=True))
        prepared = prepare(target, loaded.with_profile(loaded.profile.cell(inp, out)), settings, seed, (inp, out))
        if isinstance(prepared, CeilingResult):
            run.finish(k, inp, out, prepared, ran=False)
        else:
            todo.append((k, inp, out, prepared))
    if todo and not stop.is_set():
        _run_cells(target, settings, todo, run, stop)
    return [c for i, o in grid if (c := state.cells.get(cell_key(i, o))) is not None]


def _run_cells(
    target: SweepTarget,
    settings: SweepSettings,
    todo: list[tuple[int, int, int, Prepared]],
    run: _MatrixRun,
    stop: threading.Event,
) -> None:
    """Run the calibrated cells on one controller, draining it between cells."""
    switch = SwitchableFactory([p.factory for *_, p in todo])
    config = todo[0][3].config.model_copy(update={"concurrency": 0})
    controller = open_controller(target, config, switch)
    try:
        controller.start()
        for n, (k, inp, out, prepared) in enumerate(todo):
            if stop.is_set() or not _drain(controller):
                break
            switch.select(n)
            controller.emit(
                ControlEvent(perf_counter_ns(), EventKind.ANNOTATION, message=f"matrix cell {cell_key(inp, out)}")
            )
            tally = LengthTally.for_profile(prepared.loaded)
            controller.add_sink(tally)
            run.begin(k, inp, out, len(todo) - n)

            def step_progress(p: StepProgress, k: int = k, inp: int = inp, out: int = out) -> None:
                run.notify(MatrixProgress(k, run.cells, inp, out, p, run.eta_s))

            started = replace(prepared, t0_ns=perf_counter_ns())  # a cell's time is its own, not the queue's
            try:
                result = search(controller, started, settings, tally, on_progress=step_progress, stop_flag=stop)
            finally:
                controller.set_concurrency(0)
                controller.remove_sink(tally)
            if stop.is_set():
                break  # an interrupted cell is not finished: it runs again with --resume
            run.finish(k, inp, out, result, ran=True)
    finally:
        controller.close()


def _drain(controller: Controller, timeout_s: float = DRAIN_TIMEOUT_S) -> bool:
    """Wait until no request is in flight (the previous cell's last requests finished). False if it never did."""
    deadline = perf_counter_ns() + timeout_s * 1e9
    while perf_counter_ns() < deadline:
        snap = controller.latest
        if snap.state in (RunState.STOPPED, RunState.FAILED):
            return False
        if snap.in_flight == 0 and snap.state is not RunState.STARTING:
            return True
        time.sleep(0.05)
    return False


class _MatrixRun:
    """Bookkeeping of one matrix run: finished cells into the state file, progress and ETA."""

    def __init__(self, cells: int, state: MatrixState, path: Path | None, cb: MatrixCallback | None) -> None:
        self.cells = cells
        self.state = state
        self.path = path
        self.cb = cb
        self.eta_s: float | None = None
        self._ran = 0
        self._spent_ns = 0
        self._t_cell = perf_counter_ns()
        self._left = 0

    def notify(self, p: MatrixProgress) -> None:
        if self.cb is not None:
            self.cb(p)

    def begin(self, k: int, inp: int, out: int, left: int) -> None:
        self._t_cell = perf_counter_ns()
        self._left = left
        self.eta_s = self._spent_ns / self._ran / 1e9 * left if self._ran else None
        self.notify(MatrixProgress(k, self.cells, inp, out, None, self.eta_s))

    def finish(self, k: int, inp: int, out: int, result: CeilingResult, *, ran: bool) -> None:
        if ran:
            self._spent_ns += perf_counter_ns() - self._t_cell
            self._ran += 1
            self._left -= 1
            self.eta_s = self._spent_ns / self._ran / 1e9 * self._left
        cell = MatrixCell(input_tokens=inp, output_tokens=out, result=result)
        self.state.cells[cell.key] = cell
        if self.path is not None:
            save_state(self.path, self.state)
        self.notify(MatrixProgress(k, self.cells, inp, out, None, self.eta_s if ran else None, cell))

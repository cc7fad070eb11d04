"""Power caps the operator steps live, and the guarantee that the GPUs get their starting limits back.

Watts in, watts out (the backend converts to NVML's milliwatts). Every request is clamped to the GPU's
constraints, applied, read back, and returned as a ``ControlEvent`` whose message says when it was clamped or
when the enforced limit differs from the one asked for. The limits a GPU had before its first change are written
to a state file *before* that change and restored on every exit path: ``restore_all``/``close`` (and ``with``),
``atexit``, SIGTERM/SIGHUP (a cleanup registered with ``engine.signals.OWNER``, the process's one signal owner,
which runs it before anything else), and ``wattload gpu restore`` after a kill -9.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from engine.gpu.base import GpuBackend, GpuInfo, PowerCapError
from engine.gpu.statefile import (
    PowerCapState,
    SavedLimit,
    StateFileError,
    default_state_file,
    read_state,
    remove_state,
    write_state,
)
from engine.records import ControlEvent, EventKind
from engine.signals import OWNER

__all__ = ["DEFAULT_STATE_FILE", "PowerCapError", "PowerCapManager", "restore_from_state_file"]

TOLERANCE_W = 0.5  # NVML stores milliwatts; a readback within half a watt is "the same"


class _DefaultStateFile:
    """Sentinel: use ``default_state_file()`` (resolved when the manager is made, so env changes apply)."""

    def __repr__(self) -> str:
        return "DEFAULT_STATE_FILE"


DEFAULT_STATE_FILE = _DefaultStateFile()


def _w(watts: float | None) -> str:
    return "n/a" if watts is None else f"{watts:.0f} W"


def _key(gpu: GpuInfo | SavedLimit) -> str:
    return gpu.uuid or f"index:{gpu.index}"


def _event(
    kind: EventKind, message: str, *, index: int | None, value: float | None = None, readback: float | None = None
) -> ControlEvent:
    return ControlEvent(time.perf_counter_ns(), kind, value=value, gpu_index=index, readback=readback, message=message)


class PowerCapManager:
    """Steps and sets power caps on the selected GPUs and puts the starting limits back on every exit path."""

    def __init__(
        self,
        backend: GpuBackend,
        indices: Sequence[int],
        state_file: Path | _DefaultStateFile | None = DEFAULT_STATE_FILE,
    ) -> None:
        self._backend = backend
        wanted = set(indices)
        self._gpus = {g.index: g for g in backend.gpus() if g.index in wanted}
        self._indices = [i for i in indices if i in self._gpus]
        self._state_file = default_state_file() if isinstance(state_file, _DefaultStateFile) else state_file
        self._lock = threading.RLock()  # re-entrant: a signal handler may run while the main thread holds it
        self._originals: dict[int, float] = {}
        self._signal_events: list[ControlEvent] = []  # restores done by a signal, reported by the next restore_all
        self._atexit_registered = False
        self._closed = False
        self.warning = ""  # one line for the UI, e.g. caps left changed by an earlier run
        self._stale: dict[str, SavedLimit] = self._load_stale()
        self._cleanup_handle: int | None = OWNER.add_cleanup(self._on_signal)

    # -- state ---------------------------------------------------------------------------------------------------

    @property
    def changed(self) -> bool:
        """True while some GPU's limit differs from the one it started with (and was not kept)."""
        return bool(self._originals)

    @property
    def originals(self) -> dict[int, float]:
        return dict(self._originals)

    @property
    def state_file(self) -> Path | None:
        return self._state_file

    # -- changes ---------------------------------------------------------------------------------------------------

    def step(self, delta_w: float, gpu: int | None = None) -> list[ControlEvent]:
        """Move each target GPU's cap by ``delta_w`` from its current limit. Raises PowerCapError (one line)
        when no GPU could be changed; when only some failed, their failures come back as ERROR events."""
        return self._each(self._targets(gpu), lambda index: self._apply(index, self._current(index) + delta_w))

    def set(self, watts: float, gpu: int | None = None) -> list[ControlEvent]:
        """Set each target GPU's cap to ``watts`` (clamped). Raises like ``step``."""
        return self._each(self._targets(gpu), lambda index: self._apply(index, watts))

    @staticmethod
    def _each(indices: list[int], apply: Callable[[int], ControlEvent]) -> list[ControlEvent]:
        """Apply to every GPU; one GPU's failure must not hide the changes already made to the others."""
        events: list[ControlEvent] = []
        failures: list[PowerCapError] = []
        for index in indices:
            try:
                events.append(apply(index))
            except PowerCapError as exc:
                failures.append(exc)
                events.append(_event(EventKind.ERROR, f"GPU {index}: {exc}", index=index))
        if failures and len(failures) == len(indices):
            raise failures[0]
        return events

    def _current(self, index: int) -> float:
        limits = self._backend.power_limits(index)
        base = limits.current_w if limits.current_w is not None else limits.enforced_w
        if base is None:
            raise PowerCapError(f"GPU {index} does not report its power limit; not changing it")
        return base

    def _targets(self, gpu: int | None) -> list[int]:
        if self._closed:
            raise PowerCapError("power-cap control is closed")
        if gpu is None:
            if not self._indices:
                raise PowerCapError("no GPU selected for power-cap control")
            return list(self._indices)
        if gpu not in self._gpus:
            raise PowerCapError(f"GPU {gpu} is not selected")
        return [gpu]

    def _apply(self, index: int, asked_w: float) -> ControlEvent:
        with self._lock:
            limits = self._backend.power_limits(index)
            target, note = asked_w, ""
            if limits.min_w is not None and target < limits.min_w:
                target, note = limits.min_w, f"asked {asked_w:.0f} W, below the {limits.min_w:.0f} W minimum"
            elif limits.max_w is not None and target > limits.max_w:
                target, note = limits.max_w, f"asked {asked_w:.0f} W, above the {limits.max_w:.0f} W maximum"
            current = limits.current_w
            if current is not None and abs(current - target) < TOLERANCE_W:
                why = f" ({note})" if note else ""
                return _event(
                    EventKind.POWER_CAP,
                    f"GPU {index} power cap stays at {_w(current)}{why}",
                    index=index,
                    value=target,
                    readback=limits.enforced_w,
                )
            first = index not in self._originals
            if first:
                self._remember_original(index, current if current is not None else limits.enforced_w)
            try:
                self._backend.set_power_limit(index, target)
            except PowerCapError:
                if first:  # nothing changed on this GPU: take it out of the state file again
                    self._originals.pop(index, None)
                    try:
                        self._save_state()
                    except OSError:
                        pass
                raise
            after = self._backend.power_limits(index)
        return _event(
            EventKind.POWER_CAP,
            self._message(index, target, note, after.current_w, after.enforced_w),
            index=index,
            value=target,
            readback=after.enforced_w,
        )

    @staticmethod
    def _message(index: int, target: float, note: str, current: float | None, enforced: float | None) -> str:
        text = f"GPU {index} power cap {_w(target)}"
        if note:
            text += f" (clamped: {note})"
        if current is not None and abs(current - target) >= TOLERANCE_W:
            return text + f", but it reads back {_w(current)} (enforced {_w(enforced)})"
        if enforced is not None and abs(enforced - target) >= TOLERANCE_W:
            return text + f", but the GPU enforces {_w(enforced)} (another limit is in force)"
        return text + f", enforced {_w(enforced)}"

    def _remember_original(self, index: int, current_w: float | None) -> None:
        """Record the starting limit and write the state file before the first change to this GPU."""
        stale = self._stale.pop(_key(self._gpus[index]), None)
        original = stale.limit_w if stale is not None else current_w
        if original is None:
            raise PowerCapError(f"GPU {index} does not report its power limit; not changing it")
        self._originals[index] = original
        try:
            self._save_state()
        except OSError as exc:
            self._originals.pop(index, None)
            raise PowerCapError(f"cannot write the power-cap state file {self._state_file}: {exc.strerror}") from None
        self._register_atexit()

    # -- restore ---------------------------------------------------------------------------------------------------

    def restore_all(self) -> list[ControlEvent]:
        """Put every changed GPU back to its starting limit. Never raises; failures become ERROR events."""
        with self._lock:
            events, self._signal_events = self._signal_events, []
            for index, original in sorted(self._originals.items()):
                try:
                    self._backend.set_power_limit(index, original)
                    after = self._backend.power_limits(index)
                except Exception as exc:
                    events.append(
                        _event(
                            EventKind.ERROR,
                            f"GPU {index}: could not restore the power cap to "
                            f"{_w(original)}: {exc}; run `wattload gpu restore`",
                            index=index,
                        )
                    )
                    continue
                del self._originals[index]
                events.append(
                    _event(
                        EventKind.POWER_CAP,
                        f"GPU {index} power cap restored to {_w(original)}, enforced {_w(after.enforced_w)}",
                        index=index,
                        value=original,
                        readback=after.enforced_w,
                    )
                )
            try:
                self._save_state()
            except OSError:
                pass
        return events

    def keep(self) -> None:
        """The operator keeps the caps: forget the starting limits and clear them from the state file."""
        with self._lock:
            self._originals.clear()
            try:
                self._save_state()
            except OSError:
                pass

    def close(self) -> list[ControlEvent]:
        """Restore (unless kept), then take the exit hooks away. Safe to call more than once."""
        events = self.restore_all()
        self._closed = True
        if self._cleanup_handle is not None:
            OWNER.remove_cleanup(self._cleanup_handle)
            self._cleanup_handle = None
        if self._atexit_registered:
            atexit.unregister(self._at_exit)
            self._atexit_registered = False
        return events

    def __enter__(self) -> PowerCapManager:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- state file --------------------------------------------------------------------------------------------------

    def _load_stale(self) -> dict[str, SavedLimit]:
        """Limits an earlier run saved and never restored (it was killed): those are the true originals."""
        if self._state_file is None:
            return {}
        try:
            state = read_state(self._state_file)
        except StateFileError as exc:
            self.warning = f"ignoring a corrupt power-cap state file: {exc}"
            return {}
        if state is None or not state.gpus:
            return {}
        self.warning = (
            f"an earlier run left power caps changed ({self._state_file}); run `wattload gpu restore` to put them back"
        )
        return {_key(s): s for s in state.gpus}

    def _save_state(self) -> None:
        if self._state_file is None:
            return
        entries = [
            SavedLimit(index=i, uuid=self._gpus[i].uuid, name=self._gpus[i].name, limit_w=w)
            for i, w in sorted(self._originals.items())
        ]
        entries += list(self._stale.values())
        if not entries:
            remove_state(self._state_file)
            return
        write_state(
            self._state_file,
            PowerCapState(source=self._backend.source, sim_url=getattr(self._backend, "url", None), gpus=entries),
        )

    # -- exit hooks ----------------------------------------------------------------------------------------------

    def _register_atexit(self) -> None:
        if not self._atexit_registered:
            atexit.register(self._at_exit)
            self._atexit_registered = True

    def _at_exit(self) -> None:
        if self.changed:
            self.restore_all()

    def _on_signal(self) -> None:
        """A stop signal arrived: restore at once (the run may never reach its own close); the events wait for
        the next ``restore_all``/``close`` so the event log and the recording still get them."""
        if self.changed:
            events = self.restore_all()
            with self._lock:
                self._signal_events = events + self._signal_events


def restore_from_state_file(backend: GpuBackend, path: Path) -> tuple[list[ControlEvent], bool]:
    """``wattload gpu restore``: put back every limit the state file holds that this backend can reach.

    Returns the events and whether everything was restored (the file is then removed; otherwise it keeps
    what is left). Raises StateFileError for a corrupt file."""
    state = read_state(path)
    if state is None or not state.gpus:
        return [], True
    by_uuid = {g.uuid: g for g in backend.gpus() if g.uuid}
    by_index = {g.index: g for g in backend.gpus()}
    events: list[ControlEvent] = []
    left: list[SavedLimit] = []
    for saved in state.gpus:
        gpu = by_uuid.get(saved.uuid) if saved.uuid else by_index.get(saved.index)
        if gpu is None:
            events.append(
                _event(
                    EventKind.ERROR,
                    f"GPU {saved.index} ({saved.uuid or 'no UUID'}) is not visible; its limit was left as it is",
                    index=saved.index,
                )
            )
            left.append(saved)
            continue
        try:
            backend.set_power_limit(gpu.index, saved.limit_w)
            enforced = backend.power_limits(gpu.index).enforced_w
        except PowerCapError as exc:
            events.append(_event(EventKind.ERROR, f"GPU {gpu.index}: {exc}", index=gpu.index))
            left.append(saved)
            continue
        events.append(
            _event(
                EventKind.POWER_CAP,
                f"GPU {gpu.index} power cap restored to {_w(saved.limit_w)}, enforced {_w(enforced)}",
                index=gpu.index,
                value=saved.limit_w,
                readback=enforced,
            )
        )
    if left:
        write_state(path, state.model_copy(update={"gpus": left}))
    else:
        remove_state(path)
    return events, not left

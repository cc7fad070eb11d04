"""Engine-thread glue for the ``a`` key's auto-ramp (no textual here: it runs inside the snapshot callback)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.control import LoadControl
from engine.snapshot import Snapshot

if TYPE_CHECKING:
    from engine.sweep.rules import SweepSettings
    from engine.sweep.runner import AutoRamp

RampLine = tuple[str, bool]
"""One line for the event log, and whether it also pops up."""


class RampLink:
    """The ``a`` key's auto-ramp, driven on the engine's thread from the same callback that receives snapshots.

    Why there and not on the UI thread: AutoRamp must judge every snapshot, and the UI skips frames. Worse, a UI
    that stalls and then works through a backlog would hand the ramp snapshots taken before its last step change,
    long after that change (AutoRamp would read the old target as the operator overriding it). On the engine
    thread ``set_concurrency`` lands before the next snapshot is taken, so every snapshot it sees carries its own
    target. AutoRamp never blocks, so the engine never waits on it.

    The UI never touches the AutoRamp itself (it is not thread-safe): ``a`` only counts a request, which the next
    snapshot's callback carries out (at most one tick later), so there is no lock the engine could wait on.
    ``status`` is a plain string the engine thread replaces and the UI reads.
    """

    def __init__(self, control: LoadControl, settings: SweepSettings | None = None) -> None:
        self._control = control
        self._settings = settings
        self._ramp: AutoRamp | None = None  # made on first use: the sweep code is not needed for the first frame
        self.status = ""  # the header label while the ramp runs; written by the engine thread only
        self._requested = 0  # toggles asked for: written by the UI thread only
        self._done = 0  # toggles carried out: written by the engine thread only

    @property
    def ramp(self) -> AutoRamp:
        if self._ramp is None:
            from engine.sweep.runner import AutoRamp

            self._ramp = AutoRamp(self._control, self._settings)
        return self._ramp

    def request_toggle(self) -> None:
        """UI thread: ask for a toggle; the next snapshot carries it out."""
        self._requested += 1

    def feed(self, snapshot: Snapshot) -> tuple[RampLine, ...]:
        """Engine thread: carry out pending toggles, else advance the ramp; returns (line, notify) pairs."""
        if self._ramp is None and self._done >= self._requested:
            return ()  # never asked for: nothing to advance
        lines: list[RampLine] = []
        try:
            if self._done < self._requested:
                while self._done < self._requested:
                    self._done += 1
                    lines.append((self.ramp.toggle(), True))
            else:
                line = self.ramp.on_snapshot(snapshot)
                if line is not None:
                    lines.append((line, not self.ramp.enabled))  # step verdicts go to the log; the end also pops up
        except Exception as exc:  # a ramp bug must not cost the dashboard its snapshots: drop the ramp, say why
            from engine.sweep.runner import AutoRamp

            self._ramp = AutoRamp(self.ramp.control, self.ramp.base_settings)
            lines.append((f"auto-ramp failed and stopped: {exc}".splitlines()[0], True))
        self.status = self.ramp.status()
        return tuple(lines)

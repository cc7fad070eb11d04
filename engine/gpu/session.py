"""The GPU side of one live session: telemetry sampling, energy accounting and power-cap control, opened together
and closed together (caps restored unless the operator keeps them).

Nothing here may stop a load run: no driver, no GPU, no permission to set caps all become one line in
``message`` (or the string ``step_power_cap`` returns), and the session goes on without those figures.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from engine.records import ControlEvent, TelemetrySample

if TYPE_CHECKING:
    from engine.gpu.base import GpuBackend
    from engine.gpu.energy import EnergyAccount
    from engine.gpu.powercap import PowerCapManager
    from engine.gpu.sampler import TelemetrySampler

TELEMETRY_HZ = 10.0
_NO_TELEMETRY = "no GPU telemetry: "


class GpuSession:
    """Telemetry, energy and power caps for the selected GPUs; an empty session when there is no GPU."""

    def __init__(self, message: str = "the run has not started") -> None:
        self.message = message  # where telemetry comes from, or why there is none (one line)
        self.warning = ""  # e.g. power caps left changed by an earlier run
        self.caps_note = ""  # why the cap keys do nothing, when the backend says (remote telemetry)
        self.energy: EnergyAccount | None = None
        self.indices: tuple[int, ...] = ()
        self._backend: GpuBackend | None = None
        self._sampler: TelemetrySampler | None = None
        self._caps: PowerCapManager | None = None

    @classmethod
    def open(
        cls,
        choice: str | GpuBackend,
        *,
        gpus: str | None,
        sim_url: str | None,
        on_samples: Callable[[list[TelemetrySample]], None],
    ) -> GpuSession:
        """``choice`` is a backend kind ("none", "auto", "nvml", "sim", "fake") or an opened backend."""
        from engine.gpu import open_backend

        if isinstance(choice, str):
            backend, message = open_backend(choice, sim_url=sim_url, gpus=gpus)
        else:
            backend, message = choice, getattr(choice, "open_message", "") or f"GPU telemetry: {choice.source}"
        session = cls(message)
        if backend is None:
            return session
        from engine.gpu.energy import EnergyAccount
        from engine.gpu.powercap import PowerCapManager
        from engine.gpu.sampler import TelemetrySampler

        selected = backend.gpus()
        session._backend = backend
        session.indices = tuple(g.index for g in selected)
        session.energy = EnergyAccount(names={g.index: g.name for g in selected}, source=backend.source,
                                       health=getattr(backend, "problem", None))  # fmt: skip
        session._sampler = TelemetrySampler(backend, session.indices, TELEMETRY_HZ, on_samples)
        read_only = getattr(backend, "caps_read_only", "")
        if read_only:  # remote telemetry (DCGM, Prometheus): nothing to set, nothing to restore
            session.caps_note = str(read_only)
            return session
        try:
            session._caps = PowerCapManager(backend, session.indices)
        except Exception as exc:  # power control is optional; telemetry still works
            session.message += f"; no power-cap control: {exc}".splitlines()[0]
        else:
            session.warning = session._caps.warning
        return session

    @property
    def backend(self) -> GpuBackend | None:
        return self._backend

    def start_sampling(self) -> None:
        if self._sampler is not None:
            self._sampler.start()

    @property
    def power_cap_changed(self) -> bool:
        return self._caps is not None and self._caps.changed

    def step_power_cap(self, delta_w: float) -> tuple[str, list[ControlEvent]]:
        """Move every selected GPU's cap by ``delta_w``: (one line for the UI, the events to log)."""
        if self._caps is None and self.caps_note:
            return self.caps_note, []
        if self._caps is None:
            return f"no GPU power control: {self.message.removeprefix(_NO_TELEMETRY)}", []
        from engine.gpu.base import PowerCapError

        try:
            events = self._caps.step(delta_w)
        except PowerCapError as exc:
            return str(exc), []
        return "; ".join(e.message for e in events) or "no GPU power cap changed", events

    def set_power_cap(self, watts: float) -> tuple[str, list[ControlEvent]]:
        """Set every selected GPU's cap to ``watts`` (clamped, read back): (one line, the events to log)."""
        if self._caps is None:
            return f"no GPU power control: {self.message.removeprefix(_NO_TELEMETRY)}", []
        from engine.gpu.base import PowerCapError

        try:
            events = self._caps.set(watts)
        except PowerCapError as exc:
            return str(exc), []
        return "; ".join(e.message for e in events) or "no GPU power cap changed", events

    def close(self, keep_power_caps: bool = False) -> list[ControlEvent]:
        """Stop sampling, restore the caps (unless kept), close the backend; returns the restore events."""
        if self._sampler is not None:
            self._sampler.stop()
        events: list[ControlEvent] = []
        if self._caps is not None:
            if keep_power_caps:
                self._caps.keep()
            events = self._caps.close()
            self._caps = None
        if self._backend is not None:
            with contextlib.suppress(Exception):
                self._backend.close()
            self._backend = None
        return events

"""A daemon thread that reads the selected GPUs at a fixed rate and hands each batch to a callback.

Ticks are scheduled on an absolute ``perf_counter`` clock (a slow read does not shift every later tick; ticks
that are already missed are skipped, not bunched). Nothing raised by the backend or the callback reaches the
caller: the last error is kept for the UI and sampling goes on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from engine.gpu.base import GpuBackend
from engine.records import TelemetrySample

SampleCallback = Callable[[list[TelemetrySample]], None]


class TelemetrySampler:
    """Samples ``indices`` of ``backend`` at ``hz`` on its own daemon thread."""

    def __init__(
        self,
        backend: GpuBackend,
        indices: Sequence[int],
        hz: float = 10.0,
        on_samples: SampleCallback | None = None,
    ) -> None:
        if hz <= 0:
            raise ValueError("hz must be > 0")
        self._backend = backend
        self._indices = tuple(indices)
        self._period_s = 1.0 / hz
        self._on_samples = on_samples or (lambda _samples: None)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.batches = 0  # batches delivered
        self.skipped_ticks = 0  # ticks missed because a read ran long
        self.last_error: str | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="wattload-gpu-sampler", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Ask the thread to end and wait up to ``timeout_s`` (it is a daemon, so it never blocks exit)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    def sample_once(self) -> list[TelemetrySample]:
        """One batch now, on the caller's thread (for `wattload gpu` and tests); never raises."""
        try:
            return self._backend.read(self._indices)
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            return []

    def _run(self) -> None:
        next_t = time.perf_counter()
        while not self._stop.is_set():
            samples = self.sample_once()
            if samples:
                try:
                    self._on_samples(samples)
                    self.batches += 1
                except Exception as exc:
                    self.last_error = f"callback: {type(exc).__name__}: {exc}".splitlines()[0]
            next_t += self._period_s
            now = time.perf_counter()
            if now - next_t > self._period_s:  # a whole tick behind: skip the missed ticks rather than bunch them
                missed = int((now - next_t) / self._period_s)
                self.skipped_ticks += missed
                next_t += missed * self._period_s
            self._stop.wait(max(0.0, next_t - now))

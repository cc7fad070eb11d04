"""A LoadControl that exists before the session does, so the dashboard can open at once.

Starting a session takes seconds (the simulated server's process, the GPU backend, worker processes); a blank
terminal for that long looks hung. ``DeferredControl`` is handed to the dashboard first: until the real controller
is attached it publishes STARTING snapshots that say what is happening ("starting the simulated server…"),
answers keys with "still starting", and on a failure publishes a FAILED snapshot with the reason. Once attached,
every call goes to the controller and its snapshots reach the same subscribers.
"""

from __future__ import annotations

import threading
from typing import Any

from engine.control import LoadControl, SnapshotCallback
from engine.snapshot import RunState, Snapshot

STILL_STARTING = "still starting: try again in a moment"


class DeferredControl:
    """A proxy LoadControl. Thread-safe: ``say``/``attach``/``fail`` come from the starting thread."""

    def __init__(self, *, endpoint: str = "", model: str = "", workload: str = "") -> None:
        self._lock = threading.Lock()
        self._callbacks: list[SnapshotCallback] = []
        self._target: LoadControl | None = None
        self._closed = False
        self._close_keep_caps = False
        self._latest = Snapshot(endpoint=endpoint, model=model, workload=workload, state=RunState.STARTING,
                                message="starting…")  # fmt: skip

    # -- the starting thread -------------------------------------------------------------------------------------

    def say(self, message: str) -> None:
        """Publish what startup is doing now."""
        self._publish(self._latest.model_copy(update={"message": message}))

    def fail(self, message: str) -> None:
        self._publish(self._latest.model_copy(update={"state": RunState.FAILED, "message": message}))

    @staticmethod
    def prepare_process_spawning() -> None:
        """Start multiprocessing's resource tracker now, on a thread with the real stderr: once a TUI owns the
        terminal, sys.stderr has no usable file descriptor, and the worker spawn's first fork_exec of the
        tracker fails ("bad value(s) in fds_to_keep")."""
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()

    def attach(self, control: LoadControl, **labels: str) -> bool:
        """Hand over to the real controller (subscribing our subscribers to it). False when the dashboard was
        closed meanwhile: then the controller is closed here and must not be used."""
        with self._lock:
            closed = self._closed
            if not closed:
                self._target = control
                callbacks = list(self._callbacks)
        if closed:
            control.close(keep_power_caps=False)
            return False
        if labels:
            self._latest = self._latest.model_copy(update=labels)
        for callback in callbacks:
            control.subscribe(callback)
        start = getattr(control, "start", None)
        try:
            if callable(start):
                start()
        except BaseException:  # not started: the dashboard stays on this proxy, which can then report why
            with self._lock:
                self._target = None
            control.close(keep_power_caps=False)
            raise
        return True

    @property
    def target(self) -> LoadControl | None:
        return self._target

    def _publish(self, snapshot: Snapshot) -> None:
        with self._lock:
            if self._target is not None:
                return
            self._latest = snapshot
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback(snapshot)
            except Exception:  # a subscriber's bug must not stop the startup
                pass

    # -- LoadControl ---------------------------------------------------------------------------------------------

    @property
    def latest(self) -> Snapshot:
        target = self._target
        return target.latest if target is not None else self._latest

    def subscribe(self, callback: SnapshotCallback) -> None:
        with self._lock:
            target = self._target
            if target is None:
                self._callbacks.append(callback)
        if target is not None:
            target.subscribe(callback)

    def start(self) -> None:
        """The dashboard starts its source; the real one is started when it is attached."""

    def set_concurrency(self, n: int) -> None:
        if self._target is not None:
            self._target.set_concurrency(n)

    def set_rate(self, r: float) -> None:
        if self._target is not None:
            self._target.set_rate(r)

    def pause(self) -> None:
        if self._target is not None:
            self._target.pause()

    def resume(self) -> None:
        if self._target is not None:
            self._target.resume()

    def stop(self) -> None:
        if self._target is not None:
            self._target.stop()

    def step_power_cap(self, delta_w: float) -> str:
        return self._target.step_power_cap(delta_w) if self._target is not None else STILL_STARTING

    def start_recording(self, path: str | None = None) -> str:
        return self._target.start_recording(path) if self._target is not None else STILL_STARTING

    def stop_recording(self) -> str:
        return self._target.stop_recording() if self._target is not None else "not recording"

    @property
    def power_cap_changed(self) -> bool:
        return bool(self._target.power_cap_changed) if self._target is not None else False

    def close(self, keep_power_caps: bool = False) -> None:
        with self._lock:
            self._closed = True
            target = self._target
        if target is not None:
            target.close(keep_power_caps=keep_power_caps)

    def __getattr__(self, name: str) -> Any:
        """Everything else a front end reads (config, stop_reason, gpu_message...) is the controller's."""
        target = self.__dict__.get("_target")
        if target is None:
            raise AttributeError(name)
        return getattr(target, name)

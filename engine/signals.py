"""The one owner of a process's stop-signal handlers (SIGTERM, SIGHUP, and SIGINT while a run asks for it).

Before this module the power-cap manager, the TUI and the headless commands each installed their own handlers,
and whichever ran last won: a headless run under ``timeout`` or ``docker stop`` died without its summary, its
``--json`` or a closed recording. Now there is exactly one handler per signal, installed here, and the parts that
care register with it:

- **cleanups** (``add_cleanup``) must run whatever happens next, before anything that could block: putting power
  caps back. They run first on every stop signal.
- **stoppers** (``stopping``) end the current run the way Ctrl-C does: the headless run, the sweep, the TUI. While
  one is registered a stop signal asks it to stop and the process exits later, by its normal path, with
  ``128 + signal``. A second signal while stopping raises ``StopNow`` (``KeyboardInterrupt`` for SIGINT) in the
  main thread, so ``finally`` blocks (recordings, caps) still run but nothing waits any longer.
- With no stopper the signal ends the process as it would have without wattload: the handler that was there
  before (a Python handler is chained) or the default action, after the cleanups.

Handlers can only be installed from the main thread; elsewhere registration works and ``atexit`` still covers
normal exits.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

STOP_SIGNALS: tuple[int, ...] = tuple(
    int(s) for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None
)
SIGINT = int(signal.SIGINT)
_NAMES = {int(getattr(signal, n)): n for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n)}

Cleanup = Callable[[], None]
Stopper = Callable[[int], None]


def signal_name(signum: int) -> str:
    return _NAMES.get(signum, f"signal {signum}")


def exit_code_for(signum: int) -> int:
    """The shell's convention for "ended by signal N": 128 + N (130 for SIGINT, 143 for SIGTERM)."""
    return 128 + signum


class StopNow(SystemExit):
    """A second stop signal while a run was already stopping: leave now (``finally`` blocks still run)."""

    def __init__(self, signum: int) -> None:
        super().__init__(exit_code_for(signum))
        self.signum = signum


@dataclass
class StopRequest:
    """What a registered stopper learns: the first stop signal received while it was registered."""

    signum: int | None = None
    count: int = 0
    names: list[str] = field(default_factory=list)

    @property
    def received(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int | None:
        return None if self.signum is None else exit_code_for(self.signum)


class SignalOwner:
    """Installs one handler per stop signal and dispatches to what is registered. One per process (``OWNER``)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()  # re-entrant: the handler may interrupt the main thread while it holds it
        self._ids = itertools.count(1)
        self._cleanups: dict[int, Cleanup] = {}
        self._stoppers: dict[int, tuple[Stopper, StopRequest, bool, bool]] = {}
        self._previous: dict[int, Any] = {}

    # -- registration ------------------------------------------------------------------------------------------

    def add_cleanup(self, fn: Cleanup) -> int:
        """``fn`` runs first on every stop signal (it must be quick and idempotent); returns a handle."""
        with self._lock:
            handle = next(self._ids)
            self._cleanups[handle] = fn
            self._sync()
            return handle

    def remove_cleanup(self, handle: int) -> None:
        with self._lock:
            self._cleanups.pop(handle, None)
            self._sync()

    @contextlib.contextmanager
    def stopping(self, stop: Stopper, *, sigint: bool = False, escalate: bool = True) -> Iterator[StopRequest]:
        """While inside, a stop signal (and SIGINT when ``sigint``) calls ``stop(signum)``; a second one raises
        ``StopNow`` (or KeyboardInterrupt for SIGINT) unless ``escalate`` is False (then ``stop`` is called again:
        an event loop that must not see an exception from a signal handler). Yields the ``StopRequest``."""
        request = StopRequest()
        with self._lock:
            handle = next(self._ids)
            self._stoppers[handle] = (stop, request, sigint, escalate)
            self._sync()
        try:
            yield request
        finally:
            with self._lock:
                self._stoppers.pop(handle, None)
                self._sync()

    @property
    def installed(self) -> tuple[int, ...]:
        return tuple(self._previous)

    # -- the handler -------------------------------------------------------------------------------------------

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        with self._lock:
            cleanups = list(self._cleanups.values())
            stoppers = [s for s in reversed(self._stoppers.values()) if signum != SIGINT or s[2]]
        for cleanup in cleanups:
            with contextlib.suppress(Exception):
                cleanup()
        if not stoppers:
            self._pass_on(signum, frame)
            return
        for stop, request, _, escalate in stoppers:
            request.count += 1
            request.names.append(signal_name(signum))
            if request.signum is not None and escalate:
                if signum == SIGINT:
                    raise KeyboardInterrupt
                raise StopNow(signum)
            if request.signum is None:
                request.signum = signum
            stop(signum)

    def _pass_on(self, signum: int, frame: FrameType | None) -> None:
        """No run to stop: do what would have happened without us (chain a Python handler, else the default)."""
        previous = self._previous.get(signum)
        if callable(previous):
            previous(signum, frame)
        elif signum == SIGINT and previous in (None, signal.default_int_handler):
            raise KeyboardInterrupt
        elif previous != signal.SIG_IGN:
            with contextlib.suppress(ValueError, OSError):
                signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    # -- installing --------------------------------------------------------------------------------------------

    def _wanted(self) -> set[int]:
        wanted: set[int] = set()
        if self._cleanups or self._stoppers:
            wanted.update(STOP_SIGNALS)
        if any(s[2] for s in self._stoppers.values()):
            wanted.add(SIGINT)
        return wanted

    def _sync(self) -> None:
        """Install the handler for the signals something listens to; put back what was there for the others."""
        if threading.current_thread() is not threading.main_thread():
            return
        wanted = self._wanted()
        for signum in wanted - set(self._previous):
            with contextlib.suppress(ValueError, OSError):
                self._previous[signum] = signal.signal(signum, self._handle)
        for signum in set(self._previous) - wanted:
            previous = self._previous.pop(signum)
            with contextlib.suppress(ValueError, OSError, TypeError):
                if signal.getsignal(signum) == self._handle:
                    signal.signal(signum, previous if previous is not None else signal.SIG_DFL)


OWNER = SignalOwner()
"""The process's signal owner: every part of wattload registers here, none calls ``signal.signal`` itself."""


@contextlib.contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """Block the stop signals (and SIGINT) while starting helper processes (workers): ``timeout``, systemd and a
    closed tmux pane signal the whole process group, and a child that inherits the mask never acts on them, so
    the parent alone decides how its children stop. A signal that arrives meanwhile is delivered to us on exit."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {*STOP_SIGNALS, SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)

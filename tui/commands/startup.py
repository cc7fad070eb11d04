"""Open the dashboard at once and start the session behind it: shared by `demo` and `run`.

Starting a session takes seconds (a simulated server's process, probing the endpoint, calibrating the input
length, worker processes). The dashboard opens first over a ``DeferredControl`` that shows what startup is doing;
``start`` runs on a thread, says each step (``Startup.say``), and returns the controller, which is then handed
over. A ``UserError`` (or any failure) becomes the dashboard's failure box in one line, and the same line is
printed once the terminal is restored, with exit code 2, as the headless run would print it.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from engine.cli.common import sigint_blocked, start_recording_or_fail
from engine.cli.exits import EXIT_USER, UserError
from engine.cli.session_end import track_recordings
from engine.load.deferred import DeferredControl
from engine.redact import redact_url
from engine.reports.clock import wall_clock_label

if TYPE_CHECKING:
    from engine.load.controller import Controller

FIRST_FRAME_WAIT_S = 3.0  # heavy startup work begins after the dashboard's first frame, or this long at the latest
JOIN_S = 60.0  # how long leaving waits for a startup still probing (its timeouts bound it)


@dataclass
class Startup:
    """What the starting thread shares with the command: where to say things, what to close at the end."""

    deferred: DeferredControl
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    first_frame: threading.Event = field(default_factory=threading.Event)
    notes: list[str] = field(default_factory=list)  # printed after the dashboard closes (the terminal is its)
    recordings: list[str] = field(default_factory=list)
    failure: str = ""
    started_at: str = ""

    def say(self, line: str) -> None:
        """A startup step ("probing …"): shown in the dashboard."""
        self.deferred.say(line)

    def note(self, line: str) -> None:
        """Something the operator should keep (a calibration result, a fallback): shown now, printed after."""
        self.deferred.say(line)
        self.notes.append(line)

    def wait_for_first_frame(self) -> None:
        """Before import-heavy work: it would hold the GIL while the dashboard draws its first frame."""
        self.first_frame.wait(FIRST_FRAME_WAIT_S)


@dataclass(frozen=True)
class Started:
    code: int
    controller: Controller | None
    startup: Startup


def run_with_startup(start: Callable[[Startup], Controller], *, record: str | None, refresh_hz: float,
                     step: float | None, model: str = "", workload: str = "",
                     theme: str | None = None) -> Started:  # fmt: skip
    """Open the dashboard, run ``start`` on a thread and hand its controller to the dashboard; returns when the
    dashboard has closed and everything ``start`` put on ``startup.stack`` is closed."""
    from tui.app import run_tui

    startup = Startup(DeferredControl(model=model, workload=workload))
    deferred = startup.deferred

    def starting() -> None:
        try:
            controller = start(startup)
            startup.recordings = track_recordings(controller)  # the files r opens, for the end summary
            if record is not None:
                start_recording_or_fail(controller, record)
            deferred.attach(controller, endpoint=redact_url(controller.config.base_url), model=controller.config.model)
        except UserError as exc:
            startup.failure = str(exc)
            deferred.fail(startup.failure)
        except Exception as exc:  # one line in the dashboard's failure box, never a traceback over it
            startup.failure = f"startup failed: {exc}".splitlines()[0]
            deferred.fail(startup.failure)

    DeferredControl.prepare_process_spawning()
    starter = threading.Thread(target=starting, name="wattload-start", daemon=True)
    starter.start()
    startup.started_at = wall_clock_label()
    try:
        code = run_tui(deferred, refresh_hz=refresh_hz, step=step, first_frame=startup.first_frame, theme=theme)
    finally:
        deferred.close()
        starter.join(JOIN_S)
        deferred.close()  # attached while the dashboard was closing: attach() closed it already
        with sigint_blocked():
            startup.stack.close()
    for line in startup.notes:
        print(f"wattload: {line}", file=sys.stderr)
    if startup.failure and deferred.target is None:
        print(f"wattload: {startup.failure}", file=sys.stderr)
        code = EXIT_USER
    return Started(code, cast("Controller | None", deferred.target), startup)

"""What a live session leaves on the terminal once it ends, headless or after the dashboard closes: the summary
table, where its recordings went and where --json wrote the report. The dashboard clears its screen on exit, so
without this nothing of a run would remain in the scrollback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from engine.cli.exits import UserError


def track_recordings(controller: Any) -> list[str]:
    """Remember every file the controller starts recording to (``r``, --record); returns the list it fills.
    Wraps the instance's public ``start_recording``, reading ``recording_path`` after each call."""
    paths: list[str] = []
    original: Callable[..., str] = controller.start_recording

    def start_recording(path: str | None = None) -> str:
        message = original(path)
        current = getattr(controller, "recording_path", None)
        if current and current not in paths:
            paths.append(str(current))
        return message

    setattr(controller, "start_recording", start_recording)  # noqa: B010 (an instance attribute, on purpose)
    return paths


def distributed_fields(controller: Any) -> dict[str, Any]:
    """The --json fields of a --ray run (worker_lost, per-worker health); empty for local worker processes."""
    health = getattr(controller, "worker_health", None)
    if health is None:
        return {}
    return {"worker_lost": controller.worker_lost, "unsent_after_loss": controller.unsent_after_loss,
            "workers": health}


def print_session_end(controller: Any, *, started_at: str, recordings: list[str], json_path: str | None = None,
                      interrupted: bool = False, sim_url: str | None = None) -> None:
    """The summary the headless run prints, the recordings and the JSON report (stdout; notes on stderr)."""
    from engine.reports.summary import RunReport, format_summary, worker_lines, write_report

    final = controller.latest
    print(format_summary(final, stop_reason=controller.stop_reason, cancelled=controller.cancelled_at_stop,
                         gpu_note=controller.gpu_message))  # fmt: skip
    for line in worker_lines(controller):
        print(line)
    for path in dict.fromkeys(recordings):
        print(f"  recording   {path}  (wattload replay {path} · wattload report {path})")
    if sim_url:
        print(f"  endpoint    the simulated server at {sim_url} has stopped")
    if json_path:
        report = RunReport(
            started_at=started_at,
            state=final.state.value,
            stop_reason=controller.stop_reason,
            interrupted=interrupted,
            cancelled_at_stop=controller.cancelled_at_stop,
            **distributed_fields(controller),
            settings=controller.config.safe_dump(),
            pricing=final.cost.profile or None,
            result=final,
        )
        try:
            write_report(report, json_path)
        except OSError as exc:
            raise UserError(f"cannot write {json_path}: {exc.strerror}") from None
        print(f"  report      {json_path}")
    sys.stdout.flush()

"""`wattload report FILE [FILE2]`: the session split into phases at its control events, with steady-state
figures per phase (markdown, CSV or JSON); with two files, the two compared phase by phase. Headless."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine.cli.exits import UserError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "report",
        help="phase report of a recording, or two recordings compared phase by phase",
        description="Split a recording into phases at its load steps, power-cap steps and pauses; per phase: "
        "requests, tokens/s, TTFT and TPOT p50/p99, error rate, mean watts, J per output token and $/M tokens, over "
        "the phase's steady part (its first min(window, 20%) is warm-up). Two files: side by side, with a warning "
        "when they were not measured the same way.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="one recording, or two to compare (A B)")
    p.add_argument("--format", "-f", choices=("md", "csv", "json"), default="md", help="output format (default md)")
    p.add_argument("--output", "-o", metavar="PATH", help="write here instead of stdout")
    p.add_argument("--html", metavar="OUT.html",
                   help="one self-contained HTML file with charts (a recording or a sweep --json result)")  # fmt: skip
    p.add_argument("--png", metavar="DIR", help="with --html: also write every chart as a PNG into DIR")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from engine.reports.render import render_comparison, render_report
    from engine.reports.report import build_report, compare
    from engine.storage.reader import open_recording
    from engine.storage.store import RecordingError

    if args.png and not args.html:
        raise UserError("--png goes with --html")
    if args.html:
        return _html(args)
    if len(args.files) > 2:
        raise UserError("give one recording, or two to compare")
    reports = []
    for name in args.files:
        try:
            with open_recording(name) as rec:
                reports.append(build_report(rec))
        except RecordingError as exc:
            raise UserError(str(exc)) from None
    if len(reports) == 1:
        text = render_report(reports[0], args.format)
    else:
        text = render_comparison(compare(reports[0], reports[1]), args.format)
    for report in reports:
        for warning in report.warnings:
            print(f"wattload: {Path(report.file).name}: {warning}", file=sys.stderr)
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UserError(f"{args.output}: cannot write ({exc.strerror})") from None
    else:
        sys.stdout.write(text)
    return 0


def _html(args: argparse.Namespace) -> int:
    """The HTML report (and PNG charts) of one recording or sweep result."""
    from engine.reports.html import ReportInputError, write_html

    if len(args.files) != 1:
        raise UserError("--html takes one recording or one sweep result")
    try:
        charts = write_html(args.files[0], args.html, args.png)
    except ReportInputError as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"{exc.filename or args.html}: {exc.strerror or exc}") from None
    print(f"wattload: wrote {args.html} ({len(charts)} charts)", file=sys.stderr)
    return 0

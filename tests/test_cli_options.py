"""The flags every command shares: one name each, choices and defaults read from the config models."""

import argparse

import pytest

from engine.cli.common import config_from_args
from engine.config import RunConfig
from engine.gpu.base import BACKEND_KINDS
from tui.cli import build_parser


def _option(parser: argparse.ArgumentParser, command: str, flag: str) -> argparse.Action:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return next(a for a in sub.choices[command]._actions if flag in a.option_strings)


def test_run_defaults_are_run_config_defaults():
    args = build_parser().parse_args(["run", "http://127.0.0.1:9/v1"])
    config = config_from_args(args)
    fields = ("concurrency", "rate", "step", "input_tokens", "max_tokens", "window_s", "tick_hz", "seed", "api")
    assert {f: getattr(config, f) for f in fields} == {f: RunConfig.model_fields[f].default for f in fields}


@pytest.mark.parametrize("command", ["run", "demo", "sweep", "replay"])
def test_every_gpu_flag_offers_every_backend(command):
    assert tuple(_option(build_parser(), command, "--gpu").choices) == BACKEND_KINDS


def test_gpu_command_takes_gpu_like_the_others_and_still_accepts_backend():
    parser = build_parser()
    assert parser.parse_args(["gpu", "--gpu", "fake"]).backend == "fake"
    assert parser.parse_args(["gpu", "--backend", "sim"]).backend == "sim"


def test_demo_flags_match_run():
    parser = build_parser()
    args = parser.parse_args(["demo", "--record", "--profile", "chat-short", "--record-dir", "d"])
    assert (args.record, args.profile, args.record_dir) == ("", "chat-short", "d")
    assert "default 4" in _option(parser, "demo", "--step").help
    assert parser.parse_args(["run", "--sim", "--record-dir", "d"]).record_dir == "d"
    assert parser.parse_args(["sweep", "--sim", "--headless"]).headless is True


def test_sweep_help_shows_a_plain_percent(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sweep", "--help"])
    out = capsys.readouterr().out
    assert "errors pass 10%," in out and "%%" not in out

"""Explicit flags win over a profile: `--api responses --profile chat-short` sends the Responses API, and so on for
every profile field a flag also sets. Real parsing, and one real run against a server that keeps request bodies."""

import json

import pytest
from conversation_server import conversation_server

from engine.cli.common import profile_from_args
from engine.cli.exits import UserError
from engine.workload.distributions import Fixed
from tui.cli import build_parser, main


def _loaded(*argv: str):
    return profile_from_args(build_parser().parse_args(["run", "--sim", *argv]))


def test_a_profile_alone_keeps_its_own_fields():
    loaded = _loaded("--profile", "chat-short")
    p = loaded.profile
    assert (p.api, p.ignore_eos, p.seed, p.input, p.output) == ("chat", True, None, Fixed(value=128), Fixed(value=128))


def test_every_flag_given_beside_a_profile_replaces_that_field():
    loaded = _loaded("--profile", "chat-short", "--api", "completions", "--seed", "7", "--input-tokens", "300",
                     "--max-tokens", "40")  # fmt: skip
    p = loaded.profile
    assert (p.api, p.seed, p.input, p.output) == ("completions", 7, Fixed(value=300), Fixed(value=40))
    assert loaded.info().profile["api"] == "completions"  # what results store is what was sent
    # a flag equal to its default still counts as given: `--api chat` beats a completions profile
    assert _loaded("--profile", "chat-short", "--api", "chat").profile.api == "chat"


def test_ignore_eos_flag_wins_over_a_profile_that_turns_it_off(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('api = "completions"\ninput = 64\noutput = 32\nignore_eos = false\n')
    assert _loaded("--profile", str(path)).profile.ignore_eos is False
    assert _loaded("--profile", str(path), "--ignore-eos").profile.ignore_eos is True


def test_lengths_cannot_replace_a_dataset_and_say_so(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "hello there"}\n{"prompt": "and again"}\n')
    path = tmp_path / "p.toml"
    path.write_text(f'dataset = "{data}"\n')
    with pytest.raises(UserError, match=r"--input-tokens cannot apply .* its lengths come from its dataset"):
        _loaded("--profile", str(path), "--input-tokens", "100")


def test_a_session_profile_takes_max_tokens_for_every_turn(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("input = 64\noutput = 32\n[session]\nturns = 3\ninput = 16\noutput = 8\n")
    session = _loaded("--profile", str(path), "--max-tokens", "20").profile.session
    assert session is not None and session.output == Fixed(value=20) and session.input == Fixed(value=16)


@pytest.mark.slow
def test_run_with_api_and_profile_sends_the_api_of_the_flag(tmp_path, capsys):
    out = tmp_path / "r.json"
    with conversation_server() as server:
        code = main(["run", server.url, "--headless", "--profile", "chat-short", "--api", "responses", "-n", "3",
                     "-c", "1", "--workers", "1", "--no-calibrate", "--json", str(out)])  # fmt: skip
        bodies = list(server.bodies)
    assert code == 0, capsys.readouterr().err
    sent = [b for b in bodies if b.get("stream")]
    assert len(sent) >= 3 and all("input" in b and "messages" not in b for b in sent), sent[:2]
    report = json.loads(out.read_text())
    assert report["settings"]["api"] == "responses"
    assert report["workload"]["profile"]["api"] == "responses"

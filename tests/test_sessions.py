"""Multi-turn sessions: each turn resends the conversation with the server's answers; TTFT per turn on the
simulator's prefix cache; per-turn figures in the --json report."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conversation_server import conversation_server
from engine_helpers import CollectingSink, config, run_to_end, sim_server

from engine.load.controller import Controller
from engine.metrics.turns import TurnTally
from engine.session.workload_setup import apply_profile, calibrated_factory
from engine.workload.profile import ProfileError, load_profile
from engine.workload.sessions import SessionFactory

pytestmark = pytest.mark.slow

SESSION_TOML = """
input = {input}
output = 16
[session]
turns = 3
input = 60
output = 16
"""


def _profile(tmp_path, text):
    path = tmp_path / "session.toml"
    path.write_text(text)
    return load_profile(str(path))


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_each_turn_sends_the_whole_conversation_with_the_servers_answers(tmp_path, api):
    loaded = _profile(tmp_path, SESSION_TOML.format(input=40).replace('input = 40', f'api = "{api}"\ninput = 40'))
    with conversation_server() as server:
        cfg = apply_profile(config(server.url, model="conv-model", concurrency=1, max_requests=3), loaded)
        factory, _ = calibrated_factory(cfg, loaded)
        assert isinstance(factory, SessionFactory)
        sink = CollectingSink()
        run_to_end(Controller(cfg, request_factory=factory, sinks=[sink]), timeout_s=60)
        bodies = [b for b in server.bodies if b.get("max_tokens", b.get("max_output_tokens")) != 1]  # not probes
        answers = server.answers[len(server.bodies) - len(bodies) :]
    key = "input" if api == "responses" else "messages"
    convo = [b[key] for b in bodies[:3]]
    assert [len(c) for c in convo] == [1, 3, 5]  # user; user, assistant, user; ...
    for k in (1, 2):
        assert convo[k][: len(convo[k - 1])] == convo[k - 1], "a turn must resend the turns before it unchanged"
        assert convo[k][len(convo[k - 1])] == {"role": "assistant", "content": answers[k - 1]}
        assert convo[k][-1]["role"] == "user" and convo[k][-1]["content"] != convo[k - 1][-1]["content"]
    assert sorted(r.turn for r in sink.records) == [1, 2, 3]


def _turn_ttft(url: str, loaded, requests: int) -> dict[int, float]:
    cfg = apply_profile(config(url, concurrency=2, max_requests=requests), loaded)
    factory, _ = calibrated_factory(cfg, loaded)
    tally = TurnTally()
    run_to_end(Controller(cfg, request_factory=factory, sinks=[tally]), timeout_s=90)
    return {f.turn: f.ttft_p50_ms for f in tally.figures() if f.ttft_p50_ms is not None}


def test_the_simulators_prefix_cache_makes_later_turns_faster(tmp_path):
    """A 1,500-token opening costs ~75 ms of prefill; turn 2 resends it and adds ~90 tokens, so with the cache it
    computes only those. Without the cache turn 2 prefills all of it again."""
    loaded = _profile(tmp_path, SESSION_TOML.format(input=1500))
    with sim_server(speed=1) as url:
        cached = _turn_ttft(url, loaded, 18)
    with sim_server(speed=1, prefix_cache_tokens=0) as url:
        uncached = _turn_ttft(url, loaded, 18)
    assert set(cached) == set(uncached) == {1, 2, 3}
    assert cached[2] < 0.6 * cached[1], cached
    assert cached[2] < 0.6 * uncached[2], (cached, uncached)


def test_headless_run_prints_and_writes_figures_per_turn(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(SESSION_TOML.format(input=200))
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "tui.cli", "run", "--sim", "--headless", "--profile", str(path),
                           "-c", "2", "-n", "12", "--json", str(out), "--workers", "1"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "per turn" in proc.stdout and "turn 3" in proc.stdout
    turns = json.loads(out.read_text())["turns"]
    assert [t["turn"] for t in turns] == [1, 2, 3]
    assert sum(t["requests"] + t["errors"] for t in turns) == 12
    assert turns[2]["mean_input_tokens"] > turns[1]["mean_input_tokens"] > turns[0]["mean_input_tokens"]


def test_a_bad_session_section_is_one_line(tmp_path):
    with pytest.raises(ProfileError, match=r"session\.toml:\d+: session: think_time_max_s must be >= think_time_s"):
        _profile(tmp_path, "[session]\nthink_time_s = 2\nthink_time_max_s = 1\n")

"""ShareGPT datasets: first turns as prompts, whole conversations as sessions, fingerprints, bad files."""

from __future__ import annotations

import hashlib
import json

import pytest
from conversation_server import conversation_server
from engine_helpers import CollectingSink, config, run_to_end

from engine.load.controller import Controller
from engine.session.workload_setup import apply_profile, calibrated_factory
from engine.workload.profile import ProfileError, load_profile
from engine.workload.sessions import SessionFactory

CONVERSATIONS = [
    {"id": "a", "conversations": [{"from": "human", "value": "What is a watt?"},
                                  {"from": "gpt", "value": "A joule per second." * 4},
                                  {"from": "human", "value": "And a joule?"},
                                  {"from": "gpt", "value": "A newton metre."}]},
    {"id": "b", "conversations": [{"from": "gpt", "value": "orphan answer"}]},  # no human turn: skipped
    {"id": "c", "conversations": [{"from": "human", "value": "Name a prime."}, {"from": "gpt", "value": "Seven."}]},
]  # fmt: skip


def _write(tmp_path, sessions: bool, data: object = CONVERSATIONS):
    (tmp_path / "sg.json").write_text(json.dumps(data, indent=1))
    (tmp_path / "p.toml").write_text(f'dataset = "sg.json"\ndataset_sessions = {str(sessions).lower()}\n')
    return load_profile(str(tmp_path / "p.toml"))


def test_first_human_turns_become_prompts_with_the_answers_length(tmp_path):
    loaded = _write(tmp_path, sessions=False)
    assert loaded.dataset is not None and [e.prompt for e in loaded.dataset] == ["What is a watt?", "Name a prime."]
    assert [e.output_tokens for e in loaded.dataset] == [round(76 / 4), round(6 / 4)]  # characters / 4
    fp = loaded.data
    assert fp is not None and fp.kind == "sharegpt" and fp.rows == 2
    assert fp.sha256 == hashlib.sha256((tmp_path / "sg.json").read_bytes()).hexdigest()
    assert fp.skipped == {"no human turn answered by gpt": 1}
    assert loaded.info().data == fp  # results and recordings carry it


def test_whole_conversations_replay_as_sessions_with_the_servers_answers(tmp_path):
    loaded = _write(tmp_path, sessions=True)
    assert loaded.conversations is not None and [len(c) for c in loaded.conversations] == [2, 1]
    with conversation_server() as server:
        cfg = apply_profile(config(server.url, model="conv-model", concurrency=1, max_requests=3), loaded)
        factory, calibration = calibrated_factory(cfg, loaded)
        assert isinstance(factory, SessionFactory) and calibration is None
        sink = CollectingSink()
        run_to_end(Controller(cfg, request_factory=factory, sinks=[sink]), timeout_s=60)
        bodies, answers = server.bodies, server.answers
    first, second = bodies[0]["messages"], bodies[1]["messages"]
    assert first == [{"role": "user", "content": "What is a watt?"}]
    assert second == [*first, {"role": "assistant", "content": answers[0]}, {"role": "user", "content": "And a joule?"}]
    assert bodies[1]["max_tokens"] == round(len("A newton metre.") / 4)
    assert bodies[2]["messages"] == [{"role": "user", "content": "Name a prime."}]
    assert [r.turn for r in sink.records] == [1, 2, 1]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"id": 1, "conversations": [', "not a ShareGPT JSON array"),
        ("[]", "no usable conversations"),
    ],
)
def test_bad_files_are_one_line(tmp_path, content, message):
    (tmp_path / "sg.json").write_text(content)
    (tmp_path / "p.toml").write_text('dataset = "sg.json"\n')
    with pytest.raises(ProfileError, match=message) as info:
        load_profile(str(tmp_path / "p.toml"))
    assert "\n" not in str(info.value) and "sg.json" in str(info.value)


def test_only_dataset_rows_conversations_are_kept(tmp_path):
    many = [{"id": i, "conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": "a"}]}
            for i in range(50)]  # fmt: skip
    (tmp_path / "sg.json").write_text(json.dumps(many))
    (tmp_path / "p.toml").write_text('dataset = "sg.json"\ndataset_rows = 20\n')
    loaded = load_profile(str(tmp_path / "p.toml"))
    assert loaded.dataset is not None and len(loaded.dataset) == 20
    assert loaded.data is not None and loaded.data.skipped == {"beyond the first 20 conversations": 30}


def test_jsonl_datasets_are_fingerprinted_too(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"prompt": "hello there", "output_tokens": 5}\n{"prompt": "hi"}\n')
    (tmp_path / "p.toml").write_text('dataset = "d.jsonl"\n')
    loaded = load_profile(str(tmp_path / "p.toml"))
    assert loaded.data is not None and loaded.data.kind == "jsonl" and loaded.data.rows == 2
    assert loaded.data.sha256 == loaded.dataset_sha256

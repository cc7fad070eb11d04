"""The profile-driven request factory: body shapes, lengths from the token model, prefixes, datasets, pickling."""

import pickle
import random
from pathlib import Path

from engine.workload.calibration import TokenModel
from engine.workload.profile import load_profile
from engine.workload.prompts import ProfileRequestFactory, build_factory
from engine.workload.synthetic import RequestFactory, request_rng

DATA = Path(__file__).parent / "data" / "workloads"


def _profile(tmp_path, text, name="p.toml"):
    path = tmp_path / name
    path.write_text(text)
    return load_profile(str(path))


def test_chat_requests_carry_system_prompt_and_calibrated_word_count(tmp_path):
    loaded = _profile(tmp_path, 'input = 300\noutput = 40\nsystem_prompt = "Be brief."\n')
    model = TokenModel(overhead_tokens=20, tokens_per_word=2.0)
    factory = build_factory(loaded, model)
    assert isinstance(factory, RequestFactory)
    spec = factory.make(0, random.Random(1))
    messages = spec.fields["messages"]
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert messages[1]["role"] == "user"
    assert len(messages[1]["content"].split()) == model.words_for(300) == 140
    assert spec.max_tokens == 40 and spec.input_tokens == 300


def test_completions_requests_send_a_prompt(tmp_path):
    loaded = _profile(tmp_path, 'api = "completions"\ninput = 50\noutput = 8\nsystem_prompt = "Context:"\n')
    spec = build_factory(loaded, TokenModel(tokens_per_word=1.0)).make(3, random.Random(2))
    assert set(spec.fields) == {"prompt"}
    assert spec.fields["prompt"].startswith("Context:\n\n")


def test_lengths_follow_the_distributions_and_the_seed(tmp_path):
    loaded = _profile(
        tmp_path,
        'input = { kind = "uniform", min = 100, max = 400 }\noutput = { kind = "empirical", values = [16, 32, 64] }\n',
    )
    factory = build_factory(loaded, TokenModel(tokens_per_word=1.0))
    a = [factory.make(i, request_rng(7, 0, i)) for i in range(50)]
    b = [factory.make(i, request_rng(7, 0, i)) for i in range(50)]
    assert [s.fields for s in a] == [s.fields for s in b]
    assert {s.max_tokens for s in a} == {16, 32, 64}
    targets = [s.input_tokens for s in a]
    assert min(targets) >= 100 and max(targets) <= 400 and len(set(targets)) > 10
    for s in a:
        assert len(s.fields["messages"][-1]["content"].split()) == s.input_tokens
    c = [factory.make(i, request_rng(8, 0, i)) for i in range(50)]
    assert [s.fields for s in a] != [s.fields for s in c]


def test_shared_prefix_is_identical_within_a_group_and_differs_across_groups(tmp_path):
    loaded = _profile(tmp_path, "input = 200\noutput = 8\nshared_prefix_tokens = 100\nprefix_groups = 2\n")
    model = TokenModel(tokens_per_word=1.0, prefix_tokens=(100.0, 100.0))  # as calibration measures them
    factory = build_factory(loaded, model, seed=3)
    texts = [factory.make(i, random.Random(i)) for i in range(4)]
    words = [t.fields["messages"][0]["content"].split() for t in texts]
    assert all(len(w) == 200 for w in words)
    assert words[0][:100] == words[2][:100]  # seq 0 and 2: group 0
    assert words[1][:100] == words[3][:100]  # seq 1 and 3: group 1
    assert words[0][:100] != words[1][:100]
    assert words[0][100:] != words[2][100:]  # the rest is unique per request
    again = build_factory(loaded, model, seed=3)
    assert again.prefixes == factory.prefixes  # every worker builds the same prefix from the seed


def test_dataset_factory_cycles_lines_with_their_output_lengths():
    loaded = load_profile(str(DATA / "good_dataset.toml"))
    factory = build_factory(loaded)
    specs = [factory.make(i, random.Random(i)) for i in range(5)]
    assert [s.max_tokens for s in specs] == [40, 12, 20, 20, 40]  # per-line lengths, else the profile's output
    first = specs[0].fields["messages"]
    assert first[0] == {"role": "system", "content": "You are terse."}
    assert first[1]["content"].startswith("Summarise the plot of Hamlet")
    second = specs[1].fields["messages"]
    assert second[0] == {"role": "system", "content": "Be brief."}  # the line's own system turn is kept
    assert [m["role"] for m in specs[3].fields["messages"]] == ["system", "user", "assistant", "user"]


def test_dataset_conversations_flatten_for_completions(tmp_path):
    source = (DATA / "good_dataset.jsonl").read_text()
    (tmp_path / "d.jsonl").write_text(source)
    loaded = _profile(tmp_path, 'api = "completions"\noutput = 9\ndataset = "d.jsonl"\n')
    factory = build_factory(loaded)
    assert factory.make(0, random.Random(0)).fields == {"prompt": "Summarise the plot of Hamlet in three sentences."}
    prompt = factory.make(3, random.Random(0)).fields["prompt"]
    assert prompt.splitlines()[0] == "user: What is 2 + 2?"
    assert "assistant: 4" in prompt


def test_factory_survives_pickling_into_a_worker(tmp_path):
    loaded = _profile(tmp_path, 'input = { kind = "lognormal", mean = 300, std = 80 }\nshared_prefix_tokens = 50\n')
    factory = build_factory(loaded, TokenModel(overhead_tokens=9, tokens_per_word=1.7), seed=5)
    clone = pickle.loads(pickle.dumps(factory))
    assert isinstance(clone, ProfileRequestFactory)
    for i in range(10):
        assert clone.make(i, request_rng(1, 2, i)) == factory.make(i, request_rng(1, 2, i))

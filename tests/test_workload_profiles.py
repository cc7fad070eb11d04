"""Workload profiles and length distributions: built-ins, TOML parsing, one-line errors with file and line."""

import hashlib
import random
import shutil
import statistics
from pathlib import Path

import pytest
from pydantic import ValidationError

import profiles
from engine.workload.distributions import Empirical, LogNormal, Normal, Uniform
from engine.workload.profile import (
    WORKLOADS_DIR,
    ProfileError,
    available_profiles,
    load_dataset,
    load_profile,
)

DATA = Path(__file__).parent / "data" / "workloads"

BUILTIN_LENGTHS = {"chat-short": (128, 128), "chat": (512, 512), "rag": (2048, 256), "doc": (2048, 2048)}


@pytest.mark.parametrize(("name", "lengths"), BUILTIN_LENGTHS.items())
def test_builtin_profiles_have_the_documented_lengths(name, lengths):
    loaded = load_profile(name)
    p = loaded.profile
    assert p.name == name
    assert (p.input.expected(), p.output.expected()) == lengths
    assert loaded.path.parent == WORKLOADS_DIR.resolve()
    assert loaded.sha256 == hashlib.sha256(loaded.path.read_bytes()).hexdigest()


def test_builtin_profiles_are_found_through_the_installed_package():
    assert WORKLOADS_DIR == Path(profiles.__file__).parent / "workloads"
    assert {"chat-short", "chat", "rag", "doc", "code", "matrix"} <= set(available_profiles())
    for name in available_profiles():
        load_profile(name)  # every shipped profile is valid


def test_matrix_profile_has_sixteen_cells():
    p = load_profile("matrix").profile
    assert p.matrix is not None
    cells = [p.cell(i, o) for i in p.matrix.inputs for o in p.matrix.outputs]
    assert len(cells) == 16
    assert {(c.input.expected(), c.output.expected()) for c in cells} == {
        (i, o) for i in (128, 512, 1024, 2048) for o in (128, 512, 1024, 2048)
    }
    assert all(c.matrix is None and c.api == p.api for c in cells)
    assert cells[5].name == "matrix[512x512]"


def test_code_profile_uses_distributions_and_a_shared_prefix():
    p = load_profile("code").profile
    assert p.api == "completions"
    assert isinstance(p.input, LogNormal) and isinstance(p.output, LogNormal)
    assert p.shared_prefix_tokens == 512 and p.prefix_groups == 4


def test_unknown_profile_name_lists_the_available_ones():
    with pytest.raises(ProfileError) as exc:
        load_profile("no-such-profile")
    msg = str(exc.value)
    assert "no-such-profile" in msg
    for name in available_profiles():
        assert name in msg


def test_missing_profile_file_is_one_line():
    with pytest.raises(ProfileError, match=r"nowhere\.toml: no such workload profile file"):
        load_profile("/tmp/nowhere.toml")


BAD_FILES = [
    ("bad_negative_length.toml", "bad_negative_length.toml:4:", "output: must be at least 1 (got -5)"),
    ("bad_min_over_max.toml", "bad_min_over_max.toml:5:", "input: min (300) > max (200)"),
    ("bad_syntax.toml", "bad_syntax.toml:3:", "invalid TOML"),
    ("bad_unknown_kind.toml", "bad_unknown_kind.toml:1:", "'poisson'"),
    ("bad_unknown_key.toml", "bad_unknown_key.toml:3:", "max_tokenz: unknown key"),
    ("bad_api.toml", "bad_api.toml:1:", "got 'grpc'"),
    ("bad_prefix_too_long.toml", "bad_prefix_too_long.toml:3:", "shared_prefix_tokens (300)"),
    ("bad_dataset_json.toml", "bad_dataset_json.jsonl:3:", "not valid JSON"),
    ("bad_dataset_shape.toml", "bad_dataset_shape.jsonl:2:", 'exactly one of "prompt"'),
    ("bad_dataset_missing.toml", "bad_dataset_missing.toml:1:", "dataset: no such file"),
]


@pytest.mark.parametrize(("file", "where", "what"), BAD_FILES)
def test_bad_files_give_one_line_with_file_and_line(file, where, what):
    with pytest.raises(ProfileError) as exc:
        load_profile(str(DATA / file))
    msg = str(exc.value)
    assert "\n" not in msg
    assert where in msg, msg
    assert what in msg, msg
    assert isinstance(exc.value, ValueError)


def test_bad_files_cover_every_fixture():
    """Every bad_*.toml fixture is exercised (a new fixture without a test would prove nothing)."""
    assert {f for f, _, _ in BAD_FILES} == {p.name for p in DATA.glob("bad_*.toml")}


def test_content_hash_follows_the_file(tmp_path):
    path = tmp_path / "mine.toml"
    shutil.copy(WORKLOADS_DIR / "chat.toml", path)
    first = load_profile(str(path))
    path.write_text(path.read_text().replace("input = 512", "input = 500"))
    second = load_profile(str(path))
    assert first.sha256 != second.sha256
    assert second.profile.input.expected() == 500
    info = second.info()
    assert info.sha256 == second.sha256 and info.profile["input"] == {"kind": "fixed", "value": 500}
    assert info.name == "mine"


def test_inline_and_table_distributions(tmp_path):
    path = tmp_path / "mixed.toml"
    path.write_text(
        'api = "completions"\n'
        'output = { kind = "empirical", values = [16, 64], weights = [3, 1] }\n'
        "[input]\n"
        'kind = "normal"\n'
        "mean = 300\n"
        "std = 50\n"
        "min = 100\n"
        "max = 500\n"
    )
    p = load_profile(str(path)).profile
    assert isinstance(p.input, Normal) and p.input.bounds() == (100, 500)
    assert isinstance(p.output, Empirical) and p.output.expected() == pytest.approx(28.0)


def test_dataset_lines_and_aliases():
    loaded = load_profile(str(DATA / "good_dataset.toml"))
    assert loaded.dataset is not None and len(loaded.dataset) == 4  # the blank line is skipped
    first, second, third, fourth = loaded.dataset
    assert first.prompt is not None and first.output_tokens == 40
    assert second.messages is not None and second.output_tokens == 12  # max_tokens is read as output_tokens
    assert third.output_tokens is None
    assert fourth.messages is not None and len(fourth.messages) == 3
    assert loaded.dataset_sha256 == hashlib.sha256((DATA / "good_dataset.jsonl").read_bytes()).hexdigest()


def test_empty_dataset_is_an_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n\n")
    with pytest.raises(ProfileError, match=r"empty\.jsonl: the dataset has no prompts"):
        load_dataset(path)


# -- distributions -------------------------------------------------------------------------------------------


def _draw(dist, seed, n=5000):
    rng = random.Random(seed)
    return [dist.sample(rng) for _ in range(n)]


def test_sampling_is_reproducible_by_seed():
    d = LogNormal(mean=500, std=200)
    assert _draw(d, 1, 200) == _draw(d, 1, 200)
    assert _draw(d, 1, 200) != _draw(d, 2, 200)


def test_uniform_stays_in_bounds_and_centres():
    d = Uniform(min=10, max=20)
    xs = _draw(d, 3)
    assert min(xs) == 10 and max(xs) == 20
    assert statistics.fmean(xs) == pytest.approx(d.expected(), rel=0.02)


def test_lognormal_matches_its_mean_and_std():
    d = LogNormal(mean=800, std=300)
    xs = _draw(d, 4, 20000)
    assert statistics.fmean(xs) == pytest.approx(800, rel=0.03)
    assert statistics.pstdev(xs) == pytest.approx(300, rel=0.08)
    assert d.expected() == pytest.approx(statistics.fmean(xs), rel=0.02)


def test_normal_is_clipped_and_its_expected_mean_accounts_for_it():
    d = Normal(mean=20, std=30, min=5, max=60)
    xs = _draw(d, 5, 20000)
    assert min(xs) == 5 and max(xs) == 60
    assert d.expected() == pytest.approx(statistics.fmean(xs), rel=0.03)
    assert d.expected() > 20  # clipping the low tail raises the mean


def test_empirical_respects_weights():
    d = Empirical(values=[100, 1000], weights=[9, 1])
    xs = _draw(d, 6, 10000)
    assert xs.count(100) / len(xs) == pytest.approx(0.9, abs=0.02)


@pytest.mark.parametrize(
    "bad",
    [
        lambda: Uniform(min=5, max=4),
        lambda: Normal(mean=100, std=10, min=200, max=300),
        lambda: LogNormal(mean=-1, std=1),
        lambda: Empirical(values=[]),
        lambda: Empirical(values=[1, 2], weights=[1]),
        lambda: Empirical(values=[0, 2]),
    ],
)
def test_invalid_distributions_are_rejected(bad):
    with pytest.raises(ValidationError):
        bad()

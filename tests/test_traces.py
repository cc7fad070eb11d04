"""Trace files: detection by fields, streaming reads, one-line errors, windows, skips, fingerprints, hash_ids."""

from __future__ import annotations

import hashlib
import json
import shutil
import tracemalloc
from pathlib import Path

import pytest

from engine.workload.calibration import TokenModel
from engine.workload.traces import TraceError, TraceWindow, open_trace, scan_trace
from engine.workload.traces.requests import TraceFactory, prompt_words
from engine.workload.traces.rows import TraceRow

SAMPLES = Path(__file__).resolve().parents[1] / "profiles" / "traces"


@pytest.mark.parametrize(
    ("name", "fmt", "rows", "skipped"),
    [
        ("mooncake-sample.jsonl", "mooncake", 300, 0),
        ("azure-sample.csv", "azure", 300, 0),
        ("burstgpt-sample.csv", "burstgpt", 288, 12),
        ("bailian-sample.jsonl", "bailian", 242, 0),
    ],
)
def test_each_sample_is_detected_by_its_fields_and_counted(name, fmt, rows, skipped):
    source = open_trace(SAMPLES / name)
    assert source.format == fmt
    fp, skips = scan_trace(source)
    assert fp.rows == rows and skips.total == skipped
    assert fp.sha256 == hashlib.sha256((SAMPLES / name).read_bytes()).hexdigest()
    assert 0 < fp.input.min <= fp.input.mean <= fp.input.max
    assert fp.duration_s is not None and fp.duration_s > 20  # ~30 s of trace at ~10 req/s
    if skipped:
        assert "12 failed in the source (0 output tokens)" in skips.summary()


def test_detection_ignores_the_file_name(tmp_path):
    fake = tmp_path / "looks-like.csv"
    shutil.copy(SAMPLES / "mooncake-sample.jsonl", fake)
    assert open_trace(fake).format == "mooncake"


def test_an_unknown_format_names_its_fields(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("when,size\n1,2\n")
    with pytest.raises(TraceError, match=r"t\.csv:1: not a known trace format \(fields: size, when\)"):
        open_trace(path)


def _jsonl(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "trace.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(path: Path, **kw) -> list[TraceRow]:
    return list(open_trace(path).rows(**kw))


def test_unsorted_timestamps_name_the_row(tmp_path):
    path = _jsonl(tmp_path, [{"timestamp": t, "input_length": 10, "output_length": 5} for t in (0, 1500, 1200)])
    expected = r"trace\.jsonl:3: timestamp goes backwards \(0\.300 s before the previous row\)"
    with pytest.raises(TraceError, match=expected):
        _rows(path)


def test_negative_and_fractional_lengths_name_the_row(tmp_path):
    path = _jsonl(tmp_path, [{"timestamp": 0, "input_length": 10, "output_length": 5},
                             {"timestamp": 1, "input_length": -3, "output_length": 5}])  # fmt: skip
    with pytest.raises(TraceError, match=r"trace\.jsonl:2: input_length must be > 0 \(got -3\)"):
        _rows(path)
    path = _jsonl(tmp_path, [{"timestamp": 0, "input_length": 10.5, "output_length": 5}])
    with pytest.raises(TraceError, match=r"trace\.jsonl:1: input_length is not a whole number"):
        _rows(path)


def test_missing_fields_and_columns_name_them(tmp_path):
    path = _jsonl(tmp_path, [{"timestamp": 0, "input_length": 10, "output_length": 5},
                             {"timestamp": 1, "input_length": 10, "output_length": 5, "hash_ids": [1]},
                             {"timestamp": 2, "input_length": 10}])  # fmt: skip
    with pytest.raises(TraceError, match=r"trace\.jsonl:3: missing 'output_length'"):
        _rows(path)
    csv_path = tmp_path / "az.csv"
    csv_path.write_text("TIMESTAMP,GeneratedTokens,ContextTokens\n2024-01-01 00:00:00,5,10\n2024-01-01 00:00:01,5\n")
    with pytest.raises(TraceError, match=r"az\.csv:3: 2 cells, the header has 3"):
        _rows(csv_path)
    bad_header = tmp_path / "burst.csv"
    bad_header.write_text("Timestamp,Request tokens,Response tokens\n0.5,abc,3\n")
    with pytest.raises(TraceError, match=r"burst\.csv:2: Request tokens is not a number \('abc'\)"):
        _rows(bad_header)


def test_azure_datetimes_with_seven_fractional_digits_become_seconds_from_the_first_row(tmp_path):
    path = tmp_path / "az.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                    "2023-11-16 18:15:46.6805900,100,10\n2023-11-16 18:15:48.1805901,200,20\n")  # fmt: skip
    rows = _rows(path)
    assert [r.t_s for r in rows] == [0.0, pytest.approx(1.5, abs=1e-6)]
    assert [(r.input_tokens, r.output_tokens, r.row) for r in rows] == [(100, 10, 2), (200, 20, 3)]


def test_window_and_context_limit(tmp_path):
    path = _jsonl(tmp_path, [{"timestamp": 1000 * t, "input_length": 100 * (t + 1), "output_length": 10}
                             for t in range(10)])  # fmt: skip
    rows = _rows(path, window=TraceWindow.parse("2:5"))
    assert [r.t_s for r in rows] == [2.0, 3.0, 4.0]
    fp, skips = scan_trace(open_trace(path), TraceWindow.parse(":"), max_context=500)
    assert fp.rows == 4 and skips.counts == {"longer than the server's context": 6}
    assert "skipped 6 rows: 6 longer than the server's context (first at row 5)" == skips.summary()
    for bad in ("5", "5:2", "-1:3", "a:b"):
        with pytest.raises(ValueError, match="START"):
            TraceWindow.parse(bad)


def test_a_large_trace_streams_in_bounded_memory(tmp_path):
    """Peak memory of a pass does not grow with the file: 60,000 rows cost what 15,000 do."""

    def peak_of(n: int) -> int:
        path = tmp_path / f"big{n}.jsonl"
        with open(path, "w") as f:
            for i in range(n):
                f.write(f'{{"timestamp": {i * 5}, "input_length": {100 + i % 900}, "output_length": 64, '
                        f'"hash_ids": [{i % 50}, {i}]}}\n')  # fmt: skip
        tracemalloc.start()
        try:
            fp, _ = scan_trace(open_trace(path))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert fp.rows == n
        return peak

    small, large = peak_of(15_000), peak_of(60_000)  # both files exceed the 1 MiB hashing chunk
    assert large < 1.1 * small + 64 * 1024, (small, large)


def test_equal_hash_ids_give_identical_text_and_different_ids_do_not():
    model = TokenModel(overhead_tokens=10, tokens_per_word=2.0)
    a = TraceRow(row=2, t_s=0, input_tokens=1500, output_tokens=8, hash_ids=(7, 8, 9))
    b = TraceRow(row=3, t_s=0, input_tokens=1400, output_tokens=8, hash_ids=(7, 8, 42))
    wa, wb = prompt_words(a, model, seed=0), prompt_words(b, model, seed=0)
    block = 256  # 512 tokens at 2 tokens per word
    assert wa[: 2 * block] == wb[: 2 * block]
    assert wa[2 * block : 2 * block + 50] != wb[2 * block : 2 * block + 50]
    assert len(wa) == model.words_for(1500) and len(wb) == model.words_for(1400)
    other_seed = prompt_words(a, model, seed=1)
    assert other_seed[:block] != wa[:block]


def test_workers_share_the_rows_and_conversations_stay_on_one_worker():
    source = open_trace(SAMPLES / "mooncake-sample.jsonl")
    factory = TraceFactory(source, TokenModel())
    shares = [list(factory.timeline(w, 3)) for w in range(3)]
    assert sum(map(len, shares)) == 300
    assert sorted(r.row for s in shares for r in s) == list(range(1, 301))
    sessions = TraceFactory(open_trace(SAMPLES / "bailian-sample.jsonl"), TokenModel())
    assert len(list(sessions.timeline(0, 2))) == 242 and not list(sessions.timeline(1, 2))


@pytest.mark.parametrize("name", ["mooncake-sample.jsonl", "azure-sample.csv", "burstgpt-sample.csv"])
def test_a_later_pass_seeks_to_the_window_and_sees_the_same_rows(name):
    """The validating pass notes where the window starts; workers seek there instead of re-reading the file."""
    source = open_trace(SAMPLES / name)
    window = TraceWindow(12.0, 15.0)
    starts = []
    fp, _ = scan_trace(source, window, found=starts.append)
    (start,) = starts
    assert start.offset > 1000 and start.line > 50
    direct = list(source.rows(window, start=start))
    assert direct == list(source.rows(window)) and len(direct) == fp.rows > 5

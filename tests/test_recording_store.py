"""The recording's row codecs, secret scrubbing, schema text and file naming."""

from __future__ import annotations

import sqlite3
from datetime import datetime

import pytest

from engine.records import (
    ControlEvent,
    ErrorClass,
    EventKind,
    IntervalCounts,
    RequestRecord,
    StreamProgress,
    TelemetrySample,
)
from engine.storage.recorder import default_recording_path
from engine.storage.schema import TABLES, create_statements, schema_markdown
from engine.storage.store import (
    CorruptRow,
    Redactor,
    decode_event,
    decode_progress,
    decode_request,
    decode_telemetry,
    decode_token_times,
    decode_varints,
    encode_event,
    encode_progress,
    encode_request,
    encode_telemetry,
    encode_token_times,
    encode_varints,
)

T0 = 5_000_000_000_123  # an arbitrary perf_counter_ns session start, deliberately not a whole microsecond


def floor_us(t_ns: int) -> int:
    """What a stamp becomes after a round trip: ns since t0, floored to the microsecond."""
    return (t_ns - T0) // 1000 * 1000


def test_a_request_round_trips_to_the_microsecond():
    r = RequestRecord(worker=3, request_id=77, t_scheduled_ns=T0 + 1_000_000_555, t_start_ns=T0 + 1_000_200_999,
                      t_headers_ns=T0 + 1_020_000_001, t_first_token_ns=T0 + 1_080_123_456, t_end_ns=T0 + 2_500_000_789,
                      input_tokens=321, output_tokens=64, output_estimated=True, chunks=60, status=200,
                      response_id="cmpl-1", turn=4,
                      token_times_ns=tuple(T0 + 1_080_123_456 + k * 12_345_678 for k in range(64)),
                      t_first_output_ns=T0 + 1_480_000_321, reasoning_chunks=30)
    arrival = T0 + 2_600_000_000
    row = (1, *encode_request(r, arrival, T0))
    back = decode_request(row)
    assert back.t_scheduled_ns == floor_us(r.t_scheduled_ns)
    assert back.t_start_ns == floor_us(r.t_start_ns)
    assert back.t_headers_ns == floor_us(r.t_headers_ns)
    assert back.t_first_token_ns == floor_us(r.t_first_token_ns)
    assert back.t_end_ns == floor_us(r.t_end_ns)
    assert (back.t_first_output_ns, back.reasoning_chunks) == (floor_us(r.t_first_output_ns), 30)
    assert (back.worker, back.request_id, back.input_tokens, back.output_tokens, back.output_estimated, back.chunks,
            back.status, back.error, back.turn) == (3, 77, 321, 64, True, 60, 200, None, 4)
    assert row[1] == (arrival - T0) // 1000  # stored at its arrival: what the live aggregator saw when
    times = decode_token_times(encode_token_times(r, T0), back.t_scheduled_ns)
    assert times == tuple(floor_us(t) for t in r.token_times_ns)


def test_a_failed_request_round_trips_with_its_missing_stamps():
    r = RequestRecord(worker=0, request_id=1, t_scheduled_ns=T0, t_start_ns=T0, t_headers_ns=None,
                      t_first_token_ns=None, t_end_ns=T0 + 5_000_000, input_tokens=None, output_tokens=0,
                      output_estimated=False, chunks=0, status=None, error=ErrorClass.CONNECT)
    back = decode_request((9, *encode_request(r, T0 + 5_000_000, T0)), detail="connection refused")
    assert (back.t_headers_ns, back.t_first_token_ns, back.input_tokens, back.status) == (None, None, None, None)
    assert back.error is ErrorClass.CONNECT and back.error_detail == "connection refused"
    assert back.e2e_ns == 5_000_000


@pytest.mark.parametrize("change", [
    {3: "garbage"},  # e2e_us as text
    {3: -5},  # negative duration
    {14: "http_999"},  # unknown error class
    {1: 1.5},  # a REAL where an integer belongs
    {10: None},  # out_tok is NOT NULL
    {15: -1},  # a negative turn
    {15: None},  # turn is NOT NULL (0 for single requests)
    {16: "x"},  # ttfo_us as text
    {17: -1},  # negative reasoning chunks
])  # fmt: skip
def test_impossible_request_rows_are_corrupt(change):
    good = [1, 100, 0, 50, 0, 10, 20, 0, 1, 5, 4, 4, 0, 200, None, 0, 30, 2]
    decode_request(good)
    row = list(good)
    for i, v in change.items():
        row[i] = v
    with pytest.raises(CorruptRow):
        decode_request(row)


def test_varints_round_trip_and_reject_truncation():
    values = [0, 1, 127, 128, 16_383, 16_384, 2**40 + 5]
    data = encode_varints(values)
    assert decode_varints(data) == values
    assert len(encode_varints([12_000])) == 2  # a 12 ms gap costs two bytes
    with pytest.raises(CorruptRow):
        decode_varints(data[:-1])
    with pytest.raises(CorruptRow):
        decode_token_times("not bytes", 0)


def test_telemetry_progress_and_events_round_trip():
    full = TelemetrySample(t_ns=T0 + 3_000_000_000, gpu_index=2, power_w=412.5, power_instant_w=430.25,
                           energy_mj=123_456_789, sm_clock_mhz=1980, mem_clock_mhz=2619, temperature_c=61,
                           util_gpu_pct=97, util_mem_pct=40, mem_used_mib=70_000, mem_total_mib=81_559,
                           power_limit_w=600.0, enforced_limit_w=600.0, default_limit_w=700.0, min_limit_w=200.0,
                           max_limit_w=700.0, throttle_reasons=4, power_cap_binding=True)
    back = decode_telemetry((1, *encode_telemetry(full, full.t_ns, T0)))
    assert back == TelemetrySample(**{**{f: getattr(full, f) for f in full.__slots__}, "t_ns": floor_us(full.t_ns)})
    sparse = TelemetrySample(t_ns=T0 + 1_000, gpu_index=0)  # every field n/a stays n/a, never zero
    assert decode_telemetry((2, *encode_telemetry(sparse, sparse.t_ns, T0))) == TelemetrySample(1000, 0)

    p = StreamProgress(worker=1, t_ns=T0 + 7_000_000, chunks=33, in_flight=5, loop_lag_ms=2.345)
    assert decode_progress((1, *encode_progress(p, T0 + 9_000_000, T0))) == StreamProgress(1, 7_000_000, 33, 5, 2.345)
    # schema 3: first answer tokens like first tokens (µs), ITL bucket counts with their exact ns sum and extremes
    itl = IntervalCounts((700, 712, 1290), (3, 1, 2), 123_456_789, 4_321, 99_999_999)
    rich = StreamProgress(1, T0 + 7_000_000, 3, 2, 0.5, ((4, T0 + 6_000_000, T0 + 1_000_000),), 1, T0 + 2_000_000,
                          ((4, T0 + 6_500_000, T0 + 1_000_000),), itl)
    back = decode_progress((1, *encode_progress(rich, T0 + 9_000_000, T0)))
    assert back.first_outputs == ((4, 6_500_000, 1_000_000),) and back.itl == itl
    assert back.final is False
    row = list((1, *encode_progress(rich, T0 + 9_000_000, T0)))
    row[-2] = encode_varints([5, 9, 1])  # smallest above largest
    with pytest.raises(CorruptRow):
        decode_progress(row)
    row[-2] = encode_varints([5, 1, 9, 700])  # a bucket without its count
    with pytest.raises(CorruptRow):
        decode_progress(row)
    # schema 4: a worker's last tick says so (the window's edge stops waiting for it)
    last = StreamProgress(2, T0 + 8_000_000, 0, 0, 0.0, final=True)
    assert decode_progress((1, *encode_progress(last, T0 + 8_000_000, T0))) == StreamProgress(2, 8_000_000, 0, 0, 0.0,
                                                                                                 final=True)
    row = list((1, *encode_progress(last, T0 + 8_000_000, T0)))
    row[-1] = "1"
    with pytest.raises(CorruptRow):
        decode_progress(row)

    e = ControlEvent(t_ns=T0 + 2_000_000_000, kind=EventKind.POWER_CAP, value=450.0, gpu_index=1, readback=449.0)
    assert decode_event((1, *encode_event(e, e.t_ns + 10_000, T0, "cap"))) == ControlEvent(
        t_ns=floor_us(e.t_ns), kind=EventKind.POWER_CAP, value=450.0, gpu_index=1, readback=449.0, message="cap")
    with pytest.raises(CorruptRow):
        decode_event((1, 0, 0, "no_such_kind", None, None, None, ""))


def test_redactor_scrubs_known_values_and_secret_shapes():
    r = Redactor(["s3cr3t-key-value"])
    text = ("401 Unauthorized for key s3cr3t-key-value; Authorization: Bearer abcdef123456; "
            "http://alice:pa55@host:8000/v1?api_key=zzz&x=1 sk-proj-ABCDEFGHIJKLMNOP")
    clean = r.text(text)
    for secret in ("s3cr3t-key-value", "abcdef123456", "pa55", "zzz", "ABCDEFGHIJKLMNOP"):
        assert secret not in clean
    assert "x=1" in clean and "401 Unauthorized" in clean
    data = r.data({"api_key": "k", "headers": {"Authorization": "Bearer q"}, "max_tokens": 128,
                   "record_token_times": True, "nested": ["s3cr3t-key-value"]})
    assert data == {"api_key": "***", "headers": {"Authorization": "***"}, "max_tokens": 128,
                    "record_token_times": True, "nested": ["***"]}


def test_schema_doc_names_every_table_and_column_and_the_ddl_runs():
    doc = schema_markdown()
    for table in TABLES:
        assert f"### `{table.name}`" in doc
        for column in table.columns:
            assert f"| `{column.name}` |" in doc
    conn = sqlite3.connect(":memory:")
    for stmt in create_statements():
        conn.execute(stmt)
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert {t.name for t in TABLES} | {"requests_ms"} <= names


def test_default_recording_name_is_time_host_model_and_never_clobbers(tmp_path):
    when = datetime(2026, 11, 23, 8, 12)
    first = default_recording_path("meta-llama/Llama 3.1", host="gpu-box", when=when, directory=tmp_path)
    assert first.name == "20261123-0812_gpu-box_meta-llama-Llama-3.1.wattload.sqlite"
    first.write_bytes(b"")
    second = default_recording_path("meta-llama/Llama 3.1", host="gpu-box", when=when, directory=tmp_path)
    assert second.name == "20261123-0812_gpu-box_meta-llama-Llama-3.1-2.wattload.sqlite"


def test_statements_come_from_the_schema_and_every_codec_fills_its_columns():
    """INSERT/SELECT are generated from the Table/Column list, so a codec whose tuple is one short (or long) of
    its table fails here, not as a shifted column in someone's recording."""
    from engine.storage.schema import EVENTS, PROGRESS, REQUESTS, TELEMETRY
    from engine.storage.store import encode_event, encode_progress, encode_request, encode_telemetry

    assert REQUESTS.insert() == (
        "INSERT INTO requests (id, t_us, lag_us, e2e_us, wait_us, hdr_us, ttft_us, worker, rid, in_tok, out_tok, "
        "chunks, est, status, error, turn, ttfo_us, rchunks, detail) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
    )
    assert REQUESTS.column_list(skip=("detail",), version=2).endswith("status, error")  # schema 3 adds two
    assert PROGRESS.select(version=1) == "SELECT id, t_us, lag_us, worker, chunks, in_flight, loop_lag_us FROM progress"
    assert PROGRESS.select(version=2).endswith("loop_lag_us, waiting, wait_us, firsts FROM progress")  # 2 adds three
    assert PROGRESS.select(version=3).endswith("firsts, outputs, itl FROM progress")  # schema 3 adds two
    assert PROGRESS.select().endswith("outputs, itl, final FROM progress")  # schema 4 adds one
    assert EVENTS.insert(skip=("id",)).startswith("INSERT INTO events (t_us, ev_us, kind,")
    with pytest.raises(ValueError, match="no column 'nope'"):
        REQUESTS.select(skip=("nope",))

    t = 5_000_000_000
    request = RequestRecord(0, 1, t, t, t + 1_000, t + 2_000, t + 9_000, 10, 4, False, 4, 200)
    progress = StreamProgress(0, t, 3, 1, 0.1, ((1, t, t - 1_000),), 1, t - 2_000)
    sample = TelemetrySample(t, 0, power_w=300.0, energy_mj=5)
    event = ControlEvent(t, EventKind.CONCURRENCY, value=4.0)
    # the writer adds the request's id and detail reference; SQLite numbers the other tables' ids
    assert len(encode_request(request, t, 0)) == len(REQUESTS.names) - 2
    assert len(encode_progress(progress, t, 0)) == len(PROGRESS.names) - 1
    assert len(encode_telemetry(sample, t, 0)) == len(TELEMETRY.names) - 1
    assert len(encode_event(event, t, 0, "")) == len(EVENTS.names) - 1
    # telemetry columns are the sample's fields in the same order, watts stored as milliwatts
    fields = [f.replace("_w", "_mw") if f.endswith("_w") else f for f in TelemetrySample.__dataclass_fields__
              if f not in ("t_ns", "gpu_index")]  # fmt: skip
    assert list(TELEMETRY.names[4:]) == fields

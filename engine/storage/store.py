"""What a recording holds, as data: the pydantic metadata models, the row codecs and the secret scrubber.

Rows are encoded and decoded by hand-written tuple codecs, not pydantic: a one-hour recording holds ~200k request
rows and replay decodes them at hundreds of thousands per second; a decoder checks types itself and raises
``CorruptRow``, which the reader counts and skips. Metadata (read once per file) goes through pydantic.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engine.records import (
    ControlEvent,
    ErrorClass,
    EventKind,
    IntervalCounts,
    RequestRecord,
    StreamProgress,
    TelemetrySample,
)
from engine.redact import REDACTED as REDACTED  # the scrubber lives in engine/redact.py; re-exported
from engine.redact import Redactor as Redactor
from engine.storage.schema import FORMAT_TAG, SCHEMA_VERSION


class RecordingError(Exception):
    """A recording that cannot be opened or read (not a recording, newer schema, unreadable); one line."""


class CorruptRow(ValueError):
    """One row whose values cannot be a fact (wrong types, impossible values): skipped and counted."""


# ---------------------------------------------------------------------------------------------------- metadata


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")  # a newer minor writer may add keys; the schema version guards meaning


class SessionLabels(_Model):
    endpoint: str = ""
    model: str = ""
    workload: str = ""


class GpuLabel(_Model):
    index: int
    name: str = ""


class ClosedInfo(_Model):
    """Written when the recording ends cleanly."""

    t_us: int
    """The last fact's arrival (µs since t0)."""
    wall_end: str = ""
    requests: int = 0
    failed: str | None = None
    """Why the recording stopped early (disk full, ...), if it did."""


class RecordingMeta(_Model):
    """Everything the ``meta`` table holds, one key per field."""

    format: str = FORMAT_TAG
    schema_version: int = SCHEMA_VERSION
    wattload_version: str = ""
    wall_start: str = ""
    """Wall-clock start (ISO 8601 with offset): a label only, never used to compute a figure."""
    t0_ns: int = 0
    """perf_counter_ns at the session start; every stored time is relative to it."""
    host: str = ""
    session: SessionLabels = SessionLabels()
    config: dict[str, Any] = Field(default_factory=dict)
    """The run's settings (RunConfig.safe_dump()), secrets removed."""
    workload: dict[str, Any] | None = None
    pricing: dict[str, Any] | None = None
    system: dict[str, Any] | None = None
    gpus: list[GpuLabel] = Field(default_factory=list)
    telemetry_source: str = ""
    window_s: float = 10.0
    record_tokens: bool = False
    snapshot_interval_s: float = 10.0
    recorded_from_us: int = 0
    """Session time at which recording began (``r`` partway through): the session before it is not in the file,
    so replay starts there and no figure counts the span before it. 0: recorded from the start."""
    start_control: dict[str, Any] | None = None
    """The load settings in force when recording began (mode, concurrency, rate); None: the config's."""
    closed: ClosedInfo | None = None


# ---------------------------------------------------------------------------------------------------- codecs
# Stamps are quantised to whole microseconds since t0 *before* deltas are taken, so every decoded stamp is the
# original stamp floored to the microsecond (never an accumulation of rounding errors).


def _us(t_ns: int, t0_ns: int) -> int:
    return (t_ns - t0_ns) // 1000


def encode_request(r: RequestRecord, arrival_ns: int, t0_ns: int) -> tuple[Any, ...]:
    """The requests row without its id and detail reference (the writer interns the detail)."""
    end = _us(r.t_end_ns, t0_ns)
    sched = _us(r.t_scheduled_ns, t0_ns)
    arrival = max(_us(arrival_ns, t0_ns), end)
    return (
        arrival,
        arrival - end,
        end - sched,
        _us(r.t_start_ns, t0_ns) - sched,
        None if r.t_headers_ns is None else _us(r.t_headers_ns, t0_ns) - sched,
        None if r.t_first_token_ns is None else _us(r.t_first_token_ns, t0_ns) - sched,
        r.worker,
        r.request_id,
        r.input_tokens,
        r.output_tokens,
        r.chunks,
        1 if r.output_estimated else 0,
        r.status,
        None if r.error is None else r.error.value,
        r.turn,
        None if r.t_first_output_ns is None else _us(r.t_first_output_ns, t0_ns) - sched,
        r.reasoning_chunks,
    )


_ERRORS = {e.value: e for e in ErrorClass}


_OPT_INT = frozenset({int, type(None)})


def _ints(*values: Any) -> bool:
    return all(type(v) is int for v in values)


def _opt_ints(*values: Any) -> bool:
    return all(v is None or type(v) is int for v in values)


def decode_request(row: Sequence[Any], detail: str = "", token_times_ns: tuple[int, ...] = (),
                   response_id: str | None = None) -> RequestRecord:
    """A requests row (REQUESTS' columns without ``detail``) back into a record whose stamps are ns since t0.

    Hot path (every request of a replay): type checks are chained ``is`` tests and the record is built
    positionally, ~3 µs a row."""
    _id, t, lag, e2e, wait, hdr, ttft, worker, rid, in_tok, out_tok, chunks, est, status, error, turn, ttfo, rchunks = (
        row
    )
    if not (type(t) is type(lag) is type(e2e) is type(wait) is type(worker) is type(rid) is type(out_tok)
            is type(chunks) is type(est) is type(turn) is type(rchunks) is int and type(hdr) in _OPT_INT
            and type(ttft) in _OPT_INT and type(in_tok) in _OPT_INT and type(status) in _OPT_INT
            and type(ttfo) in _OPT_INT):
        raise CorruptRow("a requests row has a value of the wrong type")
    if e2e < 0 or out_tok < 0 or chunks < 0 or turn < 0 or rchunks < 0:
        raise CorruptRow("a requests row has a negative duration or count")
    if error is not None:
        error = _ERRORS.get(error)
        if error is None:
            raise CorruptRow("a requests row has an unknown error class")
    end = (t - lag) * 1000
    sched = end - e2e * 1000
    return RequestRecord(
        worker, rid, sched, sched + wait * 1000, None if hdr is None else sched + hdr * 1000,
        None if ttft is None else sched + ttft * 1000, end, in_tok, out_tok, est == 1, chunks, status, error,
        detail, response_id, token_times_ns, "", None, turn, None if ttfo is None else sched + ttfo * 1000, rchunks,
    )


def encode_varints(values: Iterable[int]) -> bytes:
    """Unsigned LEB128; negative values (impossible on a monotonic clock) are stored as 0."""
    out = bytearray()
    for v in values:
        v = max(0, v)
        while v >= 0x80:
            out.append((v & 0x7F) | 0x80)
            v >>= 7
        out.append(v)
    return bytes(out)


def decode_varints(data: bytes) -> list[int]:
    out: list[int] = []
    v = shift = 0
    for b in data:
        v |= (b & 0x7F) << shift
        if b & 0x80:
            shift += 7
            if shift > 63:
                raise CorruptRow("a token-time varint is too long")
        else:
            out.append(v)
            v = shift = 0
    if shift:
        raise CorruptRow("a token-time blob ends inside a varint")
    return out


def encode_token_times(r: RequestRecord, t0_ns: int) -> bytes:
    """Chunk arrival times: the first as µs after the scheduled time, then µs gaps."""
    sched = _us(r.t_scheduled_ns, t0_ns)
    times = [_us(t, t0_ns) for t in r.token_times_ns]
    return encode_varints([times[0] - sched, *(b - a for a, b in itertools.pairwise(times))])


def decode_token_times(blob: Any, t_scheduled_ns: int) -> tuple[int, ...]:
    if not isinstance(blob, bytes):
        raise CorruptRow("a token_times blob is not a BLOB")
    values = decode_varints(blob)
    if not values:
        return ()
    t = t_scheduled_ns // 1000 + values[0]
    out = [t * 1000]
    for gap in values[1:]:
        t += gap
        out.append(t * 1000)
    return tuple(out)


def encode_progress(p: StreamProgress, arrival_ns: int, t0_ns: int) -> tuple[Any, ...]:
    t = _us(p.t_ns, t0_ns)
    arrival = max(_us(arrival_ns, t0_ns), t)
    wait = None if p.waiting_since_ns is None else max(0, t - _us(p.waiting_since_ns, t0_ns))
    return (arrival, arrival - t, p.worker, p.chunks, p.in_flight, round(p.loop_lag_ms * 1000), p.waiting, wait,
            _encode_firsts(p.first_tokens, t, t0_ns), _encode_firsts(p.first_outputs, t, t0_ns),
            None if p.itl is None else _encode_itl(p.itl), int(p.final))


def _encode_firsts(firsts: tuple[tuple[int, int, int], ...], tick_us: int, t0_ns: int) -> bytes | None:
    if not firsts:
        return None
    values: list[int] = []
    for rid, first_ns, scheduled_ns in firsts:
        first = _us(first_ns, t0_ns)
        values += (rid, tick_us - first, first - _us(scheduled_ns, t0_ns))
    return encode_varints(values)


def _encode_itl(c: IntervalCounts) -> bytes:
    """Exact ns (not µs) for the sum and extremes: replay's ITL mean and max equal the live ones to the digit."""
    pairs = itertools.chain.from_iterable(zip(c.buckets, c.counts, strict=True))
    return encode_varints([c.sum_ns, c.min_ns, c.max_ns, *pairs])


def decode_progress(row: Sequence[Any]) -> StreamProgress:
    """A progress row (PROGRESS' columns; an older file's missing ones read as their defaults) back into a tick."""
    _id, t, lag, worker, chunks, in_flight, loop_lag, waiting, wait, blob, outputs, itl, final = row
    if not (type(t) is type(lag) is type(worker) is type(chunks) is type(in_flight) is type(loop_lag) is type(final)
            is int):
        raise CorruptRow("a progress row has a value of the wrong type")
    if type(waiting) is not int or type(wait) not in _OPT_INT or not all(
        b is None or isinstance(b, bytes) for b in (blob, outputs, itl)
    ):
        raise CorruptRow("a progress row has a value of the wrong type")
    tick = t - lag
    since = None if wait is None else (tick - wait) * 1000
    return StreamProgress(worker, tick * 1000, chunks, in_flight, loop_lag / 1000, _decode_firsts(blob, tick),
                          waiting, since, _decode_firsts(outputs, tick), _decode_itl(itl), bool(final))


def _decode_firsts(blob: bytes | None, tick_us: int) -> tuple[tuple[int, int, int], ...]:
    if not blob:
        return ()
    values = decode_varints(blob)
    if len(values) % 3:
        raise CorruptRow("a progress row's first tokens are cut short")
    out = []
    for i in range(0, len(values), 3):
        first = tick_us - values[i + 1]
        out.append((values[i], first * 1000, (first - values[i + 2]) * 1000))
    return tuple(out)


_MAX_BUCKET = 1 << 16  # far above the histogram's ~1,300 buckets (which clamps anything beyond its top one)


def _decode_itl(blob: bytes | None) -> IntervalCounts | None:
    if blob is None:
        return None
    values = decode_varints(blob)
    if len(values) < 3 or len(values) % 2 == 0:
        raise CorruptRow("a progress row's ITL counts are cut short")
    buckets, counts = tuple(values[3::2]), tuple(values[4::2])
    if any(b >= _MAX_BUCKET for b in buckets) or values[1] > values[2]:
        raise CorruptRow("a progress row's ITL counts are out of range")
    return IntervalCounts(buckets, counts, values[0], values[1], values[2])


_TELEMETRY_FIELDS = (
    "power_w", "power_instant_w", "energy_mj", "sm_clock_mhz", "mem_clock_mhz", "temperature_c", "util_gpu_pct",
    "util_mem_pct", "mem_used_mib", "mem_total_mib", "power_limit_w", "enforced_limit_w", "default_limit_w",
    "min_limit_w", "max_limit_w", "throttle_reasons", "power_cap_binding",
)
_WATT_FIELDS = frozenset({"power_w", "power_instant_w", "power_limit_w", "enforced_limit_w", "default_limit_w",
                          "min_limit_w", "max_limit_w"})


def encode_telemetry(s: TelemetrySample, arrival_ns: int, t0_ns: int) -> tuple[Any, ...]:
    t = _us(s.t_ns, t0_ns)
    arrival = max(_us(arrival_ns, t0_ns), t)
    values: list[Any] = [arrival, arrival - t, s.gpu_index]
    for name in _TELEMETRY_FIELDS:
        v = getattr(s, name)
        if v is None:
            values.append(None)
        elif name in _WATT_FIELDS:
            values.append(round(v * 1000))
        elif name == "power_cap_binding":
            values.append(1 if v else 0)
        else:
            values.append(int(v))
    return tuple(values)


def _watts(v: int | None) -> float | None:
    return None if v is None else v / 1000


def _flag(v: int | None) -> bool | None:
    return None if v is None else bool(v)


def _same(v: int | None) -> int | None:
    return v


_TELEMETRY_DECODERS: tuple[Callable[[Any], Any], ...] = tuple(
    _watts if name in _WATT_FIELDS else _flag if name == "power_cap_binding" else _same for name in _TELEMETRY_FIELDS
)


def decode_telemetry(row: Sequence[Any]) -> TelemetrySample:
    _id, t, lag, gpu, *fields = row
    if not (type(t) is type(lag) is type(gpu) is int and len(fields) == len(_TELEMETRY_FIELDS)
            and all(type(v) in _OPT_INT for v in fields)):
        raise CorruptRow("a telemetry row has a value of the wrong type")
    return TelemetrySample((t - lag) * 1000, gpu, *(f(v) for f, v in zip(_TELEMETRY_DECODERS, fields, strict=True)))


_KINDS = {k.value: k for k in EventKind}


def encode_event(e: ControlEvent, arrival_ns: int, t0_ns: int, message: str) -> tuple[Any, ...]:
    t = _us(e.t_ns, t0_ns)
    return (max(_us(arrival_ns, t0_ns), t), t, e.kind.value, e.value, e.gpu_index, e.readback, message)


def decode_event(row: Sequence[Any]) -> ControlEvent:
    _id, t, ev, kind, value, gpu, readback, message = row
    if not (_ints(t, ev) and _opt_ints(gpu) and isinstance(message, str)) or kind not in _KINDS:
        raise CorruptRow("an events row has a value of the wrong type")
    for v in (value, readback):
        if v is not None and not isinstance(v, int | float):
            raise CorruptRow("an events row has a non-numeric value")
    return ControlEvent(t_ns=ev * 1000, kind=_KINDS[kind], value=None if value is None else float(value), gpu_index=gpu,
                        readback=None if readback is None else float(readback), message=message)

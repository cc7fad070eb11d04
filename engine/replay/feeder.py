"""Re-executes a recording through the live Aggregator: the facts go in at their recorded arrival times, and
snapshots are taken on the recording's clock, so every figure is computed by the same code the live run used.

A ``Feeder`` owns one aggregator and one forward cursor per fact table; it can save its state (a checkpoint: the
pickled aggregator and control state, zlib-compressed, a few tens of kB) and restore one, which is what makes
seeking in an hour-long recording take milliseconds instead of a re-read from the start.
"""

from __future__ import annotations

import io
import pickle
import threading
import zlib
from bisect import bisect_right
from typing import Any

import numpy as np
from pydantic import ValidationError

from engine.control import SessionMeta
from engine.metrics.aggregator import Aggregator
from engine.replay.timeline import apply_event, initial_control
from engine.snapshot import Snapshot
from engine.storage.reader import Recording

_LOCK_TYPES = (type(threading.Lock()), type(threading.RLock()))


def _dense(size: int, index: bytes, values: bytes) -> np.ndarray:
    out = np.zeros(size, dtype=np.int64)
    out[np.frombuffer(index, dtype=np.int32)] = np.frombuffer(values, dtype=np.int64)
    return out


class _StatePickler(pickle.Pickler):
    """Pickles an aggregator compactly: its histograms' bucket arrays (1,300 counts, nearly all zero) are saved
    as their non-zero entries, and locks (the energy account holds one) as new locks."""

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is np.ndarray and obj.dtype == np.int64 and obj.ndim == 1 and obj.size > 64:
            index = np.flatnonzero(obj)
            return (_dense, (obj.size, index.astype(np.int32).tobytes(), obj[index].tobytes()))
        if isinstance(obj, _LOCK_TYPES):
            return (threading.Lock, ())
        return NotImplemented


def dump_state(state: Any) -> bytes:
    buf = io.BytesIO()
    _StatePickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(state)
    return zlib.compress(buf.getvalue(), 1)


def load_state(blob: bytes) -> Any:
    return pickle.loads(zlib.decompress(blob))  # our own blobs, made in this process: never read from a file


def new_aggregator(rec: Recording, watermark: bool = True) -> tuple[Aggregator, list[str]]:
    """An aggregator set up like the live one was (window, GPUs, energy source, pricing), on the recording's clock
    (t0 = 0: every decoded stamp is ns since the session start). Returns it with any notes (unusable pricing).
    ``watermark=False``: the window ends at now, as before the edge (tests/bench/window_edge.py compares)."""
    m = rec.meta
    notes: list[str] = []
    energy = None
    if m.telemetry_source:
        from engine.gpu.energy import EnergyAccount

        energy = EnergyAccount(names={g.index: g.name for g in m.gpus}, source=m.telemetry_source)
    pricing = None
    if m.pricing:
        from engine.pricing import PricingProfile

        try:
            pricing = PricingProfile.model_validate(m.pricing)
        except ValidationError:
            notes.append("the recorded pricing profile is not readable by this version: no cost figures")
    meta = SessionMeta(endpoint=m.session.endpoint, model=m.session.model, workload=m.session.workload,
                       source="replay", trace=isinstance(m.workload, dict) and "trace" in m.workload)
    workers = m.config.get("workers")  # waited for from the start, as the live window's edge did
    agg = Aggregator(t0_ns=0, window_s=m.window_s, meta=meta, energy=energy, pricing=pricing, gpu_count=len(m.gpus),
                     totals_from_ns=m.recorded_from_us * 1000, itl_from_ticks=rec.itl_on_ticks,
                     workers=workers if type(workers) is int and 0 < workers <= 4096 else 0,
                     watermark=watermark)  # fmt: skip
    return agg, notes


class Feeder:
    """Feeds one recording into one aggregator up to a position (µs since t0), forward only; ``restore`` jumps."""

    def __init__(self, rec: Recording) -> None:
        self.rec = rec
        self.notes: list[str] = []
        self._requests = rec.cursor("requests")
        self._progress = rec.cursor("progress")
        self._telemetry = rec.cursor("telemetry")
        self._events = rec.events()
        self._event_times = [t for t, _ in self._events]
        self._server = rec.server_samples()
        self._server_times = [t for t, _ in self._server]
        self.reset()

    def reset(self) -> None:
        """Back to the start of the recording with a fresh aggregator."""
        self.aggregator, self.notes = new_aggregator(self.rec)
        self.control = initial_control(self.rec)
        self.position_us = -1  # nothing fed yet: facts stamped at exactly 0 are still to come
        self._next_event = 0
        self._next_server = 0
        for cursor in (self._requests, self._progress, self._telemetry):
            cursor.rewind()

    def save(self) -> bytes:
        return dump_state((self.position_us, self.aggregator, self.control))

    def restore(self, blob: bytes) -> None:
        """Jump to a saved state; the cursors are positioned just after its time."""
        self.position_us, self.aggregator, self.control = load_state(blob)
        self._next_event = bisect_right(self._event_times, self.position_us)
        self._next_server = bisect_right(self._server_times, self.position_us)
        for cursor in (self._requests, self._progress, self._telemetry):
            cursor.seek(self.position_us)

    def advance(self, t_us: int) -> None:
        """Feed every fact that arrived up to ``t_us`` (inclusive), in arrival order per table."""
        if t_us <= self.position_us:
            return
        agg = self.aggregator
        while self._next_event < len(self._events) and self._events[self._next_event][0] <= t_us:
            event = self._events[self._next_event][1]
            self._next_event += 1
            agg.add_event(event)
            self.control = apply_event(self.control, event)
        # progress first: a first token shipped on a tick always reached the controller before its request's
        # record, and the aggregator counts a TTFT from the record only when no tick carried it
        while progress := self._progress.take(t_us, max_rows=5000):
            agg.add_progress(progress)
        while records := self._requests.take(t_us, max_rows=5000):
            agg.add_records(records)
        while samples := self._telemetry.take(t_us, max_rows=5000):
            agg.add_telemetry(samples)
        end = bisect_right(self._server_times, t_us, lo=self._next_server)
        if end > self._next_server:
            agg.add_server_samples(s for _, s in self._server[self._next_server : end])
            self._next_server = end
        self.position_us = t_us

    def snapshot(self) -> Snapshot:
        return self.aggregator.snapshot(max(0, self.position_us) * 1000, self.control)

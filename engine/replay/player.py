"""The replay player: a ReplayControl that publishes the same Snapshot type as the live controller, so the TUI's
panels cannot tell a replay from a live run.

It owns a virtual clock (``position_s``). A play thread advances it by ``speed x`` the real time elapsed (speed 0:
as fast as the machine can) and publishes a snapshot at a real 4 Hz: the panels refresh as they do live, while a
x16 replay covers 4 s of the recording per frame. Every figure is recomputed by the live Aggregator from the
recorded facts (see ``feeder.py``), never read from stored snapshots.

Seeking: a second thread walks the whole recording once in the background, as fast as it can, and keeps a
checkpoint of the aggregator every ``checkpoint_s`` of recording time (compressed, in memory). A seek restores the
nearest checkpoint at or before the target and feeds at most ``checkpoint_s`` of facts: milliseconds, for any
file length. Until the walk has passed a target, a seek replays from the furthest checkpoint instead (correct,
slower). Memory stays bounded: the facts are read in pages, never loaded whole.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_right
from collections.abc import Sequence
from pathlib import Path

from engine.control import Backfill, SnapshotCallback
from engine.records import EventKind
from engine.replay.feeder import Feeder
from engine.snapshot import EventView, Snapshot
from engine.storage.reader import Recording, open_recording

CHECKPOINT_S = 10.0
TICK_HZ = 4.0
FAST_STEP_US = 1_000_000  # speed 0: feed one recorded second per step, publish at the tick rate
MAX_SPEED = 1000.0
# What the timeline marks: the operator's actions and what explains a figure; not errors (rate-limited, but still
# too many for one bar), not bookkeeping (start, recording on/off, annotations).
MARKED = frozenset({EventKind.CONCURRENCY, EventKind.RATE, EventKind.PAUSE, EventKind.RESUME, EventKind.POWER_CAP,
                    EventKind.WARNING, EventKind.STOP})


class Checkpoints:
    """Aggregator states by recording time, filled by the index thread and read by the play thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)
        self._times: list[int] = []
        self._blobs: list[bytes] = []
        self._events: list[EventView] = []  # every event the walk has seen, in order
        self._event_counts: list[int] = []  # how many of them came at or before each checkpoint
        self.frontier_us = -1  # the index thread has fed everything up to here
        self.complete = False
        self.ended = False  # the index thread is done (complete, stopped or failed)

    def add(self, t_us: int, blob: bytes, events: Sequence[EventView] = ()) -> None:
        with self._lock:
            self._times.append(t_us)
            self._blobs.append(blob)
            self._events.extend(events)
            self._event_counts.append(len(self._events))
            self.frontier_us = t_us
            self._progress.notify_all()

    def end(self, complete: bool) -> None:
        with self._lock:
            self.complete, self.ended = complete, True
            self._progress.notify_all()

    def wait(self, timeout: float) -> None:
        """Sleep until the index thread adds a checkpoint or ends (or the timeout passes)."""
        with self._lock:
            if not self.ended:
                self._progress.wait(timeout)

    def best(self, t_us: int) -> tuple[int, bytes] | None:
        """The latest checkpoint at or before ``t_us``."""
        with self._lock:
            i = bisect_right(self._times, t_us)
            return None if i == 0 else (self._times[i - 1], self._blobs[i - 1])

    def events_through(self, t_us: int) -> list[EventView]:
        """The events up to the checkpoint at ``t_us`` (one that ``best`` returned)."""
        with self._lock:
            i = bisect_right(self._times, t_us)
            return [] if i == 0 else self._events[: self._event_counts[i - 1]]

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(len(b) for b in self._blobs)

    def __len__(self) -> int:
        return len(self._times)


class Player:
    """Replays one recording. Every control method is thread-safe and returns at once; the work happens on the
    player's thread, which publishes the resulting snapshot to the subscribers."""

    def __init__(
        self,
        source: str | Path | Recording,
        *,
        speed: float = 1.0,
        playing: bool = True,
        tick_hz: float = TICK_HZ,
        checkpoint_s: float = CHECKPOINT_S,
        build_index: bool = True,
    ) -> None:
        self.recording = source if isinstance(source, Recording) else open_recording(source)
        self._period = 1.0 / tick_hz
        self._checkpoint_us = max(1, round(checkpoint_s * 1e6))
        self._duration_us = self.recording.duration_us
        # a recording started partway (r): the file begins there, and so does everything the player shows
        self._start_us = min(max(0, self.recording.meta.recorded_from_us), self._duration_us)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._callbacks: list[SnapshotCallback] = []
        self._speed = min(max(0.0, speed), MAX_SPEED)
        self._playing = playing and self._duration_us > 0
        self._pending: int | None = None  # a seek target not yet applied
        self._requested = 0  # seeks asked for / applied: lets ``wait_idle`` know the latest one is on screen
        self._applied = 0
        self._republish = False
        self._closed = False
        self._seq = 0
        self._problems: list[str] = []
        self._markers = self._build_markers()

        self._feeder = Feeder(self.recording)
        self._feeder.advance(self._start_us)
        self._latest = self._stamp(self._feeder.snapshot())
        self.checkpoints = Checkpoints()
        self._index_stop = threading.Event()
        self._index_thread: threading.Thread | None = None
        if build_index:
            self._index_thread = threading.Thread(target=self._build_index, name="wattload-replay-index",
                                                  daemon=True)
            self._index_thread.start()
        else:
            self.checkpoints.end(complete=False)
        self._thread = threading.Thread(target=self._run, name="wattload-replay", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------ ReplayControl

    @property
    def latest(self) -> Snapshot:
        return self._latest

    def subscribe(self, callback: SnapshotCallback) -> None:
        with self._lock:
            self._callbacks.append(callback)

    @property
    def duration_s(self) -> float:
        return self._duration_us / 1e6

    @property
    def start_s(self) -> float:
        """Where the recording begins on the session clock (later than 0 when ``r`` started it partway)."""
        return self._start_us / 1e6

    @property
    def position_s(self) -> float:
        with self._lock:
            pos = self._pending if self._pending is not None else self._feeder.position_us
        return max(0, pos) / 1e6

    @property
    def playing(self) -> bool:
        return self._playing

    @property
    def speed(self) -> float:
        return self._speed

    def markers(self) -> Sequence[tuple[float, str]]:
        return self._markers

    def toggle(self) -> None:
        """Play/pause; at the end of the recording, play starts again from the beginning."""
        with self._lock:
            at_end = (self._pending if self._pending is not None else self._feeder.position_us) >= self._duration_us
            if not self._playing and at_end:
                self._seek_locked(self._start_us)
            self._playing = not self._playing and self._duration_us > 0
            self._republish = True
        self._wake.set()

    def seek(self, delta_s: float) -> None:
        with self._lock:
            base = self._pending if self._pending is not None else self._feeder.position_us
            self._seek_locked(max(0, base) + round(delta_s * 1e6))
        self._wake.set()

    def seek_to(self, t_s: float) -> None:
        with self._lock:
            self._seek_locked(round(t_s * 1e6))
        self._wake.set()

    def set_speed(self, speed: float) -> None:
        with self._lock:
            self._speed = min(max(0.0, float(speed)), MAX_SPEED)
            self._republish = True
        self._wake.set()

    def backfill(self, until_s: float, span_s: float, step_s: float) -> Backfill:
        """Recompute the ``span_s`` before ``until_s`` at ``step_s`` and every event up to it, on a connection and
        aggregator of its own (any thread): the nearest checkpoint, then a walk of at most span + checkpoint."""
        until_us = min(max(self._start_us, round(until_s * 1e6)), self._duration_us)
        start_us = max(self._start_us, until_us - round(span_s * 1e6))
        step_us = max(1, round(step_s * 1e6))
        rec = self.recording.reopen()
        try:
            feeder = Feeder(rec)
            events: list[EventView] = []
            best = self.checkpoints.best(start_us)
            if best is not None:
                feeder.restore(best[1])
                events = self.checkpoints.events_through(best[0])
            feeder.advance(start_us)
            snapshots: list[Snapshot] = []
            t = start_us
            while True:
                snap = feeder.snapshot()
                events.extend(snap.new_events)  # the events that arrived by this step, once each
                snapshots.append(snap.model_copy(update={"new_events": ()}))
                if t >= until_us or self._closed:
                    break
                t = min(until_us, t + step_us)
                feeder.advance(t)
        finally:
            rec.close()
        if snapshots and snapshots[-1].t_s >= until_s - 1e-6:
            snapshots.pop()  # the position itself is the snapshot on screen
        return Backfill(until_s=until_us / 1e6, snapshots=tuple(snapshots), events=tuple(events))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._index_stop.set()
        self._wake.set()
        self._thread.join(5)
        if self._index_thread is not None:
            self._index_thread.join(5)
        self.recording.close()

    # ------------------------------------------------------------------------------------ extras

    @property
    def warning(self) -> str:
        """One line about the file's problems (killed, truncated, corrupt rows skipped), or ""."""
        return "; ".join(self.warnings)

    @property
    def warnings(self) -> list[str]:
        return [*self.recording.warnings, *self._feeder.notes, *self._problems]

    @property
    def path(self) -> Path:
        return self.recording.path

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until every seek asked for so far is applied and published (for tests and scripts)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._applied >= self._requested and self._pending is None, timeout)

    def wait_index(self, timeout: float = 60.0) -> bool:
        """Block until the background walk has checkpointed the whole recording."""
        if self._index_thread is None:
            return False
        self._index_thread.join(timeout)
        return self.checkpoints.complete

    # ------------------------------------------------------------------------------------ threads

    def _seek_locked(self, t_us: int) -> None:
        self._pending = min(max(self._start_us, t_us), self._duration_us)
        self._requested += 1

    def _build_markers(self) -> list[tuple[float, str]]:
        return [(max(0.0, e.t_ns / 1e9), e.kind.value) for _, e in self.recording.events()
                if e.kind in MARKED]

    def _stamp(self, snap: Snapshot) -> Snapshot:
        """Published snapshots are numbered by the player, so ``seq`` keeps rising across seeks; the file's
        warning (killed, truncated, rows skipped) rides in the header's message line."""
        self._seq += 1
        update: dict[str, object] = {"seq": self._seq}
        warning = self.warning
        if warning and not snap.message:
            update["message"] = warning
        return snap.model_copy(update=update)

    def _publish(self) -> None:
        snap = self._stamp(self._feeder.snapshot())
        self._latest = snap
        with self._lock:
            callbacks = list(self._callbacks)
        for cb in callbacks:
            try:
                cb(snap)
            except Exception:  # a subscriber's bug must not stop the replay
                pass

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # a file that breaks mid-replay: stop, say why in the header, never hang a waiter
            self._problems.append(f"replay stopped: {type(exc).__name__}: {exc}".splitlines()[0])
            with self._cond:
                self._playing = False
                self._pending = None
                self._applied = self._requested
                self._cond.notify_all()
            if not self._closed:
                self._latest = self._latest.model_copy(update={"message": self.warning})
                for cb in list(self._callbacks):
                    try:
                        cb(self._latest)
                    except Exception:
                        pass

    def _loop(self) -> None:
        last = time.perf_counter()
        while not self._closed:
            fast = self._playing and self._speed == 0
            if not fast:
                self._wake.wait(self._period if self._playing else None)
            self._wake.clear()
            if self._closed:
                return
            with self._lock:
                target, self._pending = self._pending, None
                requested = self._requested
                republish, self._republish = self._republish, False
                playing, speed = self._playing, self._speed
            now = time.perf_counter()
            if target is not None:
                self._apply_seek(target)
            elif playing:
                if speed > 0:
                    self._feeder.advance(min(self._duration_us, self._feeder.position_us
                                             + round((now - last) * speed * 1e6)))
                else:
                    deadline = now + self._period
                    while (time.perf_counter() < deadline and self._feeder.position_us < self._duration_us
                           and self._pending is None and not self._closed):
                        self._feeder.advance(min(self._duration_us, self._feeder.position_us + FAST_STEP_US))
                if self._feeder.position_us >= self._duration_us:
                    with self._lock:
                        self._playing = False
            last = now
            if target is not None or playing or republish:
                self._publish()
            if target is not None:
                with self._cond:
                    self._applied = max(self._applied, requested)
                    self._cond.notify_all()

    def _apply_seek(self, target: int) -> None:
        feeder = self._feeder
        pos = feeder.position_us
        if pos <= target <= pos + self._checkpoint_us:
            feeder.advance(target)
            return
        # a target the index walk has not reached yet: let it get there (it is the fastest way: one thread
        # walking at full speed), unless the user seeks elsewhere meanwhile
        cps = self.checkpoints
        while (not cps.ended and cps.frontier_us < target - self._checkpoint_us and self._pending is None
               and not self._closed and (target < pos or cps.frontier_us > pos)):
            cps.wait(0.05)
        best = cps.best(target)
        if best is not None and (target < pos or best[0] > pos):
            feeder.restore(best[1])
        elif target < pos:
            feeder.reset()
        feeder.advance(target)

    def _build_index(self) -> None:
        """Walk the recording once, checkpointing every ``checkpoint_s`` (its own connection and aggregator)."""
        try:
            rec = self.recording.reopen()
        except Exception:
            self.checkpoints.end(complete=False)
            return
        try:
            feeder = Feeder(rec)
            t = self._checkpoint_us
            while t <= self._duration_us and not self._index_stop.is_set():
                feeder.advance(t)
                snap = feeder.snapshot()  # as a live tick would: drains pending events, prunes old window slots
                self.checkpoints.add(t, feeder.save(), snap.new_events)
                t += self._checkpoint_us
        except Exception:  # the index only speeds seeking up; without it seeks replay from the start
            pass
        finally:
            self.checkpoints.end(complete=not self._index_stop.is_set())
            rec.close()

"""Ships a worker's messages to the controller from a thread of its own, so the event loop never waits on the pipe.

A blocking ``Connection.send`` on the event loop stalls every stream of the worker whenever the controller is slow
to read (a GC pause, a Prometheus scrape parsed on the controller's GIL, a busy dashboard): a 64 KiB pipe holds
less than one batch at a few hundred thousand tokens/s, so the loop waited and every chunk that arrived meanwhile
was stamped late (the worker's loop lag rose from ~5 ms to ~58 ms with 8 sources scraped, on the H200 box).
Here the loop pickles (cheap, and on its own GIL turn) and queues the bytes; the thread writes them whole, in
order, releasing the GIL in the write. The queue is bounded: a controller that stops reading altogether still
stops the worker (``put`` blocks and the loop lag shows it) instead of growing memory without limit.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler

QUEUE_DEPTH = 64  # messages (~6 s of 100 ms batches): far beyond any hiccup, small enough to bound memory
_CLOSE = b""


class Shipper:
    """Order-keeping, whole-message, non-blocking (until ``QUEUE_DEPTH``) sends over one data pipe."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.on_broken: Callable[[], None] = lambda: None  # called on the shipper's thread: hop to the loop
        self._queue: queue.Queue[bytes] = queue.Queue(maxsize=QUEUE_DEPTH)
        self._broken = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wattload-shipper", daemon=True)
        self._thread.start()

    @property
    def broken(self) -> bool:
        """The controller's end is gone: nothing more can be shipped."""
        return self._broken.is_set()

    def send(self, msg: object) -> None:
        if self._broken.is_set():
            raise BrokenPipeError("the controller's pipe is closed")
        payload = bytes(ForkingPickler.dumps(msg))
        self._queue.put(payload)

    def close(self, timeout_s: float = 10.0) -> None:
        """Ship what is queued, then stop the thread (bounded: a controller that never reads cannot hold us)."""
        if self._thread.is_alive():
            try:
                self._queue.put(_CLOSE, timeout=timeout_s)
            except queue.Full:
                return
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            payload = self._queue.get()
            if payload == _CLOSE:
                return
            if self._broken.is_set():
                continue  # drain so a blocked ``put`` returns; the loop learns from ``on_broken``
            try:
                self._conn.send_bytes(payload)
            except (OSError, ValueError):
                self._broken.set()
                self.on_broken()

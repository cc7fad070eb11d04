"""Imported by the workers' forkserver alone (``set_forkserver_preload``, engine/load/worker_pool.py): the server,
and every worker forked from it, ignores the stop signals that ``timeout``, systemd or a closed terminal send to
the whole process group. Were the server to die of one, the controller would read each live worker it forked as
exited with code 255 (its exit status comes through the server)."""

from __future__ import annotations

import signal

for _stop in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
    signal.signal(_stop, signal.SIG_IGN)

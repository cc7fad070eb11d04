"""The simulator in a child process, so its CPU work never competes with the caller's GIL (demo, benchmarks).

The child watches its stdin: when the parent dies, the pipe closes and the child exits, so no orphan survives.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import IO

from engine.sim.cli import API_KEY_ENV
from engine.sim.model import SimConfig

_URL_RE = re.compile(r"serving (http://\S+/v1)")


class SimStartError(RuntimeError):
    """The simulator process did not come up; the message carries its last error line."""


class SimProcess:
    """A running ``python -m engine.sim`` child; ``url`` is its /v1 base."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, stderr: IO[bytes]) -> None:
        self.proc = proc
        self.url = url
        self._stderr = stderr

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout_s: float = 5.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout_s``; always reaps the child. Returns its exit code."""
        code = _terminate(self.proc, timeout_s)
        self._stderr.close()
        return code

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _terminate(proc: subprocess.Popen[bytes], timeout_s: float) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout_s)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()
    return proc.returncode


def _pump_lines(stream: IO[bytes], lines: queue.Queue[str | None]) -> None:
    """Forward the child's stdout lines, then keep draining so the child can never block on a full pipe."""
    for raw in iter(stream.readline, b""):
        lines.put(raw.decode(errors="replace"))
    lines.put(None)


def _last_line(stderr: IO[bytes]) -> str:
    stderr.seek(0)
    text = stderr.read().decode(errors="replace").strip()
    return text.splitlines()[-1] if text else "no error output"


def start_sim_process(
    config: SimConfig | None = None,
    port: int = 0,
    host: str = "127.0.0.1",
    timeout_s: float = 20.0,
    cpus: Iterable[int] | None = None,
) -> SimProcess:
    """Launch the simulator and wait (at most ``timeout_s``) until it prints the URL it listens on."""
    cfg = config or SimConfig()
    cmd = [sys.executable, "-m", "engine.sim", "--host", host, "--port", str(port), "--exit-on-stdin-eof"]
    cmd += ["--config-json", cfg.model_dump_json(exclude={"api_key"})]
    if cpus is not None:
        cmd += ["--cpus", ",".join(str(c) for c in cpus)]
    env = dict(os.environ)
    env.pop(API_KEY_ENV, None)  # the child's key comes from the config only (and never via argv, which ps shows)
    if cfg.api_key is not None:
        env[API_KEY_ENV] = cfg.api_key.get_secret_value()
    stderr = tempfile.TemporaryFile()
    # Its own session: a signal sent to our process group (Ctrl-C, `timeout`, a closed tmux pane) must not take the
    # server away under a run that is still draining; it exits when we stop it or when its stdin closes.
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env,
                            start_new_session=True)
    lines: queue.Queue[str | None] = queue.Queue()
    assert proc.stdout is not None
    threading.Thread(target=_pump_lines, args=(proc.stdout, lines), name="sim-stdout", daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        try:
            line = lines.get(timeout=max(0.0, remaining))
        except queue.Empty:
            line = ""
        match = _URL_RE.search(line) if line else None
        if match:
            return SimProcess(proc, match.group(1), stderr)
        if line is not None and remaining > 0:
            continue
        _terminate(proc, timeout_s=2.0)
        why = _last_line(stderr) if line is None else f"no URL within {timeout_s:g} s"
        stderr.close()
        raise SimStartError(f"simulated server did not start: {why}")

"""Every stop signal ends a headless run and a sweep the way Ctrl-C does: summary printed, --json/--csv written,
recording closed, exit 128+signal. Real subprocesses, real signals, real loopback servers; every wait bounded."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest
from engine_helpers import root_of, wait_for

from engine.sim.model import SimConfig

WATTLOAD = [sys.executable, "-m", "tui.cli"]
REPO = Path(__file__).resolve().parents[2]
DEADLINE_S = 60
SIM = SimConfig(speed=2.0)  # the simulator, in its own process (conftest.py sim_process)


def finished(url: str) -> int:
    text = httpx.get(f"{root_of(url)}/metrics", timeout=5, trust_env=False).text
    found = re.search(r"^vllm:request_success_total\S* (\d+)", text, re.MULTILINE)
    return int(found.group(1)) if found else 0


class Child:
    """wattload in its own process group (so a group signal reaches it and its children, never pytest)."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen([*WATTLOAD, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     cwd=REPO, start_new_session=True)
        self.err_lines: list[str] = []
        self.out_lines: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(pipe, lines), daemon=True)
                         for pipe, lines in ((self.proc.stderr, self.err_lines), (self.proc.stdout, self.out_lines))]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(pipe: object, lines: list[str]) -> None:
        for line in pipe:  # type: ignore[attr-defined]
            lines.append(line)

    @property
    def out(self) -> str:
        return "".join(self.out_lines)

    @property
    def err(self) -> str:
        return "".join(self.err_lines)

    def wait_err(self, pattern: str) -> re.Match[str]:
        found: list[re.Match[str]] = []

        def seen() -> bool:
            match = re.search(pattern, self.err)
            if match:
                found.append(match)
            return bool(match) or self.proc.poll() is not None

        wait_for(seen, DEADLINE_S, f"stderr to match {pattern!r}")
        assert found, self.err[-2000:]
        return found[0]

    def finish(self) -> int:
        try:
            self.proc.wait(timeout=DEADLINE_S)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        for reader in self._readers:
            reader.join(10)
        return self.proc.returncode

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def run_until_some_finished(url: str, argv: list[str], n: int = 2) -> Child:
    before = finished(url)
    # --no-calibrate: the signal must land in the run itself, not among the calibration probes before it
    child = Child(["run", url, "--headless", "--workers", "1", "--gpu", "none", "--no-calibrate", *argv])
    wait_for(lambda: finished(url) >= before + n or child.proc.poll() is not None, DEADLINE_S,
             "the run to finish a few requests")
    assert child.proc.poll() is None, child.err[-2000:]
    return child


@pytest.mark.parametrize(("signum", "name"), [(signal.SIGTERM, "SIGTERM"), (signal.SIGHUP, "SIGHUP")])
def test_a_stop_signal_ends_a_headless_run_like_ctrl_c(sim_process, tmp_path, signum, name):
    out_json, rec = tmp_path / "r.json", tmp_path / "r.wattload.sqlite"
    with run_until_some_finished(sim_process.url, ["-c", "2", "--max-tokens", "32", "--json", str(out_json),
                                       "--record", str(rec)]) as child:
        child.proc.send_signal(signum)
        code = child.finish()
    assert code == 128 + signum, child.err[-2000:]
    assert "Traceback" not in child.err
    assert f"stopped by {name}" in child.out and re.search(r"requests\s+\d+ ok", child.out)
    report = json.loads(out_json.read_text())
    assert report["stop_signal"] == name and report["interrupted"] is True
    assert report["result"]["total"]["requests"] >= 1
    from engine.storage.reader import open_recording

    with open_recording(rec) as recording:
        assert recording.closed_cleanly


def test_sigterm_to_the_whole_group_like_timeout_still_drains_cleanly(tmp_path):
    """`timeout` signals its whole process group: workers and the simulator must leave the stopping to us."""
    out_json = tmp_path / "r.json"
    with Child(["run", "--sim", "--headless", "--workers", "1", "--no-calibrate", "-c", "4", "--max-tokens", "64",
                "--json", str(out_json)]) as child:
        url = child.wait_err(r"simulated server at (\S+)").group(1)
        wait_for(lambda: finished(url) >= 4 or child.proc.poll() is not None, DEADLINE_S, "a few requests")
        os.killpg(child.proc.pid, signal.SIGTERM)
        code = child.finish()
    assert code == 143, child.err[-2000:]
    total = json.loads(out_json.read_text())["result"]["total"]
    assert total["requests"] >= 4 and total["errors"] == 0, total


def test_a_second_sigterm_quits_at_once(sim_process, tmp_path):
    with run_until_some_finished(sim_process.url, ["-c", "2", "--max-tokens", "256"], n=1) as child:
        child.proc.send_signal(signal.SIGTERM)
        child.wait_err(r"stopping \(SIGTERM\)")
        t = time.monotonic()
        child.proc.send_signal(signal.SIGTERM)
        code = child.finish()
    assert code == 143 and time.monotonic() - t < 15, child.err[-2000:]


def test_a_worker_ignores_a_stray_sigterm_and_the_run_goes_on(sim_process, tmp_path):
    out_json = tmp_path / "r.json"
    code = textwrap.dedent("""
        import os, signal, sys, time
        from engine.config import RunConfig
        from engine.load.controller import Controller
        c = Controller(RunConfig(base_url=sys.argv[1], model=sys.argv[2], workers=1, concurrency=2,
                                 input_tokens=16, max_tokens=16))
        c.start()
        deadline = time.monotonic() + 30
        while c.t0_ns is None and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(c.worker_pids[0], signal.SIGTERM)
        time.sleep(1.0)
        c.stop()
        c.wait(30)
        c.close()
        print(c.latest.state.value, c.latest.total.requests)
    """)
    proc = subprocess.run([sys.executable, "-c", code, sim_process.url, SimConfig().model], capture_output=True,
                          text=True, timeout=DEADLINE_S, cwd=REPO)
    state, requests = proc.stdout.split()
    assert state == "stopped" and int(requests) > 0, proc.stderr[-2000:]
    assert not out_json.exists()


@pytest.mark.parametrize(("signum", "name"), [(signal.SIGTERM, "SIGTERM"), (signal.SIGHUP, "SIGHUP")])
def test_a_stop_signal_ends_a_sweep_with_its_table_json_and_csv(sim_process, tmp_path, signum, name):
    out_json, out_csv = tmp_path / "s.json", tmp_path / "s.csv"
    with Child(["sweep", sim_process.url, "--profile", "chat-short", "--start", "1", "--max", "64", "--step-time", "1s",
                "--window", "1s", "--workers", "1", "--gpu", "none", "--json", str(out_json), "--csv",
                str(out_csv)]) as child:
        child.wait_err(r"step 1: concurrency 1: ")
        child.proc.send_signal(signum)
        code = child.finish()
    assert code == 128 + signum, child.err[-2000:]
    assert f"stopping the sweep ({name})" in child.err and "Traceback" not in child.err
    report = json.loads(out_json.read_text())
    assert report["interrupted"] is True and report["result"]["outcome"]["steps"]
    assert out_csv.read_text().count("\n") >= 2


# -- the signal owner itself -----------------------------------------------------------------------------------

OWNER_CHILD = textwrap.dedent("""
    import os, signal, sys, time
    from engine.signals import OWNER
    order = []
    OWNER.add_cleanup(lambda: order.append("cleanup"))
    mode = sys.argv[1]
    if mode == "stopper":
        with OWNER.stopping(lambda s: order.append(f"stop {s}")) as stopped:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)
        print(",".join(order), stopped.exit_code, flush=True)
    else:
        sys.stdout.write("armed\\n"); sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
""")


def test_the_owner_runs_cleanups_before_the_stopper_and_reports_the_exit_code():
    proc = subprocess.run([sys.executable, "-c", OWNER_CHILD, "stopper"], capture_output=True, text=True,
                          timeout=DEADLINE_S, cwd=REPO)
    assert proc.stdout.strip() == "cleanup,stop 15 143", proc.stderr


def test_without_a_stopper_the_signal_still_ends_the_process_after_the_cleanups():
    proc = subprocess.run([sys.executable, "-c", OWNER_CHILD, "die"], capture_output=True, text=True,
                          timeout=DEADLINE_S, cwd=REPO)
    assert proc.returncode == -signal.SIGTERM and proc.stdout == "armed\n", proc.stderr


def test_one_handler_per_signal_and_the_old_one_back_afterwards():
    from engine.gpu.fake import FakeNvml
    from engine.gpu.nvml import open_nvml
    from engine.gpu.powercap import PowerCapManager
    from engine.signals import OWNER

    before = signal.getsignal(signal.SIGTERM)
    backend, _ = open_nvml(FakeNvml(), source="fake")
    caps = PowerCapManager(backend, [0], state_file=None)
    with OWNER.stopping(lambda s: None, sigint=True):
        assert signal.getsignal(signal.SIGTERM) == OWNER._handle
        assert signal.getsignal(signal.SIGHUP) == OWNER._handle
        assert signal.getsignal(signal.SIGINT) == OWNER._handle
    assert signal.getsignal(signal.SIGINT) is not OWNER._handle  # nobody asks for SIGINT any more
    assert signal.getsignal(signal.SIGTERM) == OWNER._handle  # the caps still need their cleanup
    caps.close()
    assert signal.getsignal(signal.SIGTERM) == before

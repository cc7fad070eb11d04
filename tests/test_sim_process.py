"""The simulator as a child process and as `wattload sim`: starts, serves, stops, leaves nothing behind."""

from __future__ import annotations

import os
import socket

import httpx
import pytest

from engine.sim import SimConfig, start_sim_process
from engine.sim.process import SimStartError
from tui.cli import main as wattload

BODY = {"model": "sim-llama-3.1-8b", "prompt": "hi", "max_tokens": 3, "stream": True}


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_start_serve_and_stop_cleanly():
    sim = start_sim_process(SimConfig(speed=20.0), timeout_s=20)
    try:
        assert sim.url.startswith("http://127.0.0.1:") and sim.url.endswith("/v1") and sim.alive
        with httpx.Client(timeout=10) as client:
            resp = client.post(sim.url + "/completions", json=BODY)
        assert resp.status_code == 200 and resp.text.rstrip().endswith("data: [DONE]")
    finally:
        code = sim.stop(timeout_s=5)
    assert code == 0  # SIGTERM is a clean shutdown, not a kill
    assert gone(sim.pid)


def test_child_exits_when_the_parent_pipe_closes():
    sim = start_sim_process(SimConfig(), timeout_s=20)
    try:
        assert sim.proc.stdin is not None
        sim.proc.stdin.close()  # what the parent's death does
        sim.proc.wait(timeout=10)
    finally:
        sim.stop(timeout_s=2)
    assert gone(sim.pid)


def test_api_key_reaches_the_child_but_not_its_command_line():
    with start_sim_process(SimConfig(api_key="hush-123"), timeout_s=20) as sim:
        with open(f"/proc/{sim.pid}/cmdline", "rb") as fh:
            assert b"hush-123" not in fh.read()
        with httpx.Client(timeout=10) as client:
            assert client.post(sim.url + "/completions", json=BODY).status_code == 401
            ok = client.post(sim.url + "/completions", json=BODY, headers={"Authorization": "Bearer hush-123"})
            assert ok.status_code == 200
    assert gone(sim.pid)


def test_busy_port_gives_one_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SimStartError, match="cannot listen"):
            start_sim_process(SimConfig(), port=port, timeout_s=20)


def test_wattload_sim_refuses_a_non_loopback_host(capsys):
    assert wattload(["sim", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "--allow-remote" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_wattload_sim_rejects_bad_settings_in_one_line(capsys):
    assert wattload(["sim", "--port", "0", "--error-rate", "3"]) == 2
    err = capsys.readouterr().err
    assert "error_rate" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1

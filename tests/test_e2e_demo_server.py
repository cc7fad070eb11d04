"""`wattload demo --gpu-metrics` in a real terminal (tmux): the Server panel with server and client TTFT side by
side, and the GPU panel fed by the simulator's DCGM endpoint (the cap keys say caps cannot be set remotely)."""

from __future__ import annotations

import re
import uuid

from test_e2e_tmux import WATTLOAD, kill_session, pytestmark, tmux, wait_screen  # noqa: F401  (pytestmark: slow, needs tmux)


def test_demo_shows_the_server_panel_and_dcgm_watts(tmp_path):
    session = f"wattload-e2e-srv-{uuid.uuid4().hex[:8]}"
    done = tmp_path / "exit-code"
    command = (f"cd {tmp_path} && env -u COLUMNS -u LINES WATTLOAD_STATE_DIR={tmp_path} {WATTLOAD} demo --gpu-metrics "
               f"--record-dir {tmp_path}; echo $? > {done}; sleep 60")  # fmt: skip
    tmux("new-session", "-d", "-s", session, "-x", "140", "-y", "40", command)
    try:
        both = re.compile(r"TTFT p50 \d[\d.]* / \d[\d.]* Δ[+-]\d")  # server / client, and the difference
        screen = wait_screen(session, lambda s: both.search(s) is not None, 90, "server and client TTFT")
        assert "Server" in screen and "(server / client, ms)" in screen and "vllm" in screen
        assert re.search(r"power\s+\d[\d,]* W", screen)  # watts from /sim/dcgm/metrics
        assert "dcgm" in screen  # the event log names the telemetry source
        tmux("send-keys", "-t", session, "]")
        wait_screen(session, lambda s: "cannot be set remotely" in s, 20, "the cap key's answer")
        tmux("send-keys", "-t", session, "q")
        wait_screen(session, lambda s: done.exists(), 30, "the demo to exit")
        assert done.read_text().strip() == "0"
    finally:
        kill_session(session)

"""After the dashboard closes, the terminal keeps what the run was (issue 15, item 5): `wattload demo` in tmux,
started recording with `r`, quit with q: the summary table, the recording's path (a real, readable file) and no
stale "simulated server at ..." line."""

from __future__ import annotations

import re
import shutil
import uuid
from pathlib import Path

import pytest
from test_e2e_tmux import WATTLOAD, kill_session, load_figure, tmux, wait_screen

from engine.storage.reader import open_recording

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)"),
]


def test_quitting_the_demo_prints_the_summary_and_where_the_recording_went(tmp_path):
    session = f"wattload-exit-{uuid.uuid4().hex[:8]}"
    done = tmp_path / "exit-code"
    command = (f"cd {tmp_path} && env -u COLUMNS -u LINES WATTLOAD_STATE_DIR={tmp_path} {WATTLOAD} demo "
               f"--record-dir {tmp_path}/rec; echo $? > {done}; sleep 60")  # fmt: skip
    tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", command)
    try:
        wait_screen(session, lambda s: "RUNNING" in s and load_figure(s, "in flight") == 8, 60, "the demo to run")
        tmux("send-keys", "-t", session, "r")
        wait_screen(session, lambda s: "● REC" in s, 20, "the recording to start")
        tmux("send-keys", "-t", session, "q")
        wait_screen(session, lambda s: "Quit" in s or "quit" in s.lower(), 10, "the quit question")
        tmux("send-keys", "-t", session, "q")  # a second q quits at once (restoring caps)
        wait_screen(session, lambda s: done.exists(), 30, "the demo to exit")
        screen = tmux("capture-pane", "-p", "-J", "-S", "-60", "-t", session)
        assert done.read_text().strip() == "0"
        assert "wattload run: http://127.0.0.1:" in screen and re.search(r"requests\s+\d+", screen)
        assert re.search(r"TTFT\s+\d", screen)
        match = re.search(r"recording\s+(\S+\.sqlite)", screen)
        assert match, screen
        path = Path(match.group(1))
        assert path.is_absolute() or (tmp_path / path).exists()
        with open_recording(path if path.is_absolute() else tmp_path / path) as rec:
            assert rec.duration_s > 0
        assert "has stopped" in screen and "wattload: simulated server at" not in screen
    finally:
        kill_session(session)

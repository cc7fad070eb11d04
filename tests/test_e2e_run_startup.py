"""`wattload run` opens its dashboard at once (issue 15, item 11 for `run`): the probe of the endpoint happens
behind it and says so ("probing …"), and a probe that fails is one line in the dashboard's failure box, printed
again once the terminal is restored, with exit code 2. The real CLI in tmux against a slow, hostile loopback
server that answers every request late with a 404."""

from __future__ import annotations

import shutil
import threading
import uuid

import pytest
from prom_servers import raw_server
from test_e2e_tmux import WATTLOAD, kill_session, tmux, wait_screen

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)"),
]
HOLD_S = 60.0  # the server answers once the test has seen the probe waiting (or after this, as a bound)


def test_run_shows_the_dashboard_while_probing_and_a_failed_probe_is_one_line(tmp_path):
    seen_probing = threading.Event()

    def late_404(_path: str, _query: object) -> tuple[int, str, bytes, float]:
        seen_probing.wait(HOLD_S)  # no race with the dashboard: the answer waits until the screen said "probing"
        return 404, "text/plain", b"no such thing", 0.0

    with raw_server(late_404) as root:
        session = f"wattload-run-{uuid.uuid4().hex[:8]}"
        done = tmp_path / "exit-code"
        command = (f"cd {tmp_path} && env -u COLUMNS -u LINES WATTLOAD_STATE_DIR={tmp_path} {WATTLOAD} run {root} "
                   f"--gpu none; echo $? > {done}; sleep 60")  # fmt: skip
        tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", command)
        try:
            probing = wait_screen(session, lambda s: "probing http://127.0.0.1" in s and "Load" in s, 60,
                                  "the dashboard saying it probes")  # fmt: skip
            assert "STARTING" in probing or "starting" in probing.lower()
            seen_probing.set()
            wait_screen(session, lambda s: "answered HTTP 404" in s and "Quit" in s, 60, "the failure box")
            tmux("send-keys", "-t", session, "Enter")  # the box's Quit button has the focus
            wait_screen(session, lambda _s: done.exists(), 30, "wattload to exit")
            after = tmux("capture-pane", "-p", "-J", "-S", "-60", "-t", session)
            assert done.read_text().strip() == "2"
            printed = [text for text in after.splitlines() if text.startswith("wattload: ") and "/models" in text]
            assert len(printed) == 1 and "answered HTTP 404" in printed[0], after  # the box's line, once
            assert "Traceback" not in after
        finally:
            seen_probing.set()
            kill_session(session)

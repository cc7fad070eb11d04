"""The fault suite: hostile servers, lying numbers, signals. Shared fixtures; tests/ on the path for its helpers."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from hostile import HostileServer


@pytest.fixture(scope="session")
def hostile():
    server = HostileServer().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def isolated_state(tmp_path, monkeypatch):
    """No developer key, no real state directory, no colour settings leaking in."""
    for name in ("OPENAI_API_KEY", "WATTLOAD_API_KEY", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WATTLOAD_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))

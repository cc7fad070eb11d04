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


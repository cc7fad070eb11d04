"""Input that crosses a boundary besides HTTP: the environment, TOML files, state files. One line, exit 2, no
secret in it, nothing started."""

from __future__ import annotations

import pytest

from engine.sim.model import SimConfig
from tui.cli import main

SIM = SimConfig(speed=50.0)  # conftest.py sim_url


def test_an_api_key_with_a_newline_is_one_line_and_never_shown(capsys, monkeypatch):
    monkeypatch.setenv("WATTLOAD_API_KEY", "sk-abcdefgh\nijklmnop")
    assert main(["run", "http://127.0.0.1:9/v1", "--headless"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "$WATTLOAD_API_KEY" in err and "newline" in err
    assert "abcdefgh" not in err and "ijklmnop" not in err


@pytest.mark.parametrize(("body", "fragment"), [
    ('api = "chat"\ninput = 1000000000000\noutput = 128\n', "less than or equal to"),
    ('api = "chat"\ninput = 128\noutput = -5\n', "must be at least 1"),
    ('api = "chat"\ninput = [1, 2\n', "prof.toml"),
])
def test_a_profile_with_absurd_or_broken_numbers_is_one_line(capsys, tmp_path, sim_url, body, fragment):
    path = tmp_path / "prof.toml"
    path.write_text(body)
    assert main(["run", sim_url, "--headless", "--profile", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("wattload: ") and fragment in err


def test_a_state_dir_that_is_a_file_is_one_line(capsys, tmp_path, monkeypatch):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("WATTLOAD_STATE_DIR", str(tmp_path / "afile"))
    assert main(["gpu", "restore"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Not a directory" in err


def test_a_corrupt_state_file_is_one_line(capsys, tmp_path, monkeypatch):
    (tmp_path / "powercap.json").write_text("{not json")
    monkeypatch.setenv("WATTLOAD_STATE_DIR", str(tmp_path))
    assert main(["gpu", "restore"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a wattload power-cap state file" in err

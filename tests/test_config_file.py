"""The defaults file (issue 15, item 15): $XDG_CONFIG_HOME/wattload/config.toml sets defaults, flags beat it,
`wattload config` shows the path, each effective value and where it came from, and no secret is ever printed
(the API key lives in the environment; a URL's password is masked). The real CLI in a subprocess, the real parser,
the real app through Pilot for the theme."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tui_canned import CannedControl, session, until

from engine.cli.settings_file import apply_to_args, apply_to_parser, config_path, load_settings
from tui.app import WattloadApp
from tui.cli import build_parser
from tui.screens.live_dashboard import LiveDashboard

WATTLOAD = Path(sys.executable).with_name("wattload")
KEY = "sk-test-4f9a1c2b7e"


def write_config(root: Path, text: str) -> Path:
    path = root / "wattload" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def wattload(root: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k not in ("WATTLOAD_API_KEY", "OPENAI_API_KEY")}
    full.update({"XDG_CONFIG_HOME": str(root), **(env or {})})
    return subprocess.run([str(WATTLOAD), *args], capture_output=True, text=True, timeout=60, env=full)


def test_the_path_follows_xdg_config_home(tmp_path):
    assert config_path({"XDG_CONFIG_HOME": str(tmp_path), "HOME": "/nowhere"}) == tmp_path / "wattload/config.toml"
    home = Path("/home/u/.config/wattload/config.toml")
    assert config_path({"XDG_CONFIG_HOME": "relative", "HOME": "/home/u"}) == home  # XDG says: absolute only
    assert config_path({"HOME": "/home/u"}) == home


def test_wattload_config_shows_values_and_where_they_came_from_and_no_secret(tmp_path):
    path = write_config(tmp_path, 'endpoint = "http://ops:hunter2@gpu-1:8000"\napi_key_env = "VLLM_KEY"\n'
                                  'refresh = 2\nwindow = "30s"\ntheme = "nord"\n')  # fmt: skip
    out = wattload(tmp_path, "config", env={"VLLM_KEY": KEY})
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert str(path) in text
    rows = {line.split()[0]: line for line in text.splitlines() if line and line.split()[0] in (
        "endpoint", "api_key_env", "refresh", "window", "theme", "pricing", "gpu")}  # fmt: skip
    assert "http://ops:***@gpu-1:8000" in rows["endpoint"] and rows["endpoint"].endswith("config file")
    assert "$VLLM_KEY set" in rows["api_key_env"] and rows["api_key_env"].endswith("config file")
    assert "2 Hz" in rows["refresh"] and "30 s" in rows["window"] and "nord" in rows["theme"]
    assert rows["pricing"].endswith("built-in default") and rows["gpu"].endswith("built-in default")
    assert "hunter2" not in text + out.stderr and KEY not in text + out.stderr


def test_without_a_file_everything_is_a_built_in_default(tmp_path):
    out = wattload(tmp_path, "config")
    assert out.returncode == 0 and "not found" in out.stdout
    rows = [line for line in out.stdout.splitlines()[2:] if line.strip() and not line.startswith("Flags")]
    assert len(rows) == 9 and all(line.endswith("built-in default") for line in rows)


@pytest.mark.parametrize(("text", "why"), [
    (f'api_key = "{KEY}"\n', "api_key does not belong in a file"),
    ("refreshh = 4\n", "unknown setting 'refreshh'"),
    ("refresh = -1\n", "refresh"),
    ('window = "soon"\n', "not a duration"),
    ('gpu = "cuda"\n', "must be one of"),
    ('api_key_env = "sk-abc def"\n', "environment variable's name"),
    ("refresh = [\n", "not valid TOML"),
])  # fmt: skip
def test_a_bad_file_is_one_line_and_never_echoes_a_key(tmp_path, text, why):
    write_config(tmp_path, text)
    out = wattload(tmp_path, "config")
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and why in lines[0] and "Traceback" not in out.stderr
    assert KEY not in out.stderr + out.stdout


def parsed(tmp_path: Path, text: str, argv: list[str], env: dict[str, str] | None = None):
    settings = load_settings(write_config(tmp_path, text))
    parser = build_parser(argv[0])
    apply_to_parser(settings, parser)
    args = parser.parse_args(argv)
    apply_to_args(settings, args, env or {})
    return args


def test_flags_beat_the_file_and_the_file_beats_the_built_in_defaults(tmp_path):
    text = 'endpoint = "http://gpu-1:8000"\nrefresh = 2\nstep = 8\nwindow = "30s"\nrecord_dir = "/data/rec"\n'
    args = parsed(tmp_path, text, ["run"])
    got = (args.url, args.refresh, args.step, args.window, args.record_dir)
    assert got == ("http://gpu-1:8000", 2, 8, 30, "/data/rec")
    args = parsed(tmp_path, text, ["run", "http://other:9000", "--refresh", "8", "--step", "2", "--window", "5s"])
    assert (args.url, args.refresh, args.step, args.window) == ("http://other:9000", 8, 2, 5)
    assert parsed(tmp_path, text, ["run", "--sim"]).url is None  # --sim is an endpoint too: no conflict
    assert parsed(tmp_path, text, ["demo"]).step == 8  # the demo's own default (4) gives way to the file's
    assert parsed(tmp_path, 'record_dir = "~/rec"\n', ["demo"]).record_dir == str(Path.home() / "rec")
    assert parsed(tmp_path, text, ["sweep", "http://x:1"]).window is None  # a sweep keeps its own meaning of unset
    assert parsed(tmp_path, "", ["run", "http://x:1"]).refresh == build_parser("run").parse_args(
        ["run", "http://x:1"]).refresh  # fmt: skip


def test_the_api_key_comes_from_the_variable_the_file_names_and_the_flag_wins(tmp_path):
    text = 'api_key_env = "VLLM_KEY"\n'
    assert parsed(tmp_path, text, ["run", "http://x:1"], {"VLLM_KEY": KEY}).api_key == KEY
    assert parsed(tmp_path, text, ["run", "http://x:1"], {}).api_key is None  # unset: the usual variables then
    assert parsed(tmp_path, text, ["run", "http://x:1", "--api-key", "flag"], {"VLLM_KEY": KEY}).api_key == "flag"


async def test_the_theme_from_the_file_colours_the_dashboard():
    app = WattloadApp(LiveDashboard(CannedControl(session(8))), refresh_hz=0, theme="nord")
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: app.theme == "nord", what="the nord theme")
    wrong = WattloadApp(LiveDashboard(CannedControl(session(8))), refresh_hz=0, theme="no-such-theme")
    async with wrong.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: any(kind == "theme" and "no-such-theme" in message
                                       for kind, message in wrong.toasts.said), what="the unknown-theme warning")
        assert wrong.theme != "no-such-theme"

"""`wattload` against hostile servers and hostile input, as a user runs it: one clear line, the right exit code,
no secret anywhere, numbers that were checked. Real HTTP on 127.0.0.1 (hostile server and the simulator)."""

from __future__ import annotations

import asyncio
import json
import re
import stat
import subprocess
import sys
import time

import pytest
from engine_helpers import free_port, sim_server
from hostile import MODEL, SECRET

from engine.sim.model import SimConfig
from tui.cli import main

WATTLOAD = [sys.executable, "-m", "tui.cli"]
PASSWORD = "pw-9f8e7d6c5b4a"
SIM = SimConfig(speed=50.0)  # conftest.py sim_url
# These cases test the load path: without --no-calibrate the default calibration (issue 10) would first send
# probe requests of its own to the hostile server, adding their lines and requests to what each case counts.
LOAD = ["--headless", "--workers", "1", "--gpu", "none", "--no-calibrate"]


def with_password(url: str) -> str:
    return url.replace("http://", f"http://alice:{PASSWORD}@")


def run_cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str, *fragments: str) -> str:
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("wattload: "), err
    assert len(lines[0]) <= 320, len(lines[0])
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# -- usage that lies, end to end -------------------------------------------------------------------------------

def test_negative_usage_is_not_summed_and_one_line_names_the_requests(capsys, hostile, tmp_path):
    out_json = tmp_path / "r.json"
    code, out, _ = run_cli(capsys, ["run", hostile.url("usage-negative"), *LOAD, "-c", "2", "-n", "4",
                                    "--json", str(out_json)])
    assert code == 0
    assert not re.search(r"-\d[\d.]* (input|output) tok/s|input -\d", out), out
    assert re.search(r"usage was rejected for [4-9] requests \(usage\.prompt_tokens is negative", out), out
    result = json.loads(out_json.read_text())["result"]
    assert result["usage_rejected"] >= 4 and result["total"]["input_tokens"] == 0
    assert result["tokens_estimated"] is True


def test_usage_of_a_trillion_tokens_never_reaches_the_throughput(capsys, hostile):
    code, out, _ = run_cli(capsys, ["run", hostile.url("usage-huge"), *LOAD, "-c", "2", "-n", "4"])
    assert code == 0
    assert "G tok/s" not in out and "absurd" in out


def test_usage_above_int64_does_not_stop_the_recording(capsys, hostile, tmp_path):
    from engine.storage.reader import open_recording

    path = tmp_path / "big.wattload.sqlite"
    code, _, err = run_cli(capsys, ["run", hostile.url("usage-over-int64"), *LOAD, "-c", "2", "-n", "6",
                                    "--record", str(path)])
    assert code == 0 and "recording stopped" not in err
    with open_recording(path) as rec:
        assert rec.row_count("requests") >= 6
        assert rec.closed_cleanly


def test_usage_disagreeing_with_the_stream_is_flagged(capsys, hostile):
    code, out, _ = run_cli(capsys, ["run", hostile.url("usage-mismatch"), *LOAD, "-c", "2", "-n", "4",
                                    "--max-tokens", "16"])
    assert code == 0
    assert "usage says 500 output tokens, more than max_tokens 16" in out


# -- servers that do not stream, or list too much --------------------------------------------------------------

@pytest.mark.parametrize(("case", "kind"), [("json-200", "application/json"), ("html-200", "text/html"),
                                            ("no-content-type", "no Content-Type")])
def test_a_200_that_is_not_an_event_stream_says_the_server_does_not_stream(capsys, hostile, case, kind):
    code, _, err = run_cli(capsys, ["run", hostile.url(case), *LOAD, "-n", "2"])
    assert code == 2
    one_error_line(err, "does not stream", kind)


def test_five_thousand_models_make_one_readable_line(capsys, hostile):
    code, _, err = run_cli(capsys, ["run", hostile.url("many-models"), *LOAD, "-n", "1"])
    assert code == 2
    one_error_line(err, "5,000 models", "more", "--model")


def test_an_unknown_model_among_five_thousand_makes_one_readable_line(capsys, hostile):
    code, _, err = run_cli(capsys, ["run", hostile.url("many-models"), *LOAD, "-n", "1", "--model", "nope"])
    assert code == 2
    one_error_line(err, "'nope' is not served", "more")


def test_a_broken_model_list_stops_the_run_unless_the_model_is_named(capsys, hostile):
    code, _, err = run_cli(capsys, ["run", hostile.url("models-500"), *LOAD, "-n", "2"])
    assert code == 2
    one_error_line(err, "HTTP 500", "model registry unavailable")
    code, out, err = run_cli(capsys, ["run", hostile.url("models-500"), *LOAD, "-n", "2", "--model", MODEL])
    assert code == 0, err
    assert "HTTP 500" in err and "going on with --model 'hostile-model'" in err
    assert re.search(r"\b2 ok\b", out), out


# -- secrets ---------------------------------------------------------------------------------------------------

def test_url_credentials_and_an_api_key_conflict_in_one_line(capsys, sim_url):
    code, _, err = run_cli(capsys, ["run", with_password(sim_url), *LOAD, "-n", "1", "--api-key", SECRET])
    assert code == 2
    line = one_error_line(err, "carries credentials", "API key")
    assert PASSWORD not in line and SECRET not in line


def test_a_url_password_reaches_neither_the_summary_nor_the_json(capsys, sim_url, tmp_path):
    out_json = tmp_path / "r.json"
    code, out, err = run_cli(capsys, ["run", with_password(sim_url), *LOAD, "-n", "3", "--json", str(out_json)])
    assert code == 0, err
    assert PASSWORD not in out + err
    text = out_json.read_text()
    assert PASSWORD not in text
    report = json.loads(text)
    assert "alice:***@" in report["settings"]["base_url"] and "alice:***@" in report["result"]["endpoint"]


def test_a_url_password_is_not_in_the_cannot_connect_line(capsys):
    code, _, err = run_cli(capsys, ["run", with_password(f"http://127.0.0.1:{free_port()}"), *LOAD])
    assert code == 2
    assert PASSWORD not in err and "cannot connect" in err


def test_a_url_password_is_not_in_the_unknown_model_line(capsys, sim_url):
    code, _, err = run_cli(capsys, ["run", with_password(sim_url), *LOAD, "--model", "nope"])
    assert code == 2
    assert PASSWORD not in err and "'nope' is not served" in err


def test_a_preflight_warning_quoting_an_upstream_bearer_token_is_scrubbed(capsys, hostile):
    code, out, err = run_cli(capsys, ["run", hostile.url("echo-bearer"), *LOAD, "-c", "1", "-n", "2"])
    assert "sk-upstream" not in out + err and "0a9f8e7d6c5b" not in out + err
    assert "starting anyway" in err and code == 1  # every request failed: exit 1, said so


def test_a_models_error_quoting_a_bearer_token_is_scrubbed(capsys, hostile):
    code, _, err = run_cli(capsys, ["run", hostile.url("models-echo-bearer"), *LOAD])
    assert code == 2 and "HTTP 502" in err
    assert "0a9f8e7d6c5b" not in err
    code, _, err = run_cli(capsys, ["run", hostile.url("models-echo-bearer"), *LOAD, "-n", "1", "--model", MODEL])
    assert code == 0 and "HTTP 502" in err and "going on with --model" in err  # the warning quotes the server too
    assert "0a9f8e7d6c5b" not in err


def test_the_dashboard_header_and_saved_settings_show_no_url_password():
    from engine.config import RunConfig
    from engine.load.controller import Controller

    config = RunConfig(base_url=with_password("http://127.0.0.1:9/v1"), model="m", workers=1)
    assert PASSWORD not in json.dumps(config.safe_dump())
    controller = Controller(config)  # not started: its first snapshot is what the header shows before the load
    try:
        assert PASSWORD not in controller.latest.endpoint and "alice:***@" in controller.latest.endpoint
    finally:
        controller.close()


def test_the_sweep_report_names_the_endpoint_without_its_password(capsys, tmp_path):
    out_json = tmp_path / "s.json"
    with sim_server(speed=100.0) as url:
        code, out, err = run_cli(capsys, ["sweep", with_password(url), "--profile", "chat-short", "--start", "1",
                                          "--max", "1", "--step-time", "1.5s", "--window", "1s", "--workers", "1",
                                          "--gpu", "none", "--json", str(out_json)])
    assert code == 0, err
    assert PASSWORD not in out_json.read_text() + out + err


# -- runs that cannot end, and outputs that cannot be written ----------------------------------------------------

@pytest.mark.parametrize("shape", [["--rate", "0"], ["-c", "0"]])
def test_a_headless_run_with_no_load_says_so_at_once(shape, sim_url):
    t = time.monotonic()
    proc = subprocess.run([*WATTLOAD, "run", sim_url, *LOAD, *shape, "-n", "3"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and time.monotonic() - t < 30
    one_error_line(proc.stderr, "never end")


def test_json_into_a_missing_directory_is_refused_before_the_run(capsys, sim_url, tmp_path):
    code, out, err = run_cli(capsys, ["run", sim_url, *LOAD, "-n", "2", "--json", str(tmp_path / "no" / "r.json")])
    assert code == 2 and out == ""  # nothing ran
    one_error_line(err, "no directory")


def test_json_below_a_file_says_not_a_directory(capsys, sim_url, tmp_path):
    (tmp_path / "afile").write_text("x")
    code, out, err = run_cli(capsys, ["run", sim_url, *LOAD, "-n", "2", "--json", str(tmp_path / "afile" / "r.json")])
    assert code == 2 and out == ""
    one_error_line(err, "afile is not a directory")


def test_json_onto_a_directory_says_so(capsys, sim_url, tmp_path):
    code, out, err = run_cli(capsys, ["run", sim_url, *LOAD, "-n", "2", "--json", str(tmp_path)])
    assert code == 2 and out == ""
    one_error_line(err, "is a directory")


def test_sweep_csv_into_a_missing_directory_is_refused_before_sweeping(capsys, sim_url, tmp_path):
    code, _, err = run_cli(capsys, ["sweep", sim_url, "--csv", str(tmp_path / "none" / "s.csv")])
    assert code == 2 and "sweeping" not in err
    one_error_line(err, "--csv", "no directory")


def test_a_recording_below_a_file_says_not_a_directory(capsys, sim_url, tmp_path):
    (tmp_path / "afile").write_text("x")
    code, _, err = run_cli(capsys, ["run", sim_url, *LOAD, "-n", "2", "--record", str(tmp_path / "afile" / "r.sqlite")])
    assert code == 2
    line = one_error_line(err, "is not a directory")
    assert "File exists" not in line


def test_a_run_where_nothing_succeeded_exits_1_and_says_so(capsys):
    with sim_server(speed=50.0, error_rate=1.0) as url:
        code, out, err = run_cli(capsys, ["run", url, *LOAD, "-c", "2", "-n", "4"])
    assert code == 1
    assert "no request succeeded" in err and "http_5xx" in err
    assert "0 ok" in out


def test_read_timeout_flag_ends_a_stalled_run_in_seconds(capsys, hostile):
    t = time.monotonic()
    code, out, _ = run_cli(capsys, ["run", hostile.url("stall-after-headers"), *LOAD, "-c", "1", "-n", "1",
                                    "--read-timeout", "1s"])
    assert time.monotonic() - t < 25
    assert code == 1 and "timeout 1" in out


def test_request_timeout_flag_bounds_a_stream_of_keepalives(capsys, hostile):
    t = time.monotonic()
    code, out, _ = run_cli(capsys, ["run", hostile.url("keepalive-forever"), *LOAD, "-c", "1", "-n", "1",
                                    "--read-timeout", "20s", "--request-timeout", "1s"])
    assert time.monotonic() - t < 30
    assert code == 1 and "timeout 1" in out


# -- 429 Retry-After: the closed loop waits, counted -------------------------------------------------------------

def test_closed_loop_honours_retry_after_and_counts_it(capsys, hostile, tmp_path):
    before = hostile.requests.get("retry-after", 0)
    out_json = tmp_path / "r.json"
    code, out, _ = run_cli(capsys, ["run", hostile.url("retry-after"), *LOAD, "-c", "1", "-d", "2.5s",
                                    "--json", str(out_json)])
    sent = hostile.requests.get("retry-after", 0) - before
    assert 2 <= sent <= 6, sent  # one try per second (plus the preflight), not hundreds
    assert "asked to retry later" in out
    assert json.loads(out_json.read_text())["result"]["retry_after"] >= 1
    assert code == 1  # nothing succeeded


# -- outputs and files -------------------------------------------------------------------------------------------

def test_gpu_json_without_a_gpu_is_still_json(capsys):
    code, out, _ = run_cli(capsys, ["gpu", "--json", "--backend", "none"])
    data = json.loads(out)
    assert code == 0 and data["gpus"] == [] and data["gpu_message"] and "hostname" in data


def test_recordings_are_created_owner_only(capsys, sim_url, tmp_path):
    path = tmp_path / "r.wattload.sqlite"
    code, _, _ = run_cli(capsys, ["run", sim_url, *LOAD, "-n", "2", "--record", str(path)])
    assert code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_no_color_replay_draws_without_crashing(capsys, sim_url, tmp_path, monkeypatch):
    path = tmp_path / "r.wattload.sqlite"
    assert run_cli(capsys, ["run", sim_url, *LOAD, "-n", "3", "--record", str(path)])[0] == 0
    monkeypatch.setenv("NO_COLOR", "1")
    from engine.replay.player import Player
    from tui.app import replay_app

    async def drive() -> int:
        player = Player(path, playing=True)
        app = replay_app(player)
        try:
            async with app.run_test(size=(160, 48)) as pilot:
                await pilot.pause(0.5)
                await pilot.press("space")
                await pilot.pause(0.3)
                return app.renders
        finally:
            player.close()

    assert asyncio.run(drive()) > 0


RECORD_FULL = """
import resource, sys
resource.setrlimit(resource.RLIMIT_FSIZE, (120_000, 120_000))
from tui.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_recording_that_stops_says_so_on_the_terminal_and_in_the_json(tmp_path, sim_url):
    rec, out_json = tmp_path / "full.wattload.sqlite", tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-c", RECORD_FULL, "run", sim_url, *LOAD, "-c", "16", "-d", "4s",
                           "--record", str(rec), "--record-tokens", "--json", str(out_json)],
                          capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(r"wattload: recording stopped: .*disk", proc.stderr), proc.stderr[-2000:]
    assert "the run goes on" not in proc.stderr
    report = json.loads(out_json.read_text())
    assert report["recording"] == str(rec) and report["recording_failed"].startswith("recording stopped")

"""`wattload run`: one clear line and exit 2 for what the user must fix; a summary, a report without the key, and
a clean Ctrl-C for real runs. Real loopback HTTP against the simulator (and one tiny stdlib server)."""

import json
import re
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from engine_helpers import free_port, root_of, sim_server, wait_for

from engine.endpoint.client import IGNORE_EOS_REJECTED
from engine.sim.model import SimConfig
from engine.sim.process import start_sim_process
from tui.cli import main

SECRET = "sk-wattload-test-4f1c9e0b7d2a"
WATTLOAD = [sys.executable, "-m", "tui.cli"]
SIM = SimConfig(speed=20.0)  # conftest.py sim_url


def fails_with_one_line(capsys, argv: list[str], *fragments: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wattload: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in err
    return lines[0]


def test_unreachable_endpoint(capsys):
    fails_with_one_line(capsys, ["run", f"http://127.0.0.1:{free_port()}", "--headless"], "cannot connect",
                        "connection refused")


def test_wrong_path(capsys, sim_url):
    fails_with_one_line(capsys, ["run", root_of(sim_url) + "/nothing/here", "--headless"], "no OpenAI-compatible API")


def test_unknown_model(capsys, sim_url):
    fails_with_one_line(capsys, ["run", sim_url, "--model", "nope", "--headless"], "'nope' is not served", "--model")


def test_key_messages_name_the_fix(capsys):
    with sim_server(speed=20.0, api_key=SECRET) as url:
        fails_with_one_line(capsys, ["run", url, "--headless"], "HTTP 401", "--api-key")
        line = fails_with_one_line(capsys, ["run", url, "--headless", "--api-key", "sk-wrong"], "refused the API key")
        assert "sk-wrong" not in line


def test_ignore_eos_rejected_says_so(capsys):
    with sim_server(speed=20.0, strict_fields=True) as url:
        line = fails_with_one_line(capsys, ["run", url, "--headless", "--ignore-eos"])
    # the length calibration's one-token probes are the first requests shaped like the run's: they meet the 422
    assert line == f"wattload: calibration probe failed: {IGNORE_EOS_REJECTED}"


class _TwoModels(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"object": "list", "data": [{"id": "alpha"}, {"id": "beta"}]}).encode()
        self.send_response(200 if self.path == "/v1/models" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_several_models_ask_for_one(capsys):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TwoModels)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        fails_with_one_line(capsys, ["run", url, "--headless"], "2 models", "alpha, beta", "--model")
    finally:
        server.shutdown()
        server.server_close()


class _AnswersWithoutStreaming(BaseHTTPRequestHandler):
    """Lists one model; answers every POST with a 200 JSON body, as a non-streaming (or wrong) endpoint does."""

    def _send(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the preflight reads the headers only
            pass

    def do_GET(self):
        self._send(json.dumps({"object": "list", "data": [{"id": "solo"}]}).encode())

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._send(b'{"choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":9,"completion_tokens":1}}')

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("calibrate", [[], ["--no-calibrate"]])
def test_a_200_that_does_not_stream_is_one_fatal_line(capsys, calibrate):
    """The calibration probe meets it first: fatal there, in one line (not a note, then the load's own line)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AnswersWithoutStreaming)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        fails_with_one_line(capsys, ["run", url, "--headless", "-n", "2", *calibrate], "application/json",
                            "OpenAI-compatible")
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    "argv",
    [["--concurrency", "-1"], ["--duration", "soon"], ["--rate", "x"], ["-c", "2", "--rate", "3"], ["--api", "grpc"]],
)
def test_bad_flag_values_are_argparse_errors(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "http://127.0.0.1:9", *argv])
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_neither_url_nor_sim(capsys):
    fails_with_one_line(capsys, ["run", "--headless"], "--sim")


def test_json_report_has_the_figures_and_never_the_key(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    out = tmp_path / "report.json"
    with sim_server(speed=20.0, api_key=SECRET) as url:
        code = main(["run", url, "--headless", "-n", "6", "-c", "3", "--max-tokens", "8", "--json", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    text = out.read_text()
    assert SECRET not in text and SECRET not in printed.out and SECRET not in printed.err
    report = json.loads(text)
    assert report["settings"]["base_url"] == url and "api_key" not in report["settings"]
    assert report["result"]["total"]["requests"] == 6
    assert report["result"]["total"]["output_tokens"] == 6 * 8
    assert report["state"] == "stopped" and report["stop_reason"] == "request count reached (6)"
    assert "6 ok, no errors" in printed.out and "TTFT" in printed.out


def test_server_faults_during_a_run_are_counted_by_class_and_the_run_goes_on(tmp_path, capsys):
    out = tmp_path / "faults.json"
    with sim_server(speed=20.0, seed=7, error_rate=0.2, rate_429=0.1, reset_rate=0.15, malformed_rate=0.15) as url:
        code = main(["run", url, "--headless", "-n", "40", "-c", "4", "--max-tokens", "8", "--json", str(out)])
    captured = capsys.readouterr()
    printed = captured.out
    assert code == 0, captured.err
    assert "input lengths not calibrated (calibration probe failed: " in captured.err  # a flaky server still runs
    total = json.loads(out.read_text())["result"]["total"]
    assert total["requests"] + total["errors"] == 40
    assert set(total["errors_by_class"]) == {"http_5xx", "http_429", "stream_broken", "malformed"}
    for cls, n in total["errors_by_class"].items():
        assert f"{cls} {n}" in printed


def test_sim_flag_runs_against_the_simulated_server_and_its_gpu(tmp_path):
    out = tmp_path / "sim.json"
    done = subprocess.run([*WATTLOAD, "run", "--sim", "--headless", "-n", "4", "--max-tokens", "8", "--json", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["result"]["total"]["requests"] == 4
    assert report["result"]["gpu"]["source"] == "sim"


def test_demo_headless_prints_the_summary_and_writes_runs_report(tmp_path, capsys):
    """`demo --headless --json` is `run --headless --json` on the demo's simulator: the same report model (which
    forbids extra keys), the simulated GPU's energy, and the summary table on stdout."""
    from engine.reports.summary import RunReport

    out = tmp_path / "demo.json"
    code = main(["demo", "--headless", "-n", "6", "-c", "2", "--workers", "1", "--max-tokens", "16", "--sim-speed",
                 "10", "--json", str(out)])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    assert "requests    6 ok, no errors" in captured.out and "GPU         sim:" in captured.out
    report = RunReport.model_validate_json(out.read_text())
    assert report.state == "stopped" and report.result.total.requests == 6
    assert report.settings["concurrency"] == 2 and report.result.gpu.source == "sim" and report.system is not None


def test_demo_headless_refuses_a_load_that_never_ends(capsys):
    fails_with_one_line(capsys, ["demo", "--headless", "-c", "0"], "--concurrency 0", "never end")


def test_ctrl_c_stops_cleanly_and_still_prints_the_summary():
    with start_sim_process(SimConfig(speed=1.0)) as server:
        # --no-calibrate: the sim's success counter below must count the run's requests, not calibration probes
        proc = subprocess.Popen([*WATTLOAD, "run", server.url, "--headless", "-c", "4", "--max-tokens", "64",
                                 "--no-calibrate"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            metrics = f"{root_of(server.url)}/metrics"

            def finished_some() -> bool:
                text = httpx.get(metrics, timeout=5).text
                found = re.search(r"^vllm:request_success_total\S* (\d+)", text, re.MULTILINE)
                return found is not None and int(found.group(1)) >= 4

            wait_for(finished_some, 60, "the run to finish a few requests")
            time.sleep(0.3)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    assert "wattload run: " in out and "stopped by the operator" in out
    assert re.search(r"requests\s+\d+ ok", out)


def test_profile_and_record_from_the_start(capsys, sim_url, tmp_path):
    """--profile shapes and calibrates the requests; --record captures the whole session, tokens on request."""
    from engine.storage.reader import open_recording

    path = tmp_path / "run.wattload.sqlite"
    code = main(["run", sim_url, "--headless", "--workers", "1", "-c", "2", "-n", "6", "--profile", "chat-short",
                 "--record", str(path), "--record-tokens", "--gpu", "none"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "input length calibrated on the server: target 128 tokens" in err
    recording = open_recording(path)
    try:
        assert recording.meta.session.workload == "chat-short"
        assert recording.meta.record_tokens is True
        assert recording.meta.system["python"]  # the host metadata came from the live session
        assert recording.meta.workload["name"] == "chat-short"
        assert recording.row_count("requests") >= 6
        assert recording.row_count("token_times") >= 6
    finally:
        recording.close()


def test_record_to_an_unwritable_place_is_one_line(capsys, sim_url, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    fails_with_one_line(capsys, ["run", sim_url, "--headless", "-n", "1", "--gpu", "none", "--no-calibrate",
                                 "--record", str(blocker / "x.sqlite")], "cannot record")


def test_record_dir_names_where_a_default_recording_goes(capsys, sim_url, tmp_path):
    """--record without a path writes under --record-dir (as `r` does), never under ./recordings."""
    target = tmp_path / "recs"
    code = main(["run", sim_url, "--headless", "--workers", "1", "-c", "1", "-n", "2", "--max-tokens", "4",
                 "--record", "--record-dir", str(target), "--gpu", "none"])
    err = capsys.readouterr().err
    assert code == 0, err
    files = list(target.glob("*.wattload.sqlite"))
    assert len(files) == 1, (err, list(target.iterdir()) if target.exists() else None)
    assert f"recording to {files[0]}" in err


def test_input_tokens_are_calibrated_by_default_and_the_report_shows_target_and_measured(capsys, sim_url, tmp_path):
    """Plain --input-tokens gets the same one-token probes as a profile: the prompts land on 128 by the server's
    own usage (the simulator's chat template adds tokens the words alone would not), and the summary and
    --json say target vs measured, with the system the run was measured on."""
    out = tmp_path / "calibrated.json"
    argv = ["run", sim_url, "--headless", "--workers", "1", "-c", "4", "-n", "20", "--input-tokens", "128",
            "--max-tokens", "4", "--gpu", "none"]
    code = main([*argv, "--json", str(out)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "input length calibrated on the server: target 128 tokens" in printed.err
    report = json.loads(out.read_text())
    lengths = report["lengths"]
    assert lengths["requests"] == 20 and lengths["target_input"] == 128 and lengths["target_output"] == 4
    assert abs(lengths["actual_input"] - 128) <= 0.02 * 128, lengths
    assert lengths["actual_output"] == 4
    assert report["calibration"]["target_tokens"] == 128 and report["calibration"]["probes"] > 0
    assert re.search(r"lengths +input 128 -> 1[23]\d\.\d \([+-]\d+\.\d%\), output 4 -> 4\.0", printed.out)
    assert report["system"]["python"] and "hostname" in report["system"]

    raw = tmp_path / "raw.json"
    code = main([*argv, "--no-calibrate", "--json", str(raw)])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "calibrated" not in printed.err
    uncalibrated = json.loads(raw.read_text())
    assert uncalibrated["calibration"] is None and uncalibrated["lengths"]["target_input"] == 128
    assert uncalibrated["lengths"]["actual_input"] != lengths["actual_input"]  # the words alone miss the target

"""`wattload run` with --server-metrics and --gpu-metrics against the simulator: the JSON carries both."""

import json

from engine_helpers import root_of, sim_server

from tui.cli import main


def test_server_figures_and_dcgm_energy_go_into_the_json(tmp_path, capsys):
    out = tmp_path / "out.json"
    with sim_server(speed=5.0) as url:
        code = main(["run", url, "--headless", "-d", "3s", "-c", "4", "--max-tokens", "16", "--workers", "1",
                     "--server-metrics", "auto", "--gpu", "none", "--gpu-metrics", root_of(url) + "/sim/dcgm/metrics",
                     "--scrape-interval", "200ms", "--json", str(out)])  # fmt: skip
    printed = capsys.readouterr()
    assert code == 0, printed.err
    result = json.loads(out.read_text())["result"]
    server, gpu = result["server"], result["gpu"]
    assert server["available"] and server["engine"] == "vllm"
    assert server["endpoints"][0]["source"] == root_of(url) + "/metrics"
    for key in ("running", "waiting", "kv_usage_pct"):
        assert server[key] is not None
    assert server["generation_tokens_per_s"] > 0
    assert server["ttft"]["count"] > 0 and server["ttft_gap_p50_ms"] is not None
    assert gpu["source"] == "dcgm" and gpu["total"]["energy_j"] > 0
    assert "server      vllm: running" in printed.out
    assert "GPU         dcgm:" in printed.out


def test_contradictory_telemetry_options_are_one_line(capsys):
    assert main(["run", "http://127.0.0.1:9/v1", "--headless", "--prometheus", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("--prometheus needs --gpu-query and/or --server-query (what to read from it)")


def test_an_exporter_that_does_not_answer_is_one_line_and_the_run_goes_on(tmp_path, capsys):
    out = tmp_path / "out.json"
    with sim_server(speed=20.0) as url:
        code = main(["run", url, "--headless", "-n", "4", "-c", "2", "--max-tokens", "4", "--workers", "1",
                     "--gpu", "none", "--gpu-metrics", "http://127.0.0.1:9/metrics", "--json", str(out)])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0
    assert "wattload: no GPU telemetry: dcgm: http://127.0.0.1:9/metrics: ConnectError" in err
    assert json.loads(out.read_text())["result"]["total"]["requests"] == 4

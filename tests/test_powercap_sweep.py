"""`wattload sweep --power-caps` against the simulated server over loopback.

The expected sweet spot is computed from the simulator's own GPU model (``steady_decode``) with the same rule, and
the test first checks that the model puts it clear of the slowdown limit, so noise in a short window cannot move
it. The measured curve sits a few percent below that decode-only model (a cap slows prefill too, and a closed
loop's batch shrinks with it): at real time, 3 s windows and concurrency 32, 350 W measured 0.91-0.95 of full
speed where the model says 0.96-0.98, and 225 W 0.62-0.76 (model 0.73-0.76). A 15% limit leaves 350 W some 6
points inside and 225 W 9 points outside; at 10% the spot sat 1-4 points from the limit and failed now and then.

Caps are restored on normal exit, SIGTERM and Ctrl-C: the simulator starts at 650 W (not its 700 W default), and
its limit is read back over HTTP after wattload has gone.
"""

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from engine.sim.model import SimConfig, steady_decode

pytestmark = pytest.mark.slow

START_W = 650.0
SIM = SimConfig(speed=1, power_limit_w=START_W)  # real time: at 2x the client's share of a step blurred 350 W
# 700 W does not bind at this load (a 450 W cap would not either: the same figures, so not measured again); 350 W
# binds a little (the sweet spot), 225 W too much (the energy pick). Three caps x two repetitions of 3 s.
CAPS = [700.0, 350.0, 225.0]
CONCURRENCY = 32
SLOWDOWN = 0.15


def sim_limit(url: str) -> float:
    return httpx.get(url.removesuffix("/v1") + "/sim/gpu", timeout=5).json()["power_limit_w"]


def model_sweet_spot(batch: int) -> tuple[float, dict[float, float]]:
    full = steady_decode(SIM, batch, CAPS[0])
    rel = {c: steady_decode(SIM, batch, c).output_tokens_per_s / full.output_tokens_per_s for c in CAPS}
    within = [c for c in CAPS if rel[c] >= 1 - SLOWDOWN]
    return min(within, key=lambda c: (steady_decode(SIM, batch, c).joules_per_token, -c)), rel


def profile(tmp_path):
    path = tmp_path / "short.toml"
    path.write_text('description = "cap sweep test"\napi = "completions"\ninput = 32\noutput = 64\nignore_eos = true\n')
    return str(path)


def sweep_argv(sim_process, tmp_path, *extra):
    return [sys.executable, "-m", "tui.cli", "sweep", sim_process.url, "--gpu", "sim", "--profile", profile(tmp_path),
            "--workers", "1", "--refresh", "10", *extra]  # fmt: skip


def env(tmp_path):
    return {**os.environ, "WATTLOAD_STATE_DIR": str(tmp_path / "state"), "PYTHONUNBUFFERED": "1"}


def test_the_model_puts_the_sweet_spot_clear_of_the_limit():
    # a closed loop's effective batch is a little under its concurrency (client round trips): check a range
    for batch in (22, 27, CONCURRENCY):
        spot, rel = model_sweet_spot(batch)
        assert spot == 350.0
        assert rel[350.0] >= 1 - SLOWDOWN + 0.08 and rel[225.0] <= 1 - SLOWDOWN - 0.08


@pytest.mark.own_core  # it compares throughput between caps: a CPU-starved client or simulator would blur that
def test_repeat_2_finds_the_models_sweet_spot_and_restores_the_cap(sim_process, tmp_path):
    expected, _ = model_sweet_spot(CONCURRENCY)
    out = tmp_path / "caps.json"
    argv = sweep_argv(sim_process, tmp_path, "--power-caps", ",".join(f"{c:g}" for c in CAPS), "-c", str(CONCURRENCY),
                      "--step-time", "3s", "--repeat", "2", "--max-slowdown", f"{SLOWDOWN:.0%}", "--json", str(out),
                      "--csv", str(tmp_path / "caps.csv"))  # fmt: skip
    proc = subprocess.run(argv, env=env(tmp_path), capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    measured = {m["cap_w"]: round(m["figures"]["output_tokens_per_s"]["mean"]) for m in report["powercap"]["summaries"]}
    assert f"sweet spot: {expected:.0f} W" in proc.stdout, f"output tok/s by cap: {measured}\n{proc.stdout[-1500:]}"
    assert report["kind"] == "powercap"
    result = report["powercap"]
    assert result["sweet_spot"]["cap_w"] == expected
    assert result["alternatives"]["energy"]["cap_w"] == 225.0
    assert sim_limit(sim_process.url) == START_W  # restored to what it was, not to the default
    steps = result["steps"]
    assert sorted({s["repetition"] for s in steps}) == [1, 2] and len(steps) == 2 * len(CAPS)
    # (a single repetition's own pick is not asserted: one 3 s window on a busy shared box can move a cap across
    # the limit; the mean over the repetitions is what the sweep reports)
    for summary in result["summaries"]:
        mine = [s for s in steps if s["cap_w"] == summary["cap_w"]]
        for name in ("output_tokens_per_s", "watts", "joules_per_output_token"):
            iv = summary["figures"][name]
            assert iv["n"] == 2 and iv["half_width"] is not None
            for s in mine:
                assert iv["mean"] - iv["half_width"] - 1e-9 <= s["step"][name] <= iv["mean"] + iv["half_width"] + 1e-9
    binding = {s["cap_w"]: s["cap_binding"] for s in result["summaries"]}
    assert binding[225.0] and not binding[700.0]
    lines = (tmp_path / "caps.csv").read_text().splitlines()
    assert lines[0].startswith("repetition,concurrency,cap_w") and len(lines) == 1 + 2 * len(CAPS)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_sweep_restores_the_original_cap(sim_process, tmp_path, sig):
    argv = sweep_argv(sim_process, tmp_path, "--power-caps", "400,300,250", "-c", "8", "--step-time", "1s",
                      "--min-requests", "5")  # fmt: skip
    proc = subprocess.Popen(argv, env=env(tmp_path), stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    seen = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the first cap was set and measured: the GPU is capped now
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            if "cap 1/3 400 W:" in line:
                break
        assert any("cap 1/3 400 W:" in ln for ln in seen), "".join(seen)[-2000:]
        assert sim_limit(sim_process.url) != START_W
        proc.send_signal(sig)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert sim_limit(sim_process.url) == START_W
    assert rc != 0  # interrupted (130) or terminated by the signal
    assert not (tmp_path / "state" / "powercap.json").exists()  # nothing left for `wattload gpu restore`


def test_a_url_password_never_reaches_the_cap_sweeps_terminal_or_json(sim_process, tmp_path):
    secret = "s3cret-capsweep-pw"
    out = tmp_path / "caps.json"
    argv = sweep_argv(sim_process, tmp_path, "--power-caps", "400", "-c", "2", "--step-time", "1s",
                      "--min-requests", "2", "--json", str(out))  # fmt: skip
    argv[argv.index(sim_process.url)] = sim_process.url.replace("http://", f"http://alice:{secret}@")
    proc = subprocess.run(argv, env=env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]  # 1: a 2-request window may not settle on a busy box
    assert "power-cap sweep of" in proc.stderr
    assert secret not in proc.stdout + proc.stderr
    if out.exists():
        assert secret not in out.read_text()

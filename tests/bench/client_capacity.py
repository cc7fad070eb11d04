"""How many streamed tokens per second can one engine worker process take in? (prints figures; not a pytest test)

The zero-cost fake server (``../shared/bench/fake_openai.py``: 128-token answers, ttft 0, itl 0) runs pinned to
CPU 0; the engine's worker process is pinned to CPU 1 (the controller, which only merges ~10 batches a second,
shares CPU 0 with the server). For 32 and 256 streams it prints the engine's tokens/s next to two bare client
loops on the same core (no parsing, no records, no stamps): aiohttp, the engine's HTTP stack, and httpx, to show
why the hot path is aiohttp. Target: >= 40,000 tokens/s per engine process at 256 streams. "tok/CPU-s" divides
by the worker's measured CPU share: what one fully busy core would take in, whatever else shares the box.

    .venv/bin/python tests/bench/client_capacity.py [--seconds 6] [--streams 32,256] [--fake-server PATH]
                                                    [--no-httpx] [--profile] [--boost]
                                                    [--server-cpu 0] [--client-cpu 1] [--controller-cpu N]

--profile records the worker with py-spy (raw folded stacks in /tmp). --boost (root) renices the server and the
clients to -10 so other jobs sharing these two cores disturb the figures less; the table says which was used.
--server-cpu / --client-cpu / --controller-cpu move the pins (default: controller on the server's CPU), so on a box
with more cores the controller can have its own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_FAKE = REPO.parent / "shared" / "bench" / "fake_openai.py"
SERVER_CPU, CLIENT_CPU = 0, 1
TOKENS = 128
WARMUP_S = 1.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_fake(path: Path, port: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, str(path), "--port", str(port), "--tokens", str(TOKENS), "--ttft-ms", "0", "--itl-ms", "0"]
    proc = subprocess.Popen(["taskset", "-c", str(SERVER_CPU), *cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("fake server did not start")


def boost(pid: int) -> None:
    """Nice -10: shields a benchmark process from other jobs on a shared box (needs root; best effort)."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, -10)
    except OSError as exc:
        print(f"  (cannot renice {pid}: {exc.strerror})", file=sys.stderr)


def engine_run(url: str, streams: int, seconds: float, profile: bool, boosted: bool) -> dict[str, float]:
    """The real engine: a Controller with one worker process pinned to CLIENT_CPU."""
    from engine.config import RunConfig
    from engine.load.controller import Controller
    from engine.records import StreamProgress

    progress: list[StreamProgress] = []

    class Sink:
        def on_records(self, records: object) -> None: ...
        def on_progress(self, p: list[StreamProgress]) -> None:
            progress.extend(p)
        def on_telemetry(self, samples: object) -> None: ...
        def on_event(self, event: object) -> None: ...
        def on_snapshot(self, snapshot: object) -> None: ...
        def close(self) -> None: ...

    config = RunConfig(base_url=url, model="fake-model", concurrency=streams, workers=1, max_tokens=TOKENS,
                       input_tokens=32, duration_s=seconds + WARMUP_S, window_s=seconds)
    controller = Controller(config, sinks=[Sink()], stop_grace_s=0.5)
    controller.start()
    pid = controller.worker_pids[0]
    assert pid is not None
    os.sched_setaffinity(pid, {CLIENT_CPU})
    if boosted:
        boost(pid)
    spy = None
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if profile and py_spy:
        out = f"/tmp/wattload-worker-{streams}.txt"
        spy = subprocess.Popen([py_spy, "record", "-p", str(pid), "-f", "raw", "-o", out, "-d", str(int(seconds)),
                                "-r", "200"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while controller.t0_ns is None and not controller.wait(0.01):
        pass  # the worker is importing and connecting
    t0 = controller.t0_ns or time.perf_counter_ns()
    _sleep_until(t0 + WARMUP_S * 1e9)
    cpu0 = _cpu_seconds(pid)
    _sleep_until(t0 + (WARMUP_S + seconds) * 1e9)
    cpu1 = _cpu_seconds(pid)  # the steady part only: no imports, no drain
    controller.wait(60)
    snap = controller.latest
    controller.close()
    if spy is not None:
        spy.wait(30)
    steady = [p for p in progress if WARMUP_S * 1e9 < p.t_ns - t0 <= (WARMUP_S + seconds) * 1e9]
    span_s = (steady[-1].t_ns - steady[0].t_ns) / 1e9 if len(steady) > 1 else float("nan")
    chunks = sum(p.chunks for p in steady[1:])
    return {
        "tokens_per_s": chunks / span_s,
        "ttft_p50": snap.window.ttft.p50 or float("nan"),
        "ttft_p99": snap.window.ttft.p99 or float("nan"),
        "loop_lag_max": max((p.loop_lag_ms for p in steady), default=float("nan")),
        "cpu_share": (cpu1 - cpu0) / seconds,
    }


def _sleep_until(t_ns: float) -> None:
    time.sleep(max(0.0, (t_ns - time.perf_counter_ns()) / 1e9))


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- bare client loops (run in a child pinned to CLIENT_CPU) ------------------------------------------------------

_BODY = (b'{"model":"fake-model","messages":[{"role":"user","content":"hi"}],"max_tokens":%d,"stream":true}' % TOKENS)
_CONTENT = b'{"content"'  # token chunks: "delta":{"content":" tok"}; the role chunk has {"role"


async def bare_aiohttp(url: str, streams: int, seconds: float) -> float:
    import aiohttp

    count = 0
    counting = False
    stop = time.perf_counter() + WARMUP_S + seconds

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def one() -> None:
            nonlocal count
            while time.perf_counter() < stop:
                async with session.post(url, data=_BODY, headers={"Content-Type": "application/json"}) as resp:
                    while data := await resp.content.readany():
                        if counting:
                            count += data.count(_CONTENT)

        tasks = [asyncio.create_task(one()) for _ in range(streams)]
        await asyncio.sleep(WARMUP_S)
        counting, t = True, time.perf_counter()
        await asyncio.gather(*tasks)
        return count / (time.perf_counter() - t)


async def bare_httpx(url: str, streams: int, seconds: float) -> float:
    import httpx

    count = 0
    counting = False
    stop = time.perf_counter() + WARMUP_S + seconds
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        async def one() -> None:
            nonlocal count
            while time.perf_counter() < stop:
                headers = {"Content-Type": "application/json"}
                async with client.stream("POST", url, content=_BODY, headers=headers) as resp:
                    async for data in resp.aiter_raw():
                        if counting:
                            count += data.count(_CONTENT)

        tasks = [asyncio.create_task(one()) for _ in range(streams)]
        await asyncio.sleep(WARMUP_S)
        counting, t = True, time.perf_counter()
        await asyncio.gather(*tasks)
        return count / (time.perf_counter() - t)


def bare_child(kind: str, url: str, streams: int, seconds: float, boosted: bool) -> None:
    os.sched_setaffinity(0, {CLIENT_CPU})
    if boosted:
        boost(0)
    try:
        import uvloop
    except ImportError:
        run = asyncio.run
    else:
        run = uvloop.run
    fn = bare_aiohttp if kind == "aiohttp" else bare_httpx
    print(f"{run(fn(url + '/chat/completions', streams, seconds)):.1f}")


def bare_run(kind: str, url: str, streams: int, seconds: float, boosted: bool) -> float:
    cmd = [sys.executable, __file__, "--bare", kind, "--url", url, "--streams", str(streams), "--seconds", str(seconds)]
    cmd += ["--boost"] if boosted else []
    cmd += ["--client-cpu", str(CLIENT_CPU)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    if done.returncode != 0:
        print(done.stderr[-1000:], file=sys.stderr)
        return float("nan")
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    global SERVER_CPU, CLIENT_CPU  # --server-cpu / --client-cpu move the module's pins
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fake-server", type=Path, default=DEFAULT_FAKE)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--streams", default="32,256")
    parser.add_argument("--no-httpx", action="store_true")
    parser.add_argument("--profile", action="store_true", help="py-spy the engine worker (raw folded stacks in /tmp)")
    parser.add_argument("--boost", action="store_true", help="renice the server and the clients to -10 (root)")
    parser.add_argument("--server-cpu", type=int, default=SERVER_CPU, help="CPU for the fake server")
    parser.add_argument("--client-cpu", type=int, default=CLIENT_CPU, help="CPU for the engine worker / bare clients")
    parser.add_argument("--controller-cpu", type=int, default=None, help="CPU for this process (default: server's)")
    parser.add_argument("--bare", choices=("aiohttp", "httpx"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    SERVER_CPU, CLIENT_CPU = args.server_cpu, args.client_cpu
    if args.bare:
        bare_child(args.bare, args.url, int(args.streams), args.seconds, args.boost)
        return

    controller_cpu = SERVER_CPU if args.controller_cpu is None else args.controller_cpu
    os.sched_setaffinity(0, {controller_cpu})  # by default the controller shares the server's core
    port = free_port()
    fake = start_fake(args.fake_server, port)
    if args.boost:
        boost(fake.pid)
    url = f"http://127.0.0.1:{port}/v1"
    print(f"fake server pinned to CPU {SERVER_CPU}, clients to CPU {CLIENT_CPU}, controller to CPU {controller_cpu}"
          f"{', niced -10' if args.boost else ''}; "
          f"{TOKENS}-token answers, "
          f"{args.seconds:g} s per point after {WARMUP_S:g} s warm-up; load average before: {os.getloadavg()[0]:.2f}")
    print(f"{'streams':>8} {'engine tok/s':>13} {'worker CPU':>11} {'tok/CPU-s':>10} {'bare aiohttp':>13} "
          f"{'engine/bare':>12} {'bare httpx':>11} {'TTFT p50/p99 ms':>16} {'loop lag':>9}")
    try:
        for streams in (int(s) for s in args.streams.split(",")):
            eng = engine_run(url, streams, args.seconds, args.profile, args.boost)
            bare = bare_run("aiohttp", url, streams, args.seconds, args.boost)
            hx = float("nan") if args.no_httpx else bare_run("httpx", url, streams, args.seconds, args.boost)
            per_cpu = eng["tokens_per_s"] / eng["cpu_share"] if eng["cpu_share"] > 0 else float("nan")
            print(f"{streams:>8} {eng['tokens_per_s']:>13,.0f} {eng['cpu_share']:>10.0%} {per_cpu:>10,.0f} "
                  f"{bare:>13,.0f} {eng['tokens_per_s'] / bare:>12.2f} {hx:>11,.0f} "
                  f"{eng['ttft_p50']:>7.1f}/{eng['ttft_p99']:<8.1f} {eng['loop_lag_max']:>7.1f}ms", flush=True)
    finally:
        fake.terminate()
        fake.wait(10)
    print(f"load average after: {os.getloadavg()[0]:.2f} (other processes on these 2 cores skew every figure)")


if __name__ == "__main__":
    main()

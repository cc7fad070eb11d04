"""How many streamed tokens per second can one engine worker process take in? (prints figures; not a pytest test)

The zero-cost fake server (``../shared/bench/fake_openai.py``: ttft 0, itl 0) runs pinned to its own core(s); the
engine's ONE worker process is pinned to the next core (the controller, which only merges ~10 batches a second,
shares the first server core). For each number of streams and each candidate it prints the engine's tokens/s
and, in the same window, the content chunks the fake server(s) wrote per second (counted inside the server
process): the ceiling the client is measured against ("of server"). "tok/CPU-s" divides by the worker's measured
CPU share: what one fully busy core would take in, whatever else shares the box.

Candidates (``--candidates``, comma-separated, each run in turn at every stream count):

    lean       the engine with --http-client lean (asyncio.Protocol + httptools; the default path), reading
               plain TCP with kernel receive stamps where the kernel gives them (recvmsg, SO_TIMESTAMPNS)
    lean/read  the same, reading through the event loop's own transport, stamped when read
               (WATTLOAD_RECEIVE_STAMPS=read; the path before kernel stamps): what those stamps cost
    aiohttp    the engine with --http-client aiohttp
    raw        no HTTP client at all: a counting asyncio.Protocol on the same core (no parsing, no records): how
               fast the server(s) can emit when the reader costs nearly nothing, the physical limit of the setup
    bare-aiohttp, bare-httpx   bare client loops (no parsing, no records, no stamps), for comparison

--ray local (or auto, or an address) also runs every engine candidate as a Ray actor (``<kind>+ray``: the same
worker loop on a thread of the actor process, batches shipped through Ray; issue 16) and prints its tokens per
CPU-second against the plain worker process's: the Ray overhead (target <= 5%).

--paired --rounds N (with --ray) measures that overhead in pairs instead (``paired_overhead.py``): each round runs
a plain worker process and a Ray actor worker AT THE SAME TIME, each pinned to its own core (CPUs S and S+1, swapped
every round; the controller on S+2 where there is one), then two plain workers the same way (the noise floor of
the pairing), and prints per pair the ratio of tokens per CPU-second and of tokens/s, then their geometric means
with standard errors and 95% t intervals. Sequential runs moved +-20% on the device machine, too much for 5%.
Every run, paired or not, renices EVERY thread of each worker to 0 (-10 with --boost): Ray starts its actors at nice
15, and renicing the pid alone changed only the main thread, not the actor's worker loop.

Targets (issue 17): >= 2x SGLang's bench client (43.5k tok/s at 32 streams, 24.3k at 256 on one core) and
>= 0.8 of what the fake server emits.

    python tests/bench/client_capacity.py [--candidates aiohttp,lean,raw] [--streams 32,256] [--seconds 6]
        [--servers 1] [--tokens 256] [--fake-server PATH] [--server-cpus 0] [--client-cpu N]
        [--controller-cpu N] [--profile] [--boost] [--ray ADDRESS|auto|local [--paired --rounds N]]

The header says whether this kernel gives receive stamps; the last column, which stamps the worker said it used.

--servers 2 starts two fake-server processes sharing one port (SO_REUSEPORT: the kernel spreads connections
over them), one core each, for machines where one server core cannot feed one client core (the 16-core device
machine). Default pins: servers on CPUs 0..S-1, the client on CPU S, the controller on CPU 0.
--profile records the engine worker with py-spy (raw folded stacks in /tmp; py-spy must be installed).
--boost (root) renices the servers and the clients to -10 so other jobs on a shared box disturb the figures less.
Needs only the project's runtime dependencies (aiohttp, httptools, uvloop; httpx for bare-httpx).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # runnable as a plain script from a checkout
from worker_threads import describe_nice, settle  # noqa: E402  (next to this script)

# shared/bench/fake_openai.py in the checkout or next to it (a worktree may sit deeper: look up the tree)
DEFAULT_FAKE = next((d / "shared" / "bench" / "fake_openai.py" for d in (REPO, *REPO.parents)
                     if (d / "shared" / "bench" / "fake_openai.py").exists()), REPO / "shared/bench/fake_openai.py")
SERVER_CPUS: tuple[int, ...] = (0,)
CLIENT_CPU = 1
TOKENS = 256
WARMUP_S = 1.5
_CONTENT = b'{"content"'  # token chunks: "delta":{"content":" tok"}; the role chunk has {"role"

# Runs a fake server with SO_REUSEPORT (so several processes can share one port) and writes its own count of
# content chunks sent to a file every 50 ms: the server's emission, whichever process a connection landed on.
_SERVER_WRAPPER = r"""
import asyncio, importlib.util, sys, threading, time
path, count_file, *argv = sys.argv[1:]
spec = importlib.util.spec_from_file_location("fake_openai", path)
fake = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fake)
uvloop = fake.uvloop
if uvloop is not None:
    class ReusePortLoop(uvloop.Loop):
        async def create_server(self, *args, **kwargs):
            return await super().create_server(*args, reuse_port=True, **kwargs)
    class Policy(uvloop.EventLoopPolicy):
        def _loop_factory(self):
            return ReusePortLoop()
    uvloop.install = lambda: asyncio.set_event_loop_policy(Policy())
def report():
    while True:
        with open(count_file + ".tmp", "w") as fh:
            fh.write(f"{fake.STATS['chunks']} {time.perf_counter_ns()}")
        import os; os.replace(count_file + ".tmp", count_file)
        time.sleep(0.05)
threading.Thread(target=report, daemon=True).start()
fake.main(argv)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeServers:
    """``n`` fake-server processes on one port, each pinned to its CPU, each counting the chunks it wrote."""

    def __init__(self, path: Path, n: int, cpus: tuple[int, ...], tokens: int, boosted: bool) -> None:
        self.port = free_port()
        self._dir = tempfile.mkdtemp(prefix="wattload-capacity-")
        self.count_files = [os.path.join(self._dir, f"server{i}.count") for i in range(n)]
        self.procs: list[subprocess.Popen[bytes]] = []
        for i in range(n):
            cmd = [sys.executable, "-c", _SERVER_WRAPPER, str(path), self.count_files[i], "--port", str(self.port),
                   "--tokens", str(tokens), "--ttft-ms", "0", "--itl-ms", "0"]
            self.procs.append(subprocess.Popen(["taskset", "-c", str(cpus[i % len(cpus)]), *cmd],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        deadline = time.monotonic() + 20
        while not all(os.path.exists(f) for f in self.count_files) or not self._listening():
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                err = b"".join(p.stderr.read() if p.stderr and p.poll() is not None else b"" for p in self.procs)
                self.close()
                raise SystemExit(f"fake server did not start: {err.decode()[-500:]}")
            time.sleep(0.1)
        if boosted:
            for p in self.procs:
                for error in settle(p.pid, None, -10):  # every thread, not only the main one
                    print(f"  ({error})", file=sys.stderr)
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def _listening(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def chunks(self) -> int:
        """Content chunks written so far by all the servers (each file is at most 50 ms old)."""
        total = 0
        for f in self.count_files:
            with open(f) as fh:
                total += int(fh.read().split()[0])
        return total

    def close(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self._dir, ignore_errors=True)


def boost(pid: int) -> None:
    """Nice -10: shields a benchmark process from other jobs on a shared box (needs root; best effort)."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, -10)
    except OSError as exc:
        print(f"  (cannot renice {pid}: {exc.strerror})", file=sys.stderr)


def _sleep_until(t_ns: float) -> None:
    time.sleep(max(0.0, (t_ns - time.perf_counter_ns()) / 1e9))


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _settle_worker(pid: int, boosted: bool) -> None:
    """Pin every thread of the worker to CLIENT_CPU and renice every one to 0 (-10 boosted): Ray starts an actor at
    nice 15, and the pid alone is only the main thread, not the actor's worker loop (``worker_threads.py``)."""
    for error in settle(pid, CLIENT_CPU, -10 if boosted else 0):
        print(f"  ({error})", file=sys.stderr)


def engine_run(servers: FakeServers, kind: str, streams: int, seconds: float, profile: bool,
               boosted: bool, ray: str | None = None) -> dict[str, Any]:
    """The real engine: a Controller with one worker process (client ``kind``) pinned to CLIENT_CPU; with ``ray``
    the worker is a Ray actor (its process pinned the same way once it is placed)."""
    from engine.config import RunConfig
    from engine.endpoint.stamped_socket import ENV, stamps_named_in
    from engine.load.controller import Controller
    from engine.load.ray_spec import RaySpec
    from engine.records import ControlEvent, EventKind, StreamProgress

    progress: list[StreamProgress] = []
    stamps: list[str] = []

    class Sink:
        def on_records(self, records: object) -> None: ...
        def on_progress(self, p: list[StreamProgress]) -> None:
            progress.extend(p)
        def on_telemetry(self, samples: object) -> None: ...
        def on_event(self, event: ControlEvent) -> None:
            if event.kind is EventKind.START:
                stamps.append(stamps_named_in(event.message) or "-")
        def on_snapshot(self, snapshot: object) -> None: ...
        def close(self) -> None: ...

    kind, _, read_stamps = kind.partition("/")
    os.environ[ENV] = read_stamps or "kernel"  # the worker process inherits it
    config = RunConfig(base_url=servers.url, model="fake-model", concurrency=streams, workers=1, max_tokens=TOKENS,
                       input_tokens=32, duration_s=seconds + WARMUP_S, window_s=seconds, http_client=kind)
    controller = Controller(config, sinks=[Sink()], stop_grace_s=0.5,
                            ray=RaySpec(address=ray) if ray else None)
    controller.start()
    deadline = time.monotonic() + 60
    while controller.worker_pids[0] is None and time.monotonic() < deadline:
        time.sleep(0.01)  # a Ray actor's pid is known once it is placed
    pid = controller.worker_pids[0]
    assert pid is not None
    _settle_worker(pid, boosted)
    spy = None
    py_spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if profile and py_spy:
        out = f"/tmp/wattload-worker-{kind}-{streams}.txt"
        spy = subprocess.Popen([py_spy, "record", "-p", str(pid), "-f", "raw", "-o", out, "-d", str(int(seconds)),
                                "-r", "200", "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while controller.t0_ns is None and not controller.wait(0.01):
        pass  # the worker is importing and connecting
    _settle_worker(pid, boosted)  # again: the threads started since (a Ray actor's loop among them)
    t0 = controller.t0_ns or time.perf_counter_ns()
    _sleep_until(t0 + WARMUP_S * 1e9)
    cpu0, emitted0, w0 = _cpu_seconds(pid), servers.chunks(), time.perf_counter_ns()
    _sleep_until(t0 + (WARMUP_S + seconds) * 1e9)
    cpu1, emitted1, w1 = _cpu_seconds(pid), servers.chunks(), time.perf_counter_ns()  # the steady part only
    nice = describe_nice(pid)
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
        "server_per_s": (emitted1 - emitted0) / ((w1 - w0) / 1e9),
        "ttft_p50": snap.window.ttft.p50 or float("nan"),
        "ttft_p99": snap.window.ttft.p99 or float("nan"),
        "loop_lag_max": max((p.loop_lag_ms for p in steady), default=float("nan")),
        "cpu_share": (cpu1 - cpu0) / seconds,
        "stamps": stamps[0] if stamps else "?",
        "nice": nice,
    }


# -- bare client loops and the raw reader (run in a child pinned to CLIENT_CPU) -----------------------------------


def _body(tokens: int) -> bytes:
    return json.dumps({"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": tokens,
                       "stream": True}, separators=(",", ":")).encode()


class _Counting:
    """Counts content markers in whatever arrives: shared by every reader of the child."""

    count = 0
    counting = False


async def bare_aiohttp(url: str, streams: int, seconds: float) -> None:
    import aiohttp

    stop = time.perf_counter() + WARMUP_S + seconds
    body = _body(TOKENS)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def one() -> None:
            while time.perf_counter() < stop:
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                    while data := await resp.content.readany():
                        if _Counting.counting:
                            _Counting.count += data.count(_CONTENT)

        await asyncio.gather(*(one() for _ in range(streams)))


async def bare_httpx(url: str, streams: int, seconds: float) -> None:
    import httpx

    stop = time.perf_counter() + WARMUP_S + seconds
    body = _body(TOKENS)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        async def one() -> None:
            while time.perf_counter() < stop:
                headers = {"Content-Type": "application/json"}
                async with client.stream("POST", url, content=body, headers=headers) as resp:
                    async for data in resp.aiter_raw():
                        if _Counting.counting:
                            _Counting.count += data.count(_CONTENT)

        await asyncio.gather(*(one() for _ in range(streams)))


class _RawReader(asyncio.Protocol):
    """One keep-alive connection sending requests back to back; counts content markers, parses nothing."""

    def __init__(self, request: bytes, stop_at: float) -> None:
        self.request, self.stop_at, self.tail = request, stop_at, b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio subclasses
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        buf = self.tail + data
        if _Counting.counting:
            _Counting.count += buf.count(_CONTENT) - self.tail.count(_CONTENT)
        self.tail = buf[-12:]
        if buf.endswith(b"0\r\n\r\n") and self.transport is not None and time.perf_counter() < self.stop_at:
            self.tail = b""
            self.transport.write(self.request)


async def raw_reader(url: str, streams: int, seconds: float) -> None:
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    body = _body(TOKENS)
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    loop = asyncio.get_running_loop()
    stop_at = time.perf_counter() + WARMUP_S + seconds
    transports = []
    for _ in range(streams):
        tr, _ = await asyncio.wait_for(
            loop.create_connection(lambda: _RawReader(request, stop_at), "127.0.0.1", port), 10)
        transports.append(tr)
    await asyncio.sleep(WARMUP_S + seconds + 0.2)
    for tr in transports:
        tr.close()


async def _child_main(kind: str, url: str, streams: int, seconds: float) -> float:
    fn = {"bare-aiohttp": bare_aiohttp, "bare-httpx": bare_httpx, "raw": raw_reader}[kind]
    task = asyncio.ensure_future(fn(url + "/chat/completions" if kind != "raw" else url, streams, seconds))
    await asyncio.sleep(WARMUP_S)
    _Counting.counting, c0, t = True, _Counting.count, time.perf_counter()
    await asyncio.sleep(seconds)
    rate = (_Counting.count - c0) / (time.perf_counter() - t)
    _Counting.counting = False
    await task
    return rate


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
    print(f"{run(_child_main(kind, url, streams, seconds)):.1f}")


def bare_run(servers: FakeServers, kind: str, streams: int, seconds: float, boosted: bool) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--bare", kind, "--url", servers.url, "--streams", str(streams),
           "--seconds", str(seconds), "--tokens", str(TOKENS), "--client-cpu", str(CLIENT_CPU)]
    cmd += ["--boost"] if boosted else []
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(WARMUP_S + 0.5)  # the child's own warm-up, plus its start-up
    cpu0, emitted0, w0 = _cpu_seconds(child.pid), servers.chunks(), time.perf_counter_ns()
    time.sleep(max(0.5, seconds - 1.0))
    cpu1, emitted1, w1 = _cpu_seconds(child.pid), servers.chunks(), time.perf_counter_ns()
    out, err = child.communicate(timeout=seconds + 120)
    nan = float("nan")
    if child.returncode != 0:
        print(err[-1000:], file=sys.stderr)
        return {"tokens_per_s": nan, "server_per_s": nan, "cpu_share": nan}
    return {"tokens_per_s": float(out.strip().splitlines()[-1]),
            "server_per_s": (emitted1 - emitted0) / ((w1 - w0) / 1e9),
            "cpu_share": (cpu1 - cpu0) / ((w1 - w0) / 1e9)}


ENGINE = ("lean", "lean/read", "aiohttp", "auto", "auto/read")
BARE = ("raw", "bare-aiohttp", "bare-httpx")


def main() -> None:
    global SERVER_CPUS, CLIENT_CPU, TOKENS  # the pins and the answer length are module settings
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", default="aiohttp,lean,raw", help="comma-separated, see above")
    parser.add_argument("--fake-server", type=Path, default=DEFAULT_FAKE)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--streams", default="32,256")
    parser.add_argument("--tokens", type=int, default=TOKENS, help="tokens per answer (default 256)")
    parser.add_argument("--servers", type=int, default=1, help="fake-server processes on one port (default 1)")
    parser.add_argument("--profile", action="store_true", help="py-spy the engine worker (raw folded stacks in /tmp)")
    parser.add_argument("--boost", action="store_true", help="renice the servers and the clients to -10 (root)")
    parser.add_argument("--server-cpus", default=None, help="CPUs for the fake servers (default 0..S-1)")
    parser.add_argument("--client-cpu", type=int, default=None, help="CPU for the worker / readers (default S)")
    parser.add_argument("--controller-cpu", type=int, default=None, help="CPU for this process (default: 1st server)")
    parser.add_argument("--ray", default=None, metavar="ADDRESS|auto|local",
                        help="also run each engine candidate as a Ray actor and print the overhead")
    parser.add_argument("--paired", action="store_true",
                        help="ray vs plain (and plain vs plain) workers at the same time, in rounds: see above")
    parser.add_argument("--rounds", type=int, default=6, help="--paired: rounds (cores swapped every round)")
    parser.add_argument("--bare", choices=BARE, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    TOKENS = args.tokens
    SERVER_CPUS = (tuple(int(c) for c in args.server_cpus.split(",")) if args.server_cpus
                   else tuple(range(args.servers)))
    CLIENT_CPU = args.servers if args.client_cpu is None else args.client_cpu
    if args.bare:
        bare_child(args.bare, args.url, int(args.streams), args.seconds, args.boost)
        return
    candidates = [c.strip() for c in args.candidates.split(",") if c.strip()]
    unknown = [c for c in candidates if c not in ENGINE + BARE]
    if unknown:
        raise SystemExit(f"unknown candidate(s): {', '.join(unknown)} (choose from {', '.join(ENGINE + BARE)})")

    ncpu = os.cpu_count() or 1
    pair_cpus = (CLIENT_CPU % ncpu, (CLIENT_CPU + 1) % ncpu)  # --paired (overlapping on a small box)
    if args.controller_cpu is not None:
        controller_cpu = args.controller_cpu
    elif args.paired and CLIENT_CPU + 2 < ncpu:
        controller_cpu = CLIENT_CPU + 2
    else:
        controller_cpu = SERVER_CPUS[0]
    if args.paired and [c for c in candidates if c not in ENGINE]:
        raise SystemExit("--paired compares engine workers: choose --candidates from " + ", ".join(ENGINE))
    os.sched_setaffinity(0, {controller_cpu})
    servers = FakeServers(args.fake_server, args.servers, SERVER_CPUS, TOKENS, args.boost)
    if args.paired:
        print(f"{args.servers} fake server(s) on CPU {','.join(map(str, SERVER_CPUS))}, controllers on CPU "
              f"{controller_cpu}{', servers niced -10' if args.boost else ''}; {TOKENS}-token answers, "
              f"{args.seconds:g} s per pair after {WARMUP_S:g} s warm-up; {ncpu} CPUs, load average before: "
              f"{os.getloadavg()[0]:.2f}")
        import paired_overhead

        try:
            paired_overhead.main(servers, args, candidates, pair_cpus, TOKENS, WARMUP_S, _cpu_seconds)
        finally:
            servers.close()
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        return
    print(f"{args.servers} fake server(s) on CPU {','.join(map(str, SERVER_CPUS))}, one client worker on CPU "
          f"{CLIENT_CPU}, controller on CPU {controller_cpu}{', niced -10' if args.boost else ''}; {TOKENS}-token "
          f"answers, {args.seconds:g} s per point after {WARMUP_S:g} s warm-up; {os.cpu_count()} CPUs, "
          f"load average before: {os.getloadavg()[0]:.2f}")
    from engine.endpoint.stamped_socket import describe_stamps, kernel_gives_stamps

    given = describe_stamps("kernel") if kernel_gives_stamps() else "NO kernel receive stamps (read-time only)"
    print(f"this kernel ({os.uname().release}) gives {given}; stamps: what the engine worker used")
    print("tok/s: content chunks the client took in per second; server/s: content chunks the server(s) wrote per "
          "second in the same window; of raw: tok/s over the raw reader's server/s (the ceiling)")
    print(f"{'streams':>7} {'candidate':>12} {'tok/s':>9} {'worker CPU':>10} {'tok/CPU-s':>10} {'server/s':>9} "
          f"{'of raw':>7} {'TTFT p50/p99 ms':>16} {'loop lag':>9} {'stamps':>7} {'nice':>5}")
    try:
        for streams in (int(s) for s in args.streams.split(",")):
            rows: list[tuple[str, dict[str, Any]]] = []
            for kind in candidates:
                if kind in ENGINE:
                    rows.append((kind, engine_run(servers, kind, streams, args.seconds, args.profile, args.boost)))
                    if args.ray:
                        rows.append((f"{kind}+ray", engine_run(servers, kind, streams, args.seconds, args.profile,
                                                               args.boost, args.ray)))
                else:
                    rows.append((kind, bare_run(servers, kind, streams, args.seconds, args.boost)))
            ceiling = next((r["server_per_s"] for k, r in rows if k == "raw"), float("nan"))
            for kind, r in rows:
                cpu = r["cpu_share"]
                per_cpu = r["tokens_per_s"] / cpu if cpu > 0 else float("nan")
                ttft = (f"{r['ttft_p50']:>7.1f}/{r['ttft_p99']:<8.1f}" if "ttft_p50" in r else f"{'':>16}")
                lag = f"{r['loop_lag_max']:>7.1f}ms" if "loop_lag_max" in r else f"{'':>9}"
                print(f"{streams:>7} {kind:>12} {r['tokens_per_s']:>9,.0f} {cpu:>10.0%} {per_cpu:>10,.0f} "
                      f"{r['server_per_s']:>9,.0f} {r['tokens_per_s'] / ceiling:>7.2f} {ttft} {lag} "
                      f"{r.get('stamps', ''):>7} {r.get('nice', ''):>5}", flush=True)
            by_kind = dict(rows)
            for kind in candidates:
                plain, on_ray = by_kind.get(kind), by_kind.get(f"{kind}+ray")
                if plain and on_ray and plain["cpu_share"] > 0 and on_ray["cpu_share"] > 0:
                    a = plain["tokens_per_s"] / plain["cpu_share"]
                    b = on_ray["tokens_per_s"] / on_ray["cpu_share"]
                    print(f"{streams:>7} {kind:>12} Ray overhead per worker: {1 - b / a:+.1%} of tok/CPU-s "
                          f"({b:,.0f} on Ray vs {a:,.0f} in a worker process; target <= 5%)", flush=True)
    finally:
        servers.close()
    print(f"load average after: {os.getloadavg()[0]:.2f} (other processes on the same cores skew every figure)")


if __name__ == "__main__":
    main()

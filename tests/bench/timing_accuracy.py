"""How late does the engine stamp what arrives? (prints figures; not a pytest test)

The built-in simulated server runs as a subprocess pinned to CPU 0 and writes one token every 20 ms per stream
(decode step 20 ms whatever the batch), stamping each chunk with ``perf_counter_ns`` just before the write
(``GET /sim/stamps/<id>``). The engine's worker process is pinned to CPU 1. For 32 and 256 streams this prints
the client-side delay, engine receive stamp minus server write stamp (one CLOCK_MONOTONIC for every process), for
first tokens and for all tokens: p50, p99, max. Target: p99 <= 2 ms at 256 streams. A second line per row says
how long a first token takes to appear in a snapshot (worker tick, pipe, controller tick; target <= one tick +
100 ms), now that TTFT enters the window at the first token rather than at the end of its request.

    python tests/bench/timing_accuracy.py [--seconds 8] [--streams 32,256] [--with-tui] [--boost]
        [--workers 1] [--server-cpus 0] [--client-cpus 1] [--controller-cpu N]
        [--http-client auto|lean|aiohttp|lean,aiohttp] [--stamps kernel|read|kernel,read]

--stamps: where the lean client stamps plain-TCP reads (issue 17): ``kernel``, the kernel's receive time
(SO_TIMESTAMPNS through recvmsg; what a worker uses wherever the kernel gives it), or ``read``, the time the event
loop read the socket (WATTLOAD_RECEIVE_STAMPS=read, the path before). The header says whether this kernel gives
receive stamps; the last column, which stamps the worker said it used (its start line).

--workers splits the streams over that many worker processes, worker i pinned to the i-th of --client-cpus (round
robin); --server-cpus pins the simulator; --controller-cpu pins this process (default: the first server CPU), so on
a box with more cores every part can have its own.

--boost (root) renices the simulator and the worker to -10 so other jobs sharing these two cores disturb the
figures less; the header says which was used.

Why many streams cost accuracy: the sim emits one token for every stream in the same decode step, a burst of N
writes (~23 us apart). A read-time stamp is taken when the loop gets round to the socket: late members of a burst
wait behind the others (~3 us each in the lean client, ~40 us in aiohttp) and behind any stall of the loop. More
worker processes (``--workers``, one core each) split the bursts; kernel receive stamps (``--stamps kernel``) do not
wait for the loop at all.

``--with-tui`` runs the real dashboard alongside, headless in a thread of this (the controller's) process at 4 Hz,
as in a real session: the UI must not disturb the worker's stamps. Each row then gets a line with the frames
drawn and the UI thread's CPU share (see ``tui_alongside``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from textual._compositor import CompositorUpdate
from textual.screen import Screen
from worker_threads import describe_nice, settle  # next to this script

from engine.config import RunConfig
from engine.endpoint.stamped_socket import ENV as STAMPS_ENV
from engine.endpoint.stamped_socket import describe_stamps, kernel_gives_stamps, stamps_named_in
from engine.load.controller import Controller
from engine.records import ControlEvent, EventKind, RequestRecord, StreamProgress
from engine.sim.model import SimConfig
from engine.sim.process import start_sim_process
from engine.snapshot import Snapshot
from tui import app as tui_app
from tui.app import WattloadApp
from tui.screens.live_dashboard import LiveDashboard

SERVER_CPU, CLIENT_CPU = 0, 1
ITL_MS = 20.0
MAX_TOKENS = 64
WARMUP_S = 1.5
TUI_SIZE = (160, 48)  # as tests/bench/tui_cpu.py measures it
MAX_CHECKED = 3000  # requests whose stamps are fetched per point (all of them at 32 streams)


class TerminalCostApp(WattloadApp):
    """The live dashboard, plus the one step headless Textual skips: turning each frame into terminal bytes."""

    CSS_PATH = Path(tui_app.__file__).with_name("app.tcss")  # a relative path would resolve next to this file
    terminal_bytes = 0

    def _display(self, screen: Screen, renderable: object) -> None:
        super()._display(screen, renderable)  # type: ignore[arg-type]
        if isinstance(renderable, CompositorUpdate) and not self._batch_count:
            self.terminal_bytes += len(renderable.render_segments(self.console))  # what a tty would get


def tui_alongside(controller: Controller) -> Callable[[], None]:
    """Run the real dashboard (tui/app.py) on this controller, in a thread of this process, refreshing at 4 Hz;
    return a function that stops it and prints what it did.

    That is where the UI lives in a real session: in the controller's process (sharing its GIL and, here, its
    pinned core with the simulator), while the worker process stamps chunks. Headless, with every frame still
    built, composited and encoded as escape codes (``TerminalCostApp``); only the write to a tty is skipped."""
    app = TerminalCostApp(LiveDashboard(controller), refresh_hz=4.0)
    cpu_s: list[float] = []

    def serve() -> None:
        start = time.thread_time()
        try:
            asyncio.run(app.run_async(headless=True, size=TUI_SIZE))
        finally:
            cpu_s.append(time.thread_time() - start)

    thread = threading.Thread(target=serve, name="wattload-tui", daemon=True)
    t0 = time.perf_counter()
    thread.start()

    def stop() -> None:
        span = time.perf_counter() - t0
        with contextlib.suppress(RuntimeError):  # the app already ended (it prints its own error then)
            app.call_from_thread(app.exit)
        thread.join(10)
        ui = f"{100 * cpu_s[0] / span:.0f}%" if cpu_s else "?"
        if app.renders == 0:
            print("  (--with-tui: the TUI drew nothing: this row was measured WITHOUT it)", flush=True)
        print(f"  (TUI alongside: {app.renders} frames in {span:.1f} s, {TUI_SIZE[0]}x{TUI_SIZE[1]}, "
              f"{app.terminal_bytes / span / 1e3:.0f} kB/s of terminal output, UI thread {ui} of one core)",
              flush=True)  # fmt: skip

    return stop


class Collect:
    def __init__(self) -> None:
        self.stamps = "-"  # which stamps the worker said it used (its start line); "-" for aiohttp
        self.records: list[RequestRecord] = []
        self.firsts: dict[tuple[int, int], int] = {}  # (worker, request id) -> first-token stamp
        self.snapshots: list[tuple[float, int]] = []  # (t_s, TTFT samples since start)

    def on_records(self, records: list[RequestRecord]) -> None:
        self.records.extend(records)
        for r in records:
            if r.t_first_token_ns is not None:
                self.firsts[(r.worker, r.request_id)] = r.t_first_token_ns

    def on_progress(self, progress: list[StreamProgress]) -> None:
        for p in progress:
            for rid, first, _ in p.first_tokens:
                self.firsts[(p.worker, rid)] = first

    def on_telemetry(self, samples: object) -> None: ...
    def on_event(self, event: ControlEvent) -> None:
        if event.kind is EventKind.START:
            self.stamps = stamps_named_in(event.message) or "-"

    def on_snapshot(self, snapshot: Snapshot) -> None:
        self.snapshots.append((snapshot.t_s, snapshot.total.ttft.count))

    def close(self) -> None: ...


def snapshot_lags_ms(sink: Collect, t0_ns: int) -> list[float]:
    """For the k-th first token (by arrival), the time until the first snapshot counting k TTFTs: how long a first
    token takes to show (worker tick, pipe, controller tick)."""
    firsts = sorted(sink.firsts.values())
    lags: list[float] = []
    i = 0
    for t_s, count in sink.snapshots:
        t_ns = t0_ns + round(t_s * 1e9)
        while i < min(count, len(firsts)):
            lags.append(max(0.0, (t_ns - firsts[i]) / 1e6))
            i += 1
    return lags


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def boost(pid: int) -> None:
    """Nice -10: shields a benchmark process from other jobs on a shared box (needs root; best effort)."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, -10)
    except OSError as exc:
        print(f"  (cannot renice {pid}: {exc.strerror})")




def measure(url: str, streams: int, seconds: float, with_tui: bool, boosted: bool, workers: int = 1,
            client_cpus: tuple[int, ...] = (CLIENT_CPU,), http_client: str = "auto", ray: str | None = None) -> None:
    from engine.load.ray_spec import RaySpec

    sink = Collect()
    config = RunConfig(base_url=url, model=SimConfig().model, concurrency=streams, workers=workers, input_tokens=32,
                       max_tokens=MAX_TOKENS, duration_s=WARMUP_S + seconds, http_client=http_client)
    controller = Controller(config, sinks=[sink], stop_grace_s=3.0, ray=RaySpec(address=ray) if ray else None)
    controller.start()
    deadline = time.monotonic() + 60
    while (controller.t0_ns is None or None in controller.worker_pids) and time.monotonic() < deadline:
        time.sleep(0.01)  # Ray actors' pids are known once placed, their loop threads once started
    for i, pid in enumerate(controller.worker_pids):
        assert pid is not None
        # every thread pinned and at one niceness, 0 or -10 boosted (Ray starts actors at nice 15, and renicing
        # the pid changed only the main thread, not the actor's worker loop): plain and +ray rows run alike
        for error in settle(pid, client_cpus[i % len(client_cpus)], -10 if boosted else 0):
            print(f"  ({error})")
    stop_tui = tui_alongside(controller) if with_tui else None
    controller.wait(1.0)  # the niceness a second on (threads started since inherit it), while the workers run
    nice = ",".join(describe_nice(pid) for pid in controller.worker_pids if pid is not None)
    controller.wait(seconds + 60)
    lag = controller.latest.client.loop_lag_ms
    controller.close()
    if stop_tui is not None:
        stop_tui()
    t0 = controller.t0_ns or 0
    steady = [r for r in sink.records if r.ok and r.t_start_ns - t0 > WARMUP_S * 1e9][:MAX_CHECKED]
    first: list[float] = []
    every: list[float] = []
    root = url.removesuffix("/v1")
    with httpx.Client(timeout=10, trust_env=False) as http:
        for r in steady:
            writes = http.get(f"{root}/sim/stamps/{r.response_id}").json()["chunk_write_ns"]
            first.append((r.t_first_token_ns - writes[0]) / 1e6)
            every += [(got - wrote) / 1e6 for got, wrote in zip(r.token_times_ns, writes, strict=True)]
    tokens_per_s = sum(r.output_tokens for r in steady) / seconds
    print(f"{streams:>8} {len(steady):>9} {tokens_per_s:>8,.0f} "
          f"{pct(first, 0.5):>8.3f} {pct(first, 0.99):>8.3f} {max(first):>8.2f} "
          f"{pct(every, 0.5):>8.3f} {pct(every, 0.99):>8.3f} {max(every):>8.2f} {lag:>8.1f} {sink.stamps:>7} {nice:>5}",
          flush=True)
    shown = snapshot_lags_ms(sink, t0)
    if shown:
        tick_ms = 1000 / config.tick_hz
        print(f"{'':>8} first token -> snapshot: p50 {pct(shown, 0.5):.0f} ms, p99 {pct(shown, 0.99):.0f} ms, "
              f"max {max(shown):.0f} ms over {len(shown)} first tokens (tick {tick_ms:.0f} ms; target <= tick + "
              f"100 ms = {tick_ms + 100:.0f} ms)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--streams", default="32,256")
    parser.add_argument("--with-tui", action="store_true", help="run the TUI alongside (see tui_alongside)")
    parser.add_argument("--boost", action="store_true", help="renice the simulator and the worker to -10 (root)")
    parser.add_argument("--workers", type=int, default=1, help="engine worker processes (default 1)")
    parser.add_argument("--server-cpus", default=str(SERVER_CPU), help="CPUs for the simulator, e.g. 0 or 0,1")
    parser.add_argument("--client-cpus", default=str(CLIENT_CPU), help="CPUs for the workers, one each, round robin")
    parser.add_argument("--controller-cpu", type=int, default=None, help="CPU for this process (default: 1st server)")
    parser.add_argument("--ray", default=None, metavar="ADDRESS|auto|local",
                        help="also measure every client with the workers as Ray actors (issue 16), row <client>+ray")
    parser.add_argument("--http-client", default="auto",
                        help="the worker's streaming client: auto, lean, aiohttp, or several comma-separated "
                             "(each measured in turn at every stream count)")
    parser.add_argument("--stamps", default="kernel",
                        help="the lean client's stamps: kernel, read, or kernel,read (each in turn; see above)")
    args = parser.parse_args()
    kinds = [k.strip() for k in args.http_client.split(",") if k.strip()]
    stamp_modes = [m.strip() for m in args.stamps.split(",") if m.strip()]
    if set(stamp_modes) - {"kernel", "read"}:
        raise SystemExit(f"--stamps: kernel, read or both, not {args.stamps!r}")
    server_cpus = tuple(int(c) for c in args.server_cpus.split(","))
    client_cpus = tuple(int(c) for c in args.client_cpus.split(","))
    controller_cpu = server_cpus[0] if args.controller_cpu is None else args.controller_cpu
    os.sched_setaffinity(0, {controller_cpu})  # this process (controller, stamp fetching) stays off the workers' cores
    sim_config = SimConfig(decode_base_ms=ITL_MS, decode_per_seq_ms=0.0, max_batch=1024, seed=4)
    with start_sim_process(sim_config, cpus=server_cpus) as sim:
        if args.boost:
            boost(sim.pid)
        niced = "niced -10: " if args.boost else ""
        cpus = ",".join(str(client_cpus[i % len(client_cpus)]) for i in range(args.workers))
        print(f"{niced}sim on CPU {args.server_cpus} ({ITL_MS:g} ms between tokens, {MAX_TOKENS}-token answers), "
              f"{args.workers} engine worker(s) on CPU {cpus}, controller on CPU {controller_cpu}; "
              f"load average before: {os.getloadavg()[0]:.2f}")
        given = describe_stamps("kernel") if kernel_gives_stamps() else "NO kernel receive stamps (read-time only)"
        print(f"this kernel ({os.uname().release}) gives {given}; client delay = engine receive stamp - sim write "
              "stamp, ms; stamps = what the worker used")
        print(f"{'client':>10} {'streams':>8} {'requests':>9} {'tok/s':>8} {'first p50':>8} {'p99':>8} {'max':>8} "
              f"{'all p50':>8} {'p99':>8} {'max':>8} {'loop lag':>8} {'stamps':>7} {'nice':>5}")
        for streams in (int(s) for s in args.streams.split(",")):
            for kind in kinds:
                for mode in stamp_modes if kind != "aiohttp" else stamp_modes[:1]:
                    os.environ[STAMPS_ENV] = mode  # the worker processes inherit it
                    for ray in (None, args.ray) if args.ray else (None,):
                        label = kind + ("/read" if mode == "read" and kind != "aiohttp" else "")
                        print(f"{label + ('+ray' if ray else ''):>10} ", end="")
                        measure(sim.url, streams, args.seconds, args.with_tui, args.boost, args.workers,
                                client_cpus, kind, ray)
                        time.sleep(0.5)
    print(f"load average after: {os.getloadavg()[0]:.2f} (other processes on these 2 cores skew every figure)")


if __name__ == "__main__":
    main()

"""How many SSE chunks per second can the simulated server emit on one core? (prints figures; not a pytest test)

The simulator must never be what limits a load test, so its capacity must sit well above a client worker's
(~40k chunks/s, DESIGN.md). The server runs in its own process pinned to CPU 0 with a "fast" config (huge speed:
steps cost no simulated time, so only the server's CPU work limits it). A minimal raw-socket client pinned to
CPU 1 keeps 256 streams busy and counts content chunks. Two figures are printed: chunks/s actually delivered, and
chunks per second of server CPU time (the capacity of one core, independent of whether the client kept up).

    .venv/bin/python tests/bench/sim_capacity.py [--streams 256] [--seconds 5] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

from engine.sim import SimConfig, start_sim_process
from engine.sim.server import loop_name, new_event_loop

_CONTENT = b'"delta":{"content":'
_END = b"\r\n0\r\n\r\n"


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class StreamClient(asyncio.Protocol):
    """One keep-alive connection sending streaming requests back to back; counts content chunks only."""

    def __init__(self, request: bytes, counter: list[int], stop: asyncio.Event) -> None:
        self.request = request
        self.counter = counter
        self.stop = stop
        self.tail = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio subclasses
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buf = self.tail + data
        keep = len(_CONTENT) - 1
        self.counter[0] += buf.count(_CONTENT) - self.tail.count(_CONTENT)
        self.tail = buf[-keep:]
        if buf.endswith(_END):  # response complete: next request on the same connection
            self.tail = b""
            if not self.stop.is_set() and self.transport is not None:
                self.transport.write(self.request)


async def drive(port: int, streams: int, seconds: float, max_tokens: int, pid: int) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    body = json.dumps(
        {
            "model": "sim-llama-3.1-8b",
            "messages": [{"role": "user", "content": "Say something long."}],
            "max_tokens": max_tokens,
            "ignore_eos": True,
            "stream": True,
        }
    ).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    counter = [0]
    stop = asyncio.Event()
    transports = []
    for _ in range(streams):
        tr, _ = await asyncio.wait_for(
            loop.create_connection(lambda: StreamClient(request, counter, stop), "127.0.0.1", port), timeout=10
        )
        transports.append(tr)
    await asyncio.sleep(1.0)  # warm-up
    c0, cpu0, own0, t0 = counter[0], cpu_seconds(pid), time.process_time(), time.perf_counter_ns()
    await asyncio.sleep(seconds)
    c1, cpu1, own1, t1 = counter[0], cpu_seconds(pid), time.process_time(), time.perf_counter_ns()
    stop.set()
    for tr in transports:
        tr.close()
    wall = (t1 - t0) / 1e9
    chunks = c1 - c0
    cpu = cpu1 - cpu0
    return {"chunks": chunks, "wall_s": wall, "server_cpu_s": cpu, "client_cpu_s": own1 - own0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=256)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--max-tokens", type=int, default=128)
    args = ap.parse_args()
    two_cores = (os.cpu_count() or 1) >= 2
    cfg = SimConfig(speed=1e6, max_batch=max(256, args.streams), kv_capacity_tokens=10_000_000)
    with start_sim_process(cfg, cpus=[0] if two_cores else None) as sim:
        if two_cores:
            os.sched_setaffinity(0, {1})
        port = int(sim.url.rsplit(":", 1)[1].split("/")[0])
        loop = new_event_loop()
        try:
            r = loop.run_until_complete(
                asyncio.wait_for(drive(port, args.streams, args.seconds, args.max_tokens, sim.pid), args.seconds + 60)
            )
        finally:
            loop.close()
    rate = r["chunks"] / r["wall_s"]
    util = r["server_cpu_s"] / r["wall_s"]
    per_core = r["chunks"] / r["server_cpu_s"] if r["server_cpu_s"] > 0 else float("nan")
    print(
        f"sim capacity ({loop_name()}, {args.streams} streams, {args.max_tokens}-token responses, "
        f"server pinned to CPU 0{'' if two_cores else ' (single core: not pinned)'}):"
    )
    print(f"  delivered:            {rate:>10,.0f} chunks/s over {r['wall_s']:.1f} s")
    print(f"  server CPU busy:      {util:>10.0%} of one core (client: {r['client_cpu_s'] / r['wall_s']:.0%})")
    print(f"  capacity on one core: {per_core:>10,.0f} chunks per server CPU-second")


if __name__ == "__main__":
    main()

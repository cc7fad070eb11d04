"""What does a kernel receive stamp cost per read? (prints figures; not a pytest test)

A server process (pinned to --server-cpu) writes one 300-byte chunk to each of N loopback connections every
20 ms, like a decode burst; this process (pinned to --client-cpu, uvloop) reads them with a protocol that only
counts, once through the lean client's ``StampedTransport`` (``recvmsg`` + SO_TIMESTAMPNS, stamp converted and
clamped per read) and once through uvloop's own transport (``data_received``, a ``perf_counter_ns`` per read: the
path before), alternating ``--rounds`` times. Printed: this process's CPU time per read (its epoll wake-ups
included, the same for both), the young-generation GC runs meanwhile (``recvmsg`` returns a list and tuples, GC-tracked
objects, per read), and the share of reads that carried a kernel stamp.

    python tests/bench/receive_stamp_cost.py [--streams 256] [--seconds 3] [--rounds 3]
        [--server-cpu 0] [--client-cpu 1]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from time import perf_counter_ns

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # runnable as a plain script from a checkout

from engine.endpoint.stamped_socket import StampedTransport, kernel_gives_stamps, open_stamped

_SERVER = r"""
import socket, sys, time
port, streams = int(sys.argv[1]), int(sys.argv[2])
listener = socket.create_server(("127.0.0.1", port))
print("ready", flush=True)
conns = [listener.accept()[0] for _ in range(streams)]
for c in conns:
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
chunk = b"x" * 300
next_t = time.monotonic()
try:
    while True:
        for c in conns:
            c.send(chunk)
        next_t += 0.02
        time.sleep(max(0.0, next_t - time.monotonic()))
except OSError:
    pass
"""


class Counting(asyncio.Protocol):
    """Counts reads; stamps each like the lean client's ``data_received`` does (one ``perf_counter_ns``)."""

    reads = 0
    last_ns = 0
    collections = 0  # young-generation GC runs during the last measurement

    def __init__(self) -> None:
        self.transport: object = None

    def connection_made(self, transport: object) -> None:  # type: ignore[override]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        Counting.last_ns = perf_counter_ns()
        Counting.reads += 1

    def data_received_at(self, data: bytes, t_ns: int) -> None:
        Counting.last_ns = t_ns
        Counting.reads += 1


async def measure(port: int, streams: int, seconds: float, stamped: bool) -> tuple[float, float]:
    """CPU ns per read over ``seconds`` of reading ``streams`` connections; and the share kernel-stamped."""
    loop = asyncio.get_running_loop()
    closers = []
    transports: list[StampedTransport] = []
    for _ in range(streams):
        if stamped:
            proto = await open_stamped(loop, "127.0.0.1", port, Counting)
            assert isinstance(proto.transport, StampedTransport)
            transports.append(proto.transport)
            closers.append(proto.transport.close)
        else:
            transport, _ = await loop.create_connection(Counting, "127.0.0.1", port)
            closers.append(transport.close)
    await asyncio.sleep(0.5)  # every connection accepted and in the server's round
    reads0, cpu0, gc0 = Counting.reads, time.process_time_ns(), gc.get_stats()[0]["collections"]
    await asyncio.sleep(seconds)
    reads, cpu = Counting.reads - reads0, time.process_time_ns() - cpu0
    Counting.collections = gc.get_stats()[0]["collections"] - gc0
    kernel = sum(t.kernel_reads for t in transports)
    everything = kernel + sum(t.plain_reads for t in transports)
    for close in closers:
        close()
    return cpu / max(reads, 1), (kernel / everything if everything else 0.0)


def one_round(streams: int, seconds: float, stamped: bool, server_cpu: int) -> tuple[float, float]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(["taskset", "-c", str(server_cpu), sys.executable, "-c", _SERVER, str(port),
                               str(streams)], stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready", "the server did not start"
        import uvloop

        return uvloop.run(measure(port, streams, seconds, stamped))
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.client_cpu})
    print(f"{args.streams} connections, a 300-byte chunk on each every 20 ms; server on CPU {args.server_cpu}, "
          f"reader on CPU {args.client_cpu}; kernel receive stamps here: {kernel_gives_stamps()}; "
          f"load average before: {os.getloadavg()[0]:.2f}")
    results: dict[str, list[float]] = {"uvloop transport (read-time stamp)": [], "StampedTransport (recvmsg)": []}
    share = 0.0
    for _ in range(args.rounds):
        for name, stamped in (("uvloop transport (read-time stamp)", False), ("StampedTransport (recvmsg)", True)):
            ns, kernel_share = one_round(args.streams, args.seconds, stamped, args.server_cpu)
            results[name].append(ns)
            share = kernel_share if stamped else share
            print(f"  {name:36} {ns:8,.0f} CPU ns per read, {Counting.collections} young-generation GC runs",
                  flush=True)
    old, new = (statistics.median(v) for v in results.values())
    print(f"median: read-time {old:,.0f} ns, kernel-stamped {new:,.0f} ns per read: {new - old:+,.0f} ns "
          f"({new / old - 1:+.0%}); {share:.0%} of the stamped reads carried a kernel stamp; "
          f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

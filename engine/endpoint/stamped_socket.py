"""Plain-TCP connections read with ``recvmsg``, each read stamped with the time the kernel received its bytes.

Why: a stamp taken in ``data_received`` is the time the event loop got round to the socket, behind every other
socket of the same decode burst and behind any stall of the loop (GC, record building, the shipper thread holding
the GIL). With ``SO_TIMESTAMPNS`` on, Linux returns with each TCP read a ``SCM_TIMESTAMPNS`` control message: the
CLOCK_REALTIME time its latest segment arrived. ``StampedTransport`` turns that into the ``perf_counter_ns`` domain
per read (``now_pc - (now_rt - kernel_rt)``), never later than the read itself and never before the previous
stamp or the request's write (an NTP step or a bogus control message cannot make time run backwards). Without a
control message (a sandbox kernel that gives none) a read is stamped when it is read, as asyncio's transports do.

TLS keeps asyncio's SSL transport (the bytes it hands over are decrypted, not the segments the kernel stamped).
``receive_stamps()`` says which stamps a worker's plain-TCP reads get; ``WATTLOAD_RECEIVE_STAMPS=read`` forces
read-time stamps (the transport path of asyncio/uvloop) for comparisons.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import struct
import sys
import time
from collections.abc import Callable
from time import perf_counter_ns, time_ns
from typing import Literal, Protocol, TypeVar

SO_TIMESTAMPNS = 35  # Linux, asm-generic/socket.h (SO_TIMESTAMPNS_OLD); its control message SCM_TIMESTAMPNS too
_TIMESPEC = struct.Struct("@ll")  # struct timespec of that option: time_t and long, native sizes
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)
READ_BYTES = 65536  # per recvmsg; more waiting is read on the next callback (the reader is level-triggered)
ENV = "WATTLOAD_RECEIVE_STAMPS"
_PROBES = 12  # kernel_gives_stamps: about 0.13 s of waiting in all where the kernel gives none
StampSource = Literal["kernel", "read"]


class StampedProtocol(Protocol):
    """What ``StampedTransport`` drives: asyncio's protocol calls, with each read's stamp beside its bytes."""

    def connection_made(self, transport: StampedTransport) -> None: ...

    def data_received_at(self, data: bytes, t_ns: int) -> None: ...

    def connection_lost(self, exc: Exception | None) -> None: ...


class StampedTransport:
    """One connected non-blocking TCP socket on the event loop: ``add_reader`` + ``recvmsg`` for reading,
    ``send`` (and ``add_writer`` for what did not fit) for writing. ``connection_lost`` comes from the loop soon
    after the end (EOF, error, ``abort``), never inside the call that caused it, as with asyncio's transports."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, protocol: StampedProtocol) -> None:
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._recvmsg = sock.recvmsg  # the two calls of every read, looked up once
        self._deliver = protocol.data_received_at
        self._pending = bytearray()  # written but not yet accepted by the kernel
        self._floor_ns = 0  # no stamp before this: the previous stamp, or the latest write
        self._closed = False
        self.kernel_reads = 0  # reads that carried the kernel's receive stamp
        self.plain_reads = 0  # reads that did not (stamped when read)
        loop.add_reader(self._fd, self._on_readable)

    def get_extra_info(self, name: str) -> socket.socket | None:
        return self._sock if name == "socket" else None

    def is_closing(self) -> bool:
        return self._closed

    def get_write_buffer_size(self) -> int:
        return len(self._pending)

    def write(self, data: bytes) -> None:
        """Send at once what the kernel takes; the rest (a prompt of 100s of KB) goes out as the socket drains."""
        if self._closed:
            return
        self._floor_ns = perf_counter_ns()  # a reply is never stamped before its request left
        if self._pending:
            self._pending += data
            return
        try:
            sent = self._sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._lose(exc)
            return
        if sent < len(data):
            self._pending += memoryview(data)[sent:]
            self._loop.add_writer(self._fd, self._on_writable)

    def abort(self) -> None:
        self._lose(None)

    def close(self) -> None:
        """Like ``abort``: an idle or abandoned connection has nothing worth flushing."""
        self._lose(None)

    def _on_writable(self) -> None:
        try:
            sent = self._sock.send(self._pending)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lose(exc)
            return
        del self._pending[:sent]
        if not self._pending:
            self._loop.remove_writer(self._fd)

    def _on_readable(self) -> None:
        try:
            data, ancillary, _, _ = self._recvmsg(READ_BYTES, _ANCILLARY)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lose(exc)
            return
        if not data:
            self._lose(None)  # EOF: asyncio.Protocol's default eof_received closes the connection too
            return
        raw = ancillary[0][2] if ancillary else b""
        if len(raw) >= _TIMESPEC.size:  # (a truncated control message is no stamp: the read time stands in)
            # The realtime clock first: should the process be preempted between the two reads, the stamp comes
            # out late (as a read-time stamp would), never early.
            sec, nsec = _TIMESPEC.unpack_from(raw)
            age = time_ns() - (sec * 1_000_000_000 + nsec)
            now = perf_counter_ns()
            self.kernel_reads += 1
            # within [the previous stamp or the latest write, now]: a realtime step (NTP) or a bogus message
            # can neither put a stamp after its read nor make the stamps go backwards
            stamp = now - age
            floor = self._floor_ns
            stamp = now if stamp > now else floor if stamp < floor else stamp
        else:
            stamp = perf_counter_ns()
            self.plain_reads += 1
        self._floor_ns = stamp
        self._deliver(data, stamp)

    def _lose(self, exc: Exception | None) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._fd)
        if self._pending:
            self._loop.remove_writer(self._fd)
            self._pending.clear()
        self._sock.close()
        self._loop.call_soon(self._protocol.connection_lost, exc)


P = TypeVar("P", bound=StampedProtocol)


async def open_stamped(loop: asyncio.AbstractEventLoop, host: str, port: int, factory: Callable[[], P]) -> P:
    """Connect to ``host:port`` (each address ``getaddrinfo`` gives, in order) and wrap the socket in a
    ``StampedTransport`` driving a protocol from ``factory``; raises the first address's ``OSError``."""
    first: OSError | None = None
    for family, kind, proto, _, address in await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError as exc:
            sock.close()
            first = first or exc
            continue
        except BaseException:  # a timeout or a cancel while connecting: the socket is ours to close
            sock.close()
            raise
        protocol = factory()
        protocol.connection_made(StampedTransport(loop, sock, protocol))
        return protocol
    raise first or OSError(f"no address for {host}")


@functools.cache
def kernel_gives_stamps() -> bool:
    """Whether this kernel returns receive stamps on a TCP read: probed once on a loopback pair. Linux turns
    receive stamping on in a work queue once the first socket asks for it, so a segment that came first may be
    unstamped: a few tries, a few ms apart."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        with socket.create_server(("127.0.0.1", 0)) as server:
            with socket.create_connection(server.getsockname()[:2], timeout=2) as client:
                client.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                peer, _ = server.accept()
                with peer:
                    for attempt in range(_PROBES):
                        peer.sendall(b"x")
                        _, ancillary, _, _ = client.recvmsg(16, _ANCILLARY)
                        if any(level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= _TIMESPEC.size
                               for level, kind, raw in ancillary):  # fmt: skip
                            return True
                        time.sleep(0.002 * (attempt + 1))
    except OSError:
        pass
    return False


def receive_stamps() -> StampSource:
    """Where plain-TCP lean connections take their stamps: ``kernel`` (receive time) or ``read`` (read time)."""
    if os.environ.get(ENV, "").strip().lower() == "read":
        return "read"
    return "kernel" if kernel_gives_stamps() else "read"


STAMP_WORDS: dict[StampSource, str] = {"kernel": "kernel receive stamps", "read": "read-time stamps"}


def describe_stamps(source: StampSource) -> str:
    """The words the worker's start line uses (benchmarks look for them there)."""
    return STAMP_WORDS[source]


def stamps_named_in(text: str) -> StampSource | None:
    """Which stamps a worker's start line (``describe_stamps``) names, if any."""
    return next((source for source, words in STAMP_WORDS.items() if words in text), None)

"""Small real HTTP servers on 127.0.0.1 for the telemetry tests: prometheus_client exporters and hostile ones."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from prometheus_client import CollectorRegistry, start_http_server


@contextmanager
def exporter(registry: CollectorRegistry) -> Iterator[str]:
    """prometheus_client's own HTTP exporter for ``registry`` on a free port; yields its /metrics URL."""
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def raw_server(respond: Callable[[str, dict[str, list[str]]], tuple[int, str, bytes, float]]) -> Iterator[str]:
    """A server whose answers come from ``respond(path, query) -> (status, content type, body, delay_s)``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parsed = urlparse(self.path)
            status, ctype, body, delay = respond(parsed.path, parse_qs(parsed.query))
            if delay:
                time.sleep(delay)
            try:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def prom_answer(series: list[tuple[dict[str, str], float]], unix_s: float | None = None) -> bytes:
    """A /api/v1/query success body with an instant vector."""
    t = time.time() if unix_s is None else unix_s
    result = [{"metric": labels, "value": [t, repr(value)]} for labels, value in series]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


def prom_error(message: str) -> bytes:
    return json.dumps({"status": "error", "errorType": "bad_data", "error": message}).encode()

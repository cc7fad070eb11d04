"""A Prometheus server's instant-query API (``GET /api/v1/query``) as a Source, for fleets already scraped.

The answer's vector becomes the same ``Exposition`` a /metrics scrape gives (series name from ``__name__``,
the value's own timestamp kept), so server and GPU figures come out of the same code whichever way they were
read. A query that errors, or matches nothing, is a FetchError with Prometheus's own one-line reason.

A plain selector (``DCGM_FI_DEV_POWER_USAGE{Hostname=~"node-(1|2)"}`` or ``{job="vllm"}``) is widened to every
metric the figures need, keeping its label matchers, so one query per tick reads them all.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

import httpx

from engine.telemetry.exposition import Exposition, Labels, from_series
from engine.telemetry.scrape import FetchError, display_url, get_limited

_SELECTOR = re.compile(r"^\s*(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)?\s*(?:\{(?P<matchers>.*)\})?\s*$", re.S)
SERVER_NAMES = r"(vllm|sglang|llamacpp):.+|tgi_.+"


def widen(query: str, names_regex: str) -> str:
    """``name{m}`` or ``{m}`` -> ``{__name__=~"<names_regex>", m}``; any other expression is returned as is."""
    match = _SELECTOR.match(query)
    if match is None or not (match.group("name") or match.group("matchers") is not None):
        return query
    matchers = (match.group("matchers") or "").strip().rstrip(",")
    if "__name__" in matchers:
        return query
    widened = f'__name__=~"{names_regex}"'
    return "{" + (f"{widened}, {matchers}" if matchers else widened) + "}"


@dataclass(frozen=True, slots=True)
class PromQuery:
    """One instant query against a Prometheus server (``base`` is its root, e.g. http://prom:9090)."""

    base: str
    query: str
    label: str = ""  # what the panel calls this source (default: "prometheus: <query>")

    @property
    def name(self) -> str:
        return self.label or f"prometheus {display_url(self.base)}: {self.query[:60]}"

    async def fetch(self, client: httpx.AsyncClient, timeout_s: float) -> Exposition:
        url = self.base.rstrip("/") + "/api/v1/query"
        body = await get_limited(client, url, timeout_s, params={"query": self.query})
        return parse_query_answer(body)


def parse_query_answer(body: bytes) -> Exposition:
    """The JSON of /api/v1/query -> Exposition; FetchError for errors, non-vector results and empty matches."""
    try:
        data = json.loads(body)
    except ValueError:
        raise FetchError("the Prometheus API did not answer JSON") from None
    if not isinstance(data, dict):
        raise FetchError("the Prometheus API answered something other than an object")
    if data.get("status") != "success":
        reason = str(data.get("error") or data.get("errorType") or "no reason given").splitlines()[0][:160]
        raise FetchError(f"query failed: {reason}")
    result = data.get("data")
    if not isinstance(result, dict) or result.get("resultType") not in ("vector", "scalar"):
        kind = result.get("resultType") if isinstance(result, dict) else None
        raise FetchError(f"query gave a {kind or 'malformed'} result, not an instant vector")
    if result["resultType"] == "scalar":
        unix_s, value = _point(result.get("result"))
        return from_series([("scalar", (), value, unix_s)])
    series: list[tuple[str, Labels, float, float]] = []
    for item in result.get("result") or []:
        if not isinstance(item, dict) or not isinstance(item.get("metric"), dict):
            continue
        metric = {str(k): str(v) for k, v in item["metric"].items()}
        name = metric.pop("__name__", "value")
        try:
            unix_s, value = _point(item.get("value"))
        except FetchError:
            continue
        series.append((name, tuple(sorted(metric.items())), value, unix_s))
    expo = from_series(series)
    if not expo.samples:
        raise FetchError("the query matched no series")
    return expo


def _point(raw: object) -> tuple[float, float]:
    """A [unix_time, "value"] pair -> (unix_time, value); FetchError when malformed."""
    if not isinstance(raw, list) or len(raw) != 2:
        raise FetchError("malformed sample")
    try:
        unix_s, value = float(raw[0]), float(raw[1])
    except (TypeError, ValueError):
        raise FetchError("malformed sample") from None
    if not math.isfinite(unix_s):
        raise FetchError("malformed sample")
    return unix_s, value

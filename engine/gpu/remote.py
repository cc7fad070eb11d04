"""Remote GPU telemetry over Prometheus: the DCGM exporter scraped directly, or a Prometheus server queried.

Both are one ``GpuBackend``: the GPUs found at open time (several hosts at once, labelled host:gpu) get indices
0..N-1 in (host, GPU) order; ``--gpus`` picks among them by that index, a host, ``host:gpu`` or a UUID prefix
(``CUDA_VISIBLE_DEVICES`` is this machine's, so it never filters remote GPUs), and ``read`` hands out the
readings the background scraper brought since the last call. Energy comes from
``DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`` (a mJ counter, as NVML's), so the energy account, J/token and cost work
unchanged. A reading is passed on only when the exporter's values changed: dcgm-exporter
refreshes its fields every 30 s by default (``-c`` / ``DCGM_EXPORTER_INTERVAL`` in ms lowers it), and a
repeated value stamped as new would make the watts jump between zero and a spike.

Power caps cannot be set remotely: ``set_power_limit`` says so in one line, and the cap keys show that line.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.gpu.base import (
    NO_TELEMETRY,
    DriverInfo,
    GpuInfo,
    GpuSelectionError,
    PowerCapError,
    PowerLimits,
    describe,
    parse_gpu_spec,
)
from engine.records import TelemetrySample
from engine.telemetry.exposition import Exposition, Labels
from engine.telemetry.scrape import MetricsEndpoint, Scraper, ScrapeResult, Source, fetch_all_now

DCGM_PREFIX = "DCGM_FI_DEV_"
# DCGM field -> TelemetrySample field
_FIELDS: Mapping[str, str] = {
    "POWER_USAGE": "power_w",
    "TOTAL_ENERGY_CONSUMPTION": "energy_mj",
    "SM_CLOCK": "sm_clock_mhz",
    "MEM_CLOCK": "mem_clock_mhz",
    "GPU_TEMP": "temperature_c",
    "GPU_UTIL": "util_gpu_pct",
    "MEM_COPY_UTIL": "util_mem_pct",
    "FB_USED": "mem_used_mib",
    "POWER_MGMT_LIMIT": "power_limit_w",
    "ENFORCED_POWER_LIMIT": "enforced_limit_w",
}
_EXTRA = ("FB_FREE", "FB_RESERVED", "POWER_VIOLATION")
# What a GPU can report. DCGM marks unsupported fields with "blank" sentinels (int32 2147483632, int64
# 9223372036854775794, fp64 1.4e14), which must read as n/a, never as a figure; so does anything out of range.
_RANGE: Mapping[str, tuple[float, float]] = {
    "POWER_USAGE": (0.0, 10_000.0),
    "POWER_MGMT_LIMIT": (0.0, 10_000.0),
    "ENFORCED_POWER_LIMIT": (0.0, 10_000.0),
    "TOTAL_ENERGY_CONSUMPTION": (0.0, 9.0e18),
    "SM_CLOCK": (0.0, 10_000.0),
    "MEM_CLOCK": (0.0, 20_000.0),
    "GPU_TEMP": (-50.0, 200.0),
    "GPU_UTIL": (0.0, 100.0),
    "MEM_COPY_UTIL": (0.0, 100.0),
    "FB_USED": (0.0, 1.0e7),
    "FB_FREE": (0.0, 1.0e7),
    "FB_RESERVED": (0.0, 1.0e7),
    "POWER_VIOLATION": (0.0, 9.0e18),
}
DCGM_NAMES_REGEX = "DCGM_FI_DEV_(" + "|".join((*_FIELDS, *_EXTRA)) + ")"
_FLOATS = frozenset({"power_w", "power_limit_w", "enforced_limit_w"})
CAPS_READ_ONLY = "power caps cannot be set remotely: DCGM and Prometheus telemetry is read-only"

GpuKey = tuple[str, str]  # (host, gpu id)


@dataclass(frozen=True, slots=True)
class RemoteReading:
    """One GPU in one scrape: its fields and the unix time of the values (None: the scrape's arrival)."""

    key: GpuKey
    name: str
    uuid: str | None
    values: Mapping[str, float]  # DCGM field (without the prefix) -> value
    unix_s: float | None


def _field(sample_name: str) -> str | None:
    if not sample_name.startswith(DCGM_PREFIX):
        return None
    name = sample_name[len(DCGM_PREFIX) :]
    if name.endswith("_total") and name[: -len("_total")] in ("TOTAL_ENERGY_CONSUMPTION", "POWER_VIOLATION"):
        name = name[: -len("_total")]  # the text parser appends _total to counters; Prometheus stores them without
    return name if name in _FIELDS or name in _EXTRA else None


def gpu_readings(expo: Exposition, default_host: str) -> dict[GpuKey, RemoteReading]:
    """Group the DCGM series of one scrape by (host, GPU)."""
    fields: dict[GpuKey, dict[str, float]] = {}
    meta: dict[GpuKey, tuple[str, str | None]] = {}
    stamps: dict[GpuKey, float] = {}
    for sample_name, series in expo.samples.items():
        field = _field(sample_name)
        if field is None:
            continue
        low, high = _RANGE[field]
        for labels, value in series:
            key, name, uuid = _identify(labels, default_host)
            meta.setdefault(key, (name, uuid))
            if not low <= value <= high:
                fields.setdefault(key, {})  # the GPU exists; this field is n/a
                continue
            fields.setdefault(key, {})[field] = value
            stamp = expo.stamps.get((sample_name, labels))
            if stamp is not None:
                stamps[key] = max(stamps.get(key, stamp), stamp)
    return {
        key: RemoteReading(key, meta[key][0], meta[key][1], values, stamps.get(key)) for key, values in fields.items()
    }


def _identify(labels: Labels, default_host: str) -> tuple[GpuKey, str, str | None]:
    d = dict(labels)
    host = d.get("Hostname") or d.get("instance") or default_host
    gpu = d.get("gpu") or d.get("UUID") or d.get("device") or "0"
    return (host, gpu), d.get("modelName", "GPU"), d.get("UUID")


def _sample(reading: RemoteReading, index: int, t_ns: int, violation_grew: bool | None) -> TelemetrySample:
    kwargs: dict[str, Any] = {}  # TelemetrySample's fields by name (_FIELDS): float, int or bool each
    for field, attr in _FIELDS.items():
        value = reading.values.get(field)
        if value is not None:
            kwargs[attr] = float(value) if attr in _FLOATS else round(value)
    used, free = reading.values.get("FB_USED"), reading.values.get("FB_FREE")
    if used is not None and free is not None:
        kwargs["mem_total_mib"] = round(used + free + reading.values.get("FB_RESERVED", 0.0))
    if violation_grew is not None:
        kwargs["power_cap_binding"] = violation_grew
    return TelemetrySample(t_ns=t_ns, gpu_index=index, **kwargs)


class RemoteGpuBackend:
    """GPUs read from DCGM exporters or a Prometheus query, behind the same interface as NVML."""

    def __init__(self, sources: Sequence[Source], first: Sequence[ScrapeResult], *, source: str,
                 interval_s: float = 1.0, gpus: str | None = None) -> None:  # fmt: skip
        """``first`` is one fetch of every source (discovery); raises ValueError when it found no GPU, and
        GpuSelectionError (one line) when ``gpus`` names one that is not there."""
        self.source = source
        self._lock = threading.Lock()
        self._keys: dict[GpuKey, int] = {}
        self._infos: list[GpuInfo] = []
        self._limits: dict[int, PowerLimits] = {}
        self._last_seen: dict[int, tuple[object, ...]] = {}
        self._violation: dict[int, float] = {}
        self._pending: dict[int, list[TelemetrySample]] = {}
        self.last_error: str | None = None
        self.open_message = ""  # what GpuSession shows as the telemetry source
        # told (one line) when a source stops answering and when it answers again; the CLI logs it as a warning
        self.on_problem: Callable[[str], None] | None = None
        self._failing: dict[str, tuple[int, str]] = {}  # source -> (its last good answer's t_ns, the error)
        self._last_ok_ns: dict[str, int] = {}
        found: dict[GpuKey, RemoteReading] = {}
        errors: list[str] = []
        for result in first:
            if result.exposition is None:
                errors.append(f"{result.source}: {result.error}")
                continue
            found.update(gpu_readings(result.exposition, _host_of(result.source)))
        if not found:
            why = "; ".join(errors) or "no DCGM_FI_DEV_* series in the answer"
            raise ValueError(why)
        keys = sorted(found)
        for index in select_remote(keys, found, gpus):
            key = keys[index]
            reading = found[key]
            self._keys[key] = index
            self._infos.append(GpuInfo(index, f"{reading.name} @{key[0]}:{key[1]}", reading.uuid))
        if errors:
            self.last_error = "; ".join(errors)
        for result in first:
            self._take(result)
        self._scraper = Scraper(sources, self._take, interval_s)
        self._scraper.start()

    def _take(self, result: ScrapeResult) -> None:
        """Scraper thread: keep the readings whose values changed since the last one of that GPU."""
        if result.exposition is None:
            self.last_error = f"{result.source}: {result.error}"
            since = self._failing.get(result.source, (self._last_ok_ns.get(result.source, result.t_ns), ""))[0]
            new = result.source not in self._failing
            self._failing[result.source] = (since, f"{result.source}: {result.error}")
            if new:
                self._tell(f"GPU telemetry from {result.source} stopped: {result.error}; GPU figures are stale")
            return
        self._last_ok_ns[result.source] = result.t_ns
        if self._failing.pop(result.source, None) is not None:
            self._tell(f"GPU telemetry from {result.source} answers again")
        readings = gpu_readings(result.exposition, _host_of(result.source))
        with self._lock:
            for key, reading in readings.items():
                index = self._keys.get(key)
                if index is None:
                    continue  # a GPU that appeared after open: not selected
                signature = (reading.unix_s, *sorted(reading.values.items()))
                if self._last_seen.get(index) == signature:
                    continue
                self._last_seen[index] = signature
                t_ns = result.t_ns
                if reading.unix_s is not None:  # the value's own time, placed on our clock (never in the future)
                    t_ns -= max(0, round((result.unix_s - reading.unix_s) * 1e9))
                violation = reading.values.get("POWER_VIOLATION")
                grew = None
                if violation is not None:
                    before = self._violation.get(index)
                    grew = before is not None and violation > before
                    self._violation[index] = violation
                sample = _sample(reading, index, t_ns, grew)
                self._limits[index] = PowerLimits(sample.power_limit_w, sample.enforced_limit_w)
                self._pending.setdefault(index, []).append(sample)

    def _tell(self, line: str) -> None:
        callback = self.on_problem
        if callback is not None:
            try:
                callback(line)
            except Exception:  # the listener's problem must not stop the scraping
                pass

    def problem(self) -> tuple[int, str] | None:
        """(perf_counter_ns of the last good answer, one line why) for the source that has failed longest; None
        while every source answers. The GPU panel shows it as "stale since …" (EnergyAccount's ``health``)."""
        failing = list(self._failing.values())
        if not failing:
            return None
        since, why = min(failing)
        more = f" (+{len(failing) - 1} more)" if len(failing) > 1 else ""
        return since, why + more

    def gpus(self) -> list[GpuInfo]:
        return list(self._infos)

    def read(self, indices: Sequence[int]) -> list[TelemetrySample]:
        out: list[TelemetrySample] = []
        with self._lock:
            for index in indices:
                out.extend(self._pending.pop(index, ()))
        return out

    def power_limits(self, index: int) -> PowerLimits:
        return self._limits.get(index, PowerLimits())

    def set_power_limit(self, index: int, watts: float) -> None:
        raise PowerCapError(CAPS_READ_ONLY)

    @property
    def caps_read_only(self) -> str:
        return CAPS_READ_ONLY

    def persistence_mode(self, index: int) -> bool | None:
        return None

    def driver_info(self) -> DriverInfo:
        return DriverInfo()

    def close(self) -> None:
        self._scraper.stop()


def select_remote(keys: Sequence[GpuKey], found: Mapping[GpuKey, RemoteReading], spec: str | None) -> list[int]:
    """Indices (into ``keys``) that ``--gpus`` selects: all without a spec; else each token is an index, a host
    (with or without its port), ``host:gpu``, or a unique UUID prefix."""
    if spec is None or spec.strip().lower() == "all":
        return list(range(len(keys)))
    chosen: list[int] = []
    for token in parse_gpu_spec(spec):
        hits = _remote_matches(keys, found, token)
        if not hits:
            have = ", ".join(f"{i}={h}:{g}" for i, (h, g) in enumerate(keys))
            raise GpuSelectionError(f"--gpus: no remote GPU matches {token!r} (GPUs: {have})")
        chosen += [i for i in hits if i not in chosen]
    return chosen


def _remote_matches(keys: Sequence[GpuKey], found: Mapping[GpuKey, RemoteReading], token: str) -> list[int]:
    if token.isdigit():
        return [int(token)] if int(token) < len(keys) else []
    lowered = token.lower()
    by_host = [i for i, (host, _) in enumerate(keys) if lowered in (host.lower(), host.split(":")[0].lower())]
    if by_host:
        return by_host
    by_label = [i for i, (host, gpu) in enumerate(keys)
                if lowered in (f"{host}:{gpu}".lower(), f"{host.split(':')[0]}:{gpu}".lower())]  # fmt: skip
    if by_label:
        return by_label
    by_uuid = [i for i, key in enumerate(keys) if (found[key].uuid or "").lower().startswith(lowered)]
    return by_uuid if len(by_uuid) == 1 else []


def _host_of(source: str) -> str:
    """host:port of a URL source (the host label when the exporter sets none)."""
    rest = source.split("://", 1)[-1]
    return rest.split("/", 1)[0] or source


def open_dcgm(urls: Sequence[str], *, interval_s: float = 1.0,
              gpus: str | None = None) -> tuple[RemoteGpuBackend | None, str]:  # fmt: skip
    """DCGM exporters at ``urls`` (their /metrics); never raises."""
    return _open([MetricsEndpoint(u) for u in urls], "dcgm", interval_s, gpus)


def open_prometheus_gpus(base: str, query: str, *, interval_s: float = 1.0,
                         gpus: str | None = None) -> tuple[RemoteGpuBackend | None, str]:  # fmt: skip
    """GPUs through a Prometheus server's query API; a plain selector is widened to every DCGM field."""
    from engine.telemetry.prom_query import PromQuery, widen

    return _open([PromQuery(base, widen(query, DCGM_NAMES_REGEX), label=f"prometheus: {query[:60]}")],
                 "prometheus", interval_s, gpus)  # fmt: skip


def _open(sources: Sequence[Source], kind: str, interval_s: float,
          gpus: str | None) -> tuple[RemoteGpuBackend | None, str]:  # fmt: skip
    try:
        backend = RemoteGpuBackend(sources, fetch_all_now(sources), source=kind, interval_s=interval_s, gpus=gpus)
    except ValueError as exc:
        return None, f"{NO_TELEMETRY}: {kind}: {exc}".splitlines()[0]
    except Exception as exc:  # a broken source must never stop a run
        return None, f"{NO_TELEMETRY}: {kind}: {type(exc).__name__}: {exc}".splitlines()[0]
    hosts = len({key[0] for key in backend._keys})
    backend.open_message = f"{describe(backend)} from {hosts} host{'s' if hosts != 1 else ''}"
    return backend, backend.open_message

"""One scrape of a Prometheus endpoint, parsed with prometheus_client's parser into plain, picklable samples.

Bad bodies (HTML, garbage, a truncated line) raise ``ExpositionError`` with one line; the caller shows it in the
panel and keeps its previous figures. Samples are keyed by their *sample* name (``vllm:prompt_tokens_total``,
``..._bucket``), which is what every engine documents, rather than by family name (the parser strips ``_total``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]
MAX_FAMILIES_LISTED = 40


class ExpositionError(ValueError):
    """The body is not the Prometheus text format; ``str(exc)`` is one line."""


@dataclass(frozen=True, slots=True)
class Exposition:
    """Every finite sample of one scrape: sample name -> [(labels, value)], plus family name -> type."""

    samples: Mapping[str, tuple[tuple[Labels, float], ...]]
    types: Mapping[str, str] = field(default_factory=dict)
    # (sample name, labels) -> unix time of the value, where the source says (a Prometheus query answer does)
    stamps: Mapping[tuple[str, Labels], float] = field(default_factory=dict)

    def values(self, name: str) -> tuple[tuple[Labels, float], ...]:
        return self.samples.get(name, ())

    def has(self, name: str) -> bool:
        return name in self.samples

    def family_names(self, limit: int = MAX_FAMILIES_LISTED) -> tuple[str, ...]:
        """Family names found (for an engine nobody recognised), sorted, at most ``limit``."""
        return tuple(sorted(self.types))[:limit]


def parse_exposition(text: str) -> Exposition:
    """Parse the text format; raises ExpositionError (one line) on anything that is not it, or on an empty body."""
    head = text.lstrip()[:200].lower()
    if head.startswith(("<!doctype", "<html", "<")):
        raise ExpositionError("not Prometheus metrics: the endpoint answered HTML")
    if head.startswith(("{", "[")):
        raise ExpositionError("not Prometheus metrics: the endpoint answered JSON")
    samples: dict[str, list[tuple[Labels, float]]] = {}
    types: dict[str, str] = {}
    try:
        for family in text_string_to_metric_families(text):
            if family.samples:
                types[family.name] = family.type
            for s in family.samples:
                value = float(s.value)
                if math.isnan(value) or (math.isinf(value) and not s.name.endswith("_bucket")):
                    continue  # NaN means "no value" (a gauge never set); an infinite figure is never believed
                samples.setdefault(s.name, []).append((tuple(sorted(s.labels.items())), value))
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        detail = str(exc).splitlines()[0][:80] if str(exc).strip() else type(exc).__name__
        raise ExpositionError(f"not Prometheus metrics: {detail}") from None
    if not samples:
        raise ExpositionError("no metrics in the body")
    return Exposition({k: tuple(v) for k, v in samples.items()}, types)


def from_series(series: Iterable[tuple[str, Labels, float, float]]) -> Exposition:
    """Build an Exposition from (sample name, labels, value, unix time) tuples (a Prometheus query answer)."""
    samples: dict[str, list[tuple[Labels, float]]] = {}
    types: dict[str, str] = {}
    stamps: dict[tuple[str, Labels], float] = {}
    for name, labels, value, unix_s in series:
        if math.isnan(value) or math.isinf(value):
            continue
        samples.setdefault(name, []).append((labels, value))
        types.setdefault(_family(name), "unknown")
        stamps[(name, labels)] = unix_s
    return Exposition({k: tuple(v) for k, v in samples.items()}, types, stamps)


def _family(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count", "_total"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name

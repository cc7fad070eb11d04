"""The built-in simulated LLM server: an OpenAI-compatible streaming endpoint that behaves like vLLM serving an
8B model on one H100 (continuous batching, KV-gated queue, a GPU whose power cap slows decode), with ground-truth
stamps and fault injection. ``SimServer`` runs it on a thread, ``start_sim_process`` in a subprocess.

Names are imported lazily so that ``engine.sim.model`` (pure settings and formulas) does not pull in aiohttp.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "SimConfig": "engine.sim.model",
    "max_concurrency": "engine.sim.model",
    "steady_decode": "engine.sim.model",
    "step_cost": "engine.sim.model",
    "SimServer": "engine.sim.server",
    "SimProcess": "engine.sim.process",
    "start_sim_process": "engine.sim.process",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'engine.sim' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)

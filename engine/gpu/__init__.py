"""GPU telemetry and control. ``open_backend`` is the one factory for a telemetry source: it lives here, above
``base`` (the interface) and the backends (nvml, fake, sim), so neither side imports the other."""

from __future__ import annotations

from engine.gpu.base import BACKEND_KINDS, NO_TELEMETRY, BackendKind, GpuBackend

__all__ = ["open_backend"]

def open_backend(
    kind: BackendKind | str = "auto", *, sim_url: str | None = None, gpus: str | None = None
) -> tuple[GpuBackend | None, str]:
    """Open a telemetry source; never raises. Returns the backend (or None) and one line saying what happened.

    ``auto`` means NVML on this machine; ``sim`` needs ``sim_url`` (the server's URL, with or without ``/v1``);
    ``fake`` opens the in-memory fake NVML (tests and demos; ``WATTLOAD_FAKE_NVML`` may name its state file).
    """
    try:
        if kind == "none":
            return None, f"{NO_TELEMETRY}: disabled"
        if kind in ("auto", "nvml"):
            from engine.gpu.nvml import open_nvml

            return open_nvml(gpus=gpus)
        if kind == "fake":
            from engine.gpu.fake import FakeNvml
            from engine.gpu.nvml import open_nvml

            return open_nvml(FakeNvml.from_env(), gpus=gpus, source="fake")
        if kind == "sim":
            if not sim_url:
                return None, f"{NO_TELEMETRY}: the sim backend needs the server's URL"
            from engine.gpu.sim import open_sim

            return open_sim(sim_url, gpus=gpus)
        return None, f"{NO_TELEMETRY}: unknown backend {kind!r} (choose from {', '.join(BACKEND_KINDS)})"
    except Exception as exc:  # a broken backend must never stop a run: report it in one line
        return None, f"{NO_TELEMETRY}: {type(exc).__name__}: {exc}".splitlines()[0]

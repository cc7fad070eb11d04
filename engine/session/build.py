"""``build_session(spec)``: probe the endpoint, apply and calibrate the profile, open the controller with its
collaborators (GPU source, pricing, recorder) passed in. The one way every command assembles a live session.

Raises ``ProbeError`` (endpoint, calibration) whose text is the one line a user needs; notes that are not errors
(a calibration result, a preflight warning) go to ``notify`` as they happen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.config import RunConfig
from engine.control import SessionSink
from engine.endpoint.errors import ProbeError, ServerFaultDuringProbe
from engine.endpoint.probe import preflight, resolve_endpoint
from engine.load.controller import Controller
from engine.session.spec import SessionSpec
from engine.session.workload_setup import apply_profile, calibrated_factory, command_line_profile
from engine.storage.recorder import session_recorders
from engine.telemetry.spec import open_telemetry
from engine.workload.calibration import CalibrationResult
from engine.workload.synthetic import RequestFactory

Notify = Callable[[str], None]


def _ignore(_line: str) -> None:
    return None


@dataclass(frozen=True)
class Probed:
    """A spec whose endpoint is resolved (``probe="none"`` from now on) and the requests it will send."""

    spec: SessionSpec
    factory: RequestFactory | None = None
    calibration: CalibrationResult | None = None


@dataclass(frozen=True)
class Session:
    """A session ready to start: the controller (not started) and how it was assembled."""

    controller: Controller
    spec: SessionSpec
    calibration: CalibrationResult | None = None

    @property
    def workload(self) -> dict[str, Any] | None:
        """What the session sends, as results store it: a trace's fingerprint, or the profile with its hash."""
        if self.spec.recording is not None and self.spec.recording.workload is not None:
            return self.spec.recording.workload
        return self.spec.profile.info().model_dump(mode="json") if self.spec.profile is not None else None


def probe(spec: SessionSpec, notify: Notify = _ignore) -> Probed:
    """Resolve the API base and model, shape the config by the profile and calibrate it, then send one test
    request shaped like the run's (``spec.probe`` says how much of this to do)."""
    config = spec.config
    if spec.probe != "none":
        key = config.api_key.get_secret_value() if config.api_key is not None else None
        endpoint = resolve_endpoint(config.base_url, api_key=key, model=config.model or None)
        if endpoint.warning:
            notify(endpoint.warning)
        config = config.model_copy(update={"base_url": endpoint.base_url, "model": endpoint.model})
    factory: RequestFactory | None = None
    calibration: CalibrationResult | None = None
    if spec.trace is not None:
        factory, config, calibration, spec = _trace(spec, config, notify)
    elif spec.profile is not None or spec.calibrate:
        loaded = spec.profile if spec.profile is not None else command_line_profile(config)
        try:
            shaped = apply_profile(config, loaded)
            factory, calibration = calibrated_factory(shaped, loaded)
        except ServerFaultDuringProbe as exc:
            if spec.profile is not None:
                raise
            # default calibration is a refinement: a flaky server gets its run, uncalibrated, and one line saying so
            notify(f"input lengths not calibrated ({exc}); sending --input-tokens as words")
        else:
            config = shaped
            spec = spec.model_copy(update={"profile": loaded})  # what the session sends, for recordings and reports
            if calibration is not None and calibration.measured_tokens is not None:
                notify(f"input length calibrated on the server: target {calibration.target_tokens:.0f} tokens, "
                       f"measured {calibration.measured_tokens:.0f} ({calibration.error_pct or 0.0:+.1f}%) "
                       f"after {calibration.probes} probe requests")
    if spec.probe == "full":
        warning = preflight(config)
        if warning:
            notify(warning)
    return Probed(spec.model_copy(update={"config": config, "probe": "none"}), factory, calibration)


def _trace(
    spec: SessionSpec, config: RunConfig, notify: Notify
) -> tuple[RequestFactory, RunConfig, CalibrationResult | None, SessionSpec]:
    """``spec.trace``: detect, check and fingerprint the file, calibrate on the server; the fingerprint becomes the
    recording's workload description."""
    from engine.session.trace_setup import prepare_trace
    from engine.workload.traces import TraceWindow

    assert spec.trace is not None
    window = TraceWindow(*spec.trace.window_s) if spec.trace.window_s is not None else None
    factory, config, plan = prepare_trace(config, spec.trace.path, speed=spec.trace.speed, window=window)
    notify(f"trace detected as {factory.source.description}")
    notify(plan.fingerprint.line())
    if plan.skipped:
        notify(f"{spec.trace.path}: {plan.skipped}")
    cal = plan.calibration
    if cal is not None and cal.measured_tokens is not None:
        notify(f"input length calibrated on the server: target {cal.target_tokens:.0f} tokens, measured "
               f"{cal.measured_tokens:.0f} ({cal.error_pct or 0.0:+.1f}%)")  # fmt: skip
    workload = {"trace": plan.fingerprint.model_dump(mode="json"), "speed": plan.speed}
    if spec.recording is not None:
        spec = spec.model_copy(update={"recording": spec.recording.model_copy(update={"workload": workload})})
    return factory, config, cal, spec


def open_controller(
    spec: SessionSpec,
    *,
    config: RunConfig | None = None,
    request_factory: RequestFactory | None = None,
    sinks: Sequence[SessionSink] = (),
    notify: Notify = _ignore,
) -> Controller:
    """The controller for an already probed ``spec`` (not started): its GPU source, pricing and recorder."""
    config = spec.config if config is None else config
    recorder = None
    if spec.recording is not None:
        workload = spec.recording.workload
        if workload is None and spec.profile is not None:
            workload = spec.profile.info().model_dump(mode="json")
        recorder = session_recorders(pricing=spec.pricing, workload=workload,
                                     record_tokens=spec.recording.record_tokens,
                                     directory=spec.recording.directory)
    if spec.ray is not None:
        notify(join_ray(spec, config.workers))
    telemetry = None
    if spec.telemetry is not None:
        sim_root = spec.sim_url.removesuffix("/v1") if spec.sim_url else None
        telemetry = open_telemetry(spec.telemetry, config.base_url, sim_root=sim_root, gpus=spec.gpus, notify=notify)
    controller = Controller(
        config,
        gpu=(telemetry.gpu if telemetry is not None else None) or spec.gpu_source,
        gpus=spec.gpus,
        sim_url=spec.telemetry_url(config.base_url),
        pricing=spec.pricing,
        sinks=sinks,
        request_factory=request_factory,
        recorder_factory=recorder,
        server_metrics=telemetry.server if telemetry is not None else None,
        ray=spec.ray,
    )
    if telemetry is not None:
        telemetry.attach(controller.emit)
    return controller


def join_ray(spec: SessionSpec, workers: int) -> str:
    """Join (or start) the Ray cluster before the session starts, so a wrong address or a missing Ray is one line
    now rather than a failed run later; returns a line describing the cluster."""
    assert spec.ray is not None
    try:
        from engine.load.ray_pool import RayUnavailable, connect
    except ImportError:
        raise ProbeError("--ray needs Ray: pip install 'wattload[ray]'") from None
    try:
        return connect(spec.ray, workers)
    except RayUnavailable as exc:
        raise ProbeError(str(exc)) from None


def build_session(spec: SessionSpec, *, notify: Notify = _ignore, sinks: Sequence[SessionSink] = ()) -> Session:
    """Probe (as ``spec.probe`` says), then open the controller; the one assembly every command uses."""
    probed = probe(spec, notify)
    controller = open_controller(probed.spec, request_factory=probed.factory, sinks=sinks, notify=notify)
    return Session(controller=controller, spec=probed.spec, calibration=probed.calibration)

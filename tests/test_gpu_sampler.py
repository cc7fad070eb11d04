"""The sampler thread: delivers batches, stops when asked, and survives a failing backend or callback."""

import threading

import pytest

from engine.gpu.fake import FakeNvml, fake_h100
from engine.gpu.nvml import open_nvml
from engine.gpu.sampler import TelemetrySampler

WAIT_S = 10.0  # generous bound; the sampler delivers in tenths of a second


@pytest.fixture
def backend(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    backend, message = open_nvml(FakeNvml([fake_h100(0), fake_h100(1)]), source="fake")
    assert backend is not None, message
    return backend


def _collect(batches_wanted: int):
    batches: list = []
    enough = threading.Event()

    def on_samples(samples):
        batches.append(samples)
        if len(batches) >= batches_wanted:
            enough.set()

    return batches, enough, on_samples


def test_sampler_delivers_one_batch_per_tick_for_every_gpu_and_stops(backend):
    batches, enough, on_samples = _collect(3)
    sampler = TelemetrySampler(backend, [0, 1], hz=50.0, on_samples=on_samples)
    sampler.start()
    assert enough.wait(WAIT_S)
    sampler.stop()
    assert not sampler.running
    assert all([s.gpu_index for s in batch] == [0, 1] for batch in batches)
    stamps = [batch[0].t_ns for batch in batches]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    delivered = len(batches)
    assert sampler.batches == delivered


def test_sampler_survives_a_failing_backend_and_a_failing_callback(backend):
    calls = {"read": 0}
    real_read = backend.read

    def flaky_read(indices):
        calls["read"] += 1
        if calls["read"] % 2:
            raise RuntimeError("driver hiccup")
        return real_read(indices)

    backend.read = flaky_read
    batches, enough, collect = _collect(3)
    raised = []

    def on_samples(samples):
        if not raised:
            raised.append(True)
            raise ValueError("consumer bug")
        collect(samples)

    sampler = TelemetrySampler(backend, [0], hz=50.0, on_samples=on_samples)
    sampler.start()
    assert enough.wait(WAIT_S)
    sampler.stop()
    assert sampler.last_error is not None
    assert "driver hiccup" in sampler.last_error or "consumer bug" in sampler.last_error
    assert len(batches) >= 3


def test_sample_once_never_raises(backend):
    sampler = TelemetrySampler(backend, [0], hz=10.0)
    backend.read = lambda indices: 1 / 0
    assert sampler.sample_once() == []
    assert sampler.last_error == "ZeroDivisionError: division by zero"


def test_rate_must_be_positive(backend):
    with pytest.raises(ValueError):
        TelemetrySampler(backend, [0], hz=0)

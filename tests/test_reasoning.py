"""Reasoning models: time to first output token (TTFO, the answer's first chunk) beside TTFT (the first chunk of
any content, reasoning included), against the simulator's --reasoning-tokens streams over real HTTP on 127.0.0.1.

The ground truth is the simulator's own write stamps (``/sim/stamps``): the first chunk it wrote, and the first
chunk after its reasoning chunks. Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from pathlib import Path

import pytest
from engine_helpers import SIM_MODEL, CollectingSink, config, sim_server, sim_stamps, wait_for

from engine.endpoint.http_choice import open_stream_client
from engine.endpoint.sse import StreamParser
from engine.load.controller import Controller
from engine.replay.feeder import Feeder
from engine.snapshot import RunState
from engine.storage.reader import open_recording
from engine.storage.recorder import session_recorders
from engine.workload.synthetic import SyntheticFactory

REASONING = 20
STEP_MS = 20.0  # one decode step (decode_per_seq_ms=0): the reasoning takes REASONING steps of this


@pytest.fixture(scope="module")
def thinker():
    with sim_server(speed=1.0, seed=11, reasoning_tokens=REASONING, decode_base_ms=STEP_MS,
                    decode_per_seq_ms=0.0) as url:
        yield url


@pytest.mark.parametrize("kind", ["lean", "aiohttp"])
@pytest.mark.parametrize("api", ["chat", "responses"])
async def test_ttfo_follows_ttft_by_the_reasoning_the_server_streamed(thinker, kind, api):
    cfg = config(thinker, api=api, max_tokens=REASONING + 10)
    spec = SyntheticFactory(api, 16, REASONING + 10).make(1, random.Random(1))
    text: list[str] = []
    async with open_stream_client(cfg, kind) as client:
        record = await asyncio.wait_for(client.run(1, spec, text_out=text), 30)
    assert record.ok, record.error_detail
    truth = sim_stamps(thinker, record.response_id)
    writes = truth["chunk_write_ns"]
    assert truth["reasoning_chunks"] == record.reasoning_chunks == REASONING
    assert record.chunks == len(writes) == REASONING + 10 and record.output_tokens == truth["completion_tokens"]
    assert record.t_first_token_ns < record.t_first_output_ns
    measured = record.t_first_output_ns - record.t_first_token_ns
    real = writes[REASONING] - writes[0]  # the server's reasoning time, from its own write stamps
    assert real >= (REASONING - 1) * STEP_MS * 1e6 * 0.99
    assert abs(measured - real) <= max(0.15 * real, 30e6), (measured, real)  # loopback: stamps where bytes arrive
    assert len(text) == 10  # the answer's text, without the reasoning (multi-turn sessions send it back)


def test_reasoning_deltas_count_for_ttft_and_only_answer_content_for_ttfo():
    """The parser on the shapes servers send: vLLM/SGLang ``reasoning_content``, ``reasoning`` (OpenRouter, newer
    vLLM), content null beside reasoning, and a template learnt from reasoning chunks that must not swallow the
    answer's chunks."""

    def event(delta: dict) -> bytes:
        import json

        return b"data: " + json.dumps({"id": "x", "choices": [{"index": 0, "delta": delta}]}).encode() + b"\n\n"

    p = StreamParser()
    p.feed(event({"role": "assistant", "content": ""}), 1)
    p.feed(event({"content": None, "reasoning_content": "hmm"}), 2)
    p.feed(event({"content": None, "reasoning_content": "so"}), 3)  # template path
    p.feed(event({"reasoning": "then"}), 4)
    p.feed(event({"content": "Hi"}), 5)
    p.feed(event({"content": "!"}), 6)  # template path
    assert (p.first_ns, p.first_output_ns, p.chunks, p.reasoning_chunks) == (2, 5, 5, 3)
    plain = StreamParser(text=[])
    plain.feed(event({"content": "a"}) + event({"content": "b"}), 7)
    assert (plain.first_ns, plain.first_output_ns, plain.reasoning_chunks, plain.text) == (7, 7, 0, ["a", "b"])


def test_long_reasoning_answers_show_ttfo_and_itl_before_any_request_ends_and_replay_the_same(tmp_path):
    """Answers far longer than the test: no record arrives, so TTFO and ITL can only come from the progress
    ticks. TTFO - TTFT is the simulated reasoning time; ITL is one decode step; the recording (without per-token
    stamps) replays the same figures."""
    reasoning, step_ms, streams = 30, 40.0, 3
    with sim_server(speed=1.0, seed=12, reasoning_tokens=reasoning, decode_base_ms=step_ms,
                    decode_per_seq_ms=0.0) as url:
        cfg = config(url, concurrency=streams, max_tokens=4000, tick_hz=4, window_s=120.0, model=SIM_MODEL)
        sink = CollectingSink()
        c = Controller(cfg, sinks=[sink], stop_grace_s=0.0, recorder_factory=session_recorders(directory=tmp_path))
        path = Path(c.start_recording(str(tmp_path / f"think-{uuid.uuid4().hex[:8]}.wattload.sqlite")))
        c.start()
        try:
            wait_for(lambda: c.latest.state is RunState.RUNNING and c.latest.window.ttfo.count == streams
                     and c.latest.window.itl.count >= 100, 90, "3 TTFOs and 100 gaps in the window")
            shown = c.latest
        finally:
            c.stop()
            assert c.wait(30)
            c.close()
    assert shown.total.requests == 0  # nothing ended: every figure below came on the ticks
    assert shown.reasoning and shown.window.ttft.count == streams
    # The simulator's steps are 40 ms, or longer when its loop falls behind on a loaded box (never shorter): the
    # reasoning took 30 of the steps the window's ITL measured.
    thinking_ms = shown.window.ttfo.p50 - shown.window.ttft.p50
    assert thinking_ms >= reasoning * step_ms * 0.95
    assert thinking_ms == pytest.approx(reasoning * shown.window.itl.mean, rel=0.2)
    assert shown.window.itl.p50 >= step_ms * 0.95
    shipped = [p.itl for p in sink.progress if p.itl is not None]
    assert max(len(g.buckets) for g in shipped) < 200  # compact: buckets, not every gap
    with open_recording(path) as rec:
        assert not rec.meta.record_tokens
        feeder = Feeder(rec)
        feeder.advance(round(shown.t_s * 1e6))
        replay = feeder.snapshot()
    for name in ("ttft", "ttfo", "itl"):
        live_p, replay_p = getattr(shown.window, name), getattr(replay.window, name)
        assert replay_p.count == live_p.count, name
        assert replay_p.p50 == pytest.approx(live_p.p50, rel=0.021), name
    assert replay.window.itl.mean == pytest.approx(shown.window.itl.mean, rel=1e-9)
    assert replay.reasoning


def test_the_summary_and_the_latency_panel_show_ttfo_only_for_reasoning_streams():
    from engine.reports.summary import format_summary
    from engine.snapshot import Percentiles, Snapshot, WindowStats
    from tui.widgets.latency import LatencyPanel

    stats = WindowStats(ttft=Percentiles(count=3, p50=40.0, p99=90.0), ttfo=Percentiles(count=3, p50=840.0, p99=990.0))
    thinking = Snapshot(reasoning=True, window=stats, total=stats)
    plain = thinking.model_copy(update={"reasoning": False})
    assert "TTFO" in format_summary(thinking) and "TTFO" not in format_summary(plain)
    assert [line.split()[1] for line in format_summary(thinking).splitlines() if "TTFO" in line] == ["840.0"]
    panel = LatencyPanel()
    panel.build(thinking)
    assert panel.border_subtitle.startswith("TTFO p50 840 p99 990 · 10 s window")
    panel.build(plain)
    assert "TTFO" not in panel.border_subtitle

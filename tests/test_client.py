"""One streaming request over real loopback HTTP against the simulated server: counts, stamps, error classes."""

import asyncio
import random
from itertools import pairwise
from time import perf_counter_ns

import pytest
from engine_helpers import config, free_port, set_sim, sim_server, sim_stamps

from engine.config import RunConfig
from engine.endpoint.client import (
    IGNORE_EOS_REJECTED,
    ArrivalStampingHandler,
    StreamClient,
    arrival_clock,
    completions_url,
    open_session,
)
from engine.endpoint.http_choice import open_stream_client
from engine.records import ErrorClass, RequestRecord
from engine.sim.model import SimConfig
from engine.workload.synthetic import SyntheticFactory

NORMAL = {"error_rate": 0.0, "rate_429": 0.0, "reset_rate": 0.0, "malformed_rate": 0.0, "stall_rate": 0.0,
          "no_usage": False, "tokens_per_chunk": 1, "strict_fields": False, "stall_s": 2.0}
SIM = SimConfig(speed=20.0, seed=3)  # conftest.py sim_url


@pytest.fixture
def normal_sim_url(sim_url):
    """The module's simulator (conftest.py sim_url) with every fault off before and after the test."""
    set_sim(sim_url, **NORMAL)
    yield sim_url
    set_sim(sim_url, **NORMAL)


@pytest.fixture(params=["aiohttp", "lean"])
def kind(request):
    """Every client test runs with both streaming clients (engine/endpoint/http_choice.py)."""
    return request.param


async def run_one(cfg: RunConfig, kind: str, seq: int = 1) -> RequestRecord:
    spec = SyntheticFactory(cfg.api, cfg.input_tokens, cfg.max_tokens).make(seq, random.Random(seq))
    async with open_stream_client(cfg, kind, worker=3) as client:
        record = await client.run(seq, spec)
        assert client.chunks == record.chunks  # progress counting sees every content chunk once
        return record


@pytest.mark.parametrize("api", ["chat", "completions"])
async def test_token_counts_and_stamps_match_the_server(normal_sim_url, api, kind):
    rec = await run_one(config(normal_sim_url, api=api, max_tokens=24, input_tokens=40), kind)
    assert rec.ok, rec.error_detail
    truth = sim_stamps(normal_sim_url, rec.response_id)
    assert rec.output_tokens == truth["completion_tokens"] == 24
    assert rec.input_tokens == truth["prompt_tokens"]
    assert not rec.output_estimated
    assert rec.chunks == len(rec.token_times_ns) == len(truth["chunk_write_ns"])
    assert rec.worker == 3 and rec.request_id == 1 and rec.status == 200
    # causality on one clock (CLOCK_MONOTONIC): start <= server receipt <= headers; each write <= its arrival
    assert rec.t_scheduled_ns == rec.t_start_ns <= truth["t_received_ns"] <= rec.t_headers_ns
    assert rec.t_first_token_ns == rec.token_times_ns[0]
    assert all(w <= r for w, r in zip(truth["chunk_write_ns"], rec.token_times_ns, strict=True))
    assert rec.token_times_ns[-1] <= rec.t_end_ns


async def test_several_tokens_per_chunk_count_usage_not_chunks(normal_sim_url, kind):
    set_sim(normal_sim_url, tokens_per_chunk=4)
    rec = await run_one(config(normal_sim_url, max_tokens=20), kind)
    assert rec.ok and rec.chunks == 5 and rec.output_tokens == 20 and not rec.output_estimated


async def test_without_usage_the_output_is_an_estimate(normal_sim_url, kind):
    set_sim(normal_sim_url, no_usage=True)
    rec = await run_one(config(normal_sim_url, max_tokens=12), kind)
    assert rec.ok
    assert rec.output_estimated and rec.output_tokens == rec.chunks == 12 and rec.input_tokens is None


@pytest.mark.parametrize(
    ("patch", "fields", "cls"),
    [
        ({"error_rate": 1.0}, {}, ErrorClass.HTTP_5XX),
        ({"rate_429": 1.0}, {}, ErrorClass.HTTP_429),
        ({"reset_rate": 1.0}, {}, ErrorClass.STREAM_BROKEN),
        ({"malformed_rate": 1.0}, {}, ErrorClass.MALFORMED),
        ({"stall_rate": 1.0, "stall_s": 1.5}, {"read_timeout_s": 0.3}, ErrorClass.TIMEOUT),
        ({}, {"model": "no-such-model"}, ErrorClass.HTTP_4XX),
    ],
)
async def test_each_fault_is_counted_under_its_class(normal_sim_url, patch, fields, cls, kind):
    set_sim(normal_sim_url, **patch)
    rec = await run_one(config(normal_sim_url, max_tokens=16, **fields), kind)
    assert rec.error is cls, (rec.error, rec.error_detail)
    assert rec.error_detail and "\n" not in rec.error_detail
    assert not rec.ok and rec.t_end_ns >= rec.t_start_ns


async def test_connection_refused_is_a_connect_error(kind):
    rec = await run_one(config(f"http://127.0.0.1:{free_port()}/v1"), kind)
    assert rec.error is ErrorClass.CONNECT and "refused" in rec.error_detail
    assert rec.status is None and rec.t_headers_ns is None and rec.chunks == 0


async def test_ignore_eos_is_sent_and_a_strict_server_says_so_plainly(normal_sim_url, kind):
    rec = await run_one(config(normal_sim_url, ignore_eos=True, max_tokens=8), kind)
    assert rec.ok and rec.output_tokens == 8
    set_sim(normal_sim_url, strict_fields=True)
    rec = await run_one(config(normal_sim_url, ignore_eos=True), kind)
    assert rec.error is ErrorClass.HTTP_4XX and rec.status == 422
    assert rec.error_detail == IGNORE_EOS_REJECTED


async def test_api_key_is_sent_as_bearer_and_never_echoed(kind):
    secret = "sk-test-0123456789abcdef"
    with sim_server(speed=20.0, api_key=secret) as url:
        ok = await run_one(config(url, api_key=secret), kind)
        assert ok.ok, ok.error_detail
        wrong = await run_one(config(url, api_key=secret[::-1]), kind)
        assert wrong.error is ErrorClass.HTTP_4XX and wrong.status == 401
        assert secret[::-1] not in wrong.error_detail and secret not in repr(wrong)


async def test_arrival_stamps_are_taken_in_this_aiohttps_protocol(normal_sim_url):
    """The client stamps bytes when they reach the connection (engine/endpoint/client.py); if an aiohttp upgrade changes
    how protocols are built, the client silently falls back to read-time stamps: this test notices. It holds
    whether or not aiohttp has already released the connection (a body that came with its headers)."""
    cfg = config(normal_sim_url)
    url = completions_url(cfg.model_copy(update={"api": "completions"}))
    async with open_session(cfg) as session:
        for max_tokens in (1, 2, 32):
            body = {"model": cfg.model, "prompt": "hi", "max_tokens": max_tokens, "stream": True}
            async with session.post(url, json=body) as resp:
                assert isinstance(getattr(resp, "_protocol", None), ArrivalStampingHandler)
                clock = arrival_clock(resp)
                assert clock is not None, max_tokens
                assert 0 < clock.arrival_ns <= perf_counter_ns()
                await resp.read()
    handler = ArrivalStampingHandler(asyncio.get_running_loop())
    handler.data_received(b"")  # what aiohttp does after each read to resume parsing: not an arrival
    assert handler.arrival_ns == 0
    handler.data_received(b"x")
    assert 0 < handler.arrival_ns <= perf_counter_ns()


async def test_one_token_answers_get_arrival_stamps(normal_sim_url):
    """A 1-token answer (every calibration probe) arrives with its headers, and aiohttp releases the connection
    before the client looks: its stamps must still be arrival stamps, and a pooled connection reused by the next
    request must not restamp the previous one."""
    cfg = config(normal_sim_url, max_tokens=1, input_tokens=8)
    factory = SyntheticFactory(cfg.api, cfg.input_tokens, cfg.max_tokens)
    async with open_session(cfg) as session:
        client = StreamClient(cfg, session)
        records = [await client.run(i, factory.make(i, random.Random(i))) for i in range(30)]
        records += await asyncio.gather(*(client.run(i, factory.make(i, random.Random(i))) for i in range(30, 60)))
    assert client.read_stamped == 0
    for r in records:
        assert r.ok and r.output_tokens == 1, r.error_detail
        truth = sim_stamps(normal_sim_url, r.response_id)
        assert r.t_start_ns <= truth["t_received_ns"] <= r.t_headers_ns <= r.t_first_token_ns <= r.t_end_ns
        assert truth["chunk_write_ns"][0] <= r.t_first_token_ns
    for earlier, later in pairwise(records[:30]):  # sent one after the other, over one pooled connection
        assert earlier.t_first_token_ns < later.t_start_ns

"""One streaming request against a hostile server: every number is checked before it is believed, every request
ends within its read timeout, every detail is one short line without secrets. Real HTTP on 127.0.0.1.

Every case runs through both HTTP stacks: ``auto`` (the default: the lean client, aiohttp only where lean cannot
go) and ``aiohttp``, so the two clients must agree on every hostile answer."""

from __future__ import annotations

import asyncio
import time

import pytest
from hostile import MODEL, SECRET

from engine.config import RunConfig
from engine.endpoint.http_choice import open_stream_client
from engine.records import ErrorClass, RequestRecord, RequestSpec

READ_TIMEOUT_S = 1.0
REQUEST_TIMEOUT_S = 20.0
_client_kind = "auto"


@pytest.fixture(autouse=True, params=["auto", "aiohttp"])
def http_client(request):
    """Run the test once per HTTP stack (``run_one`` reads the choice)."""
    global _client_kind
    _client_kind = request.param
    yield request.param
    _client_kind = "auto"


def run_one(url: str, *, key: str | None = None, max_tokens: int = 16) -> tuple[float, RequestRecord]:
    """One request with a short read timeout; returns (seconds taken, record). Bounded by an outer deadline."""
    fields = {"base_url": url, "model": MODEL, "workers": 1, "read_timeout_s": READ_TIMEOUT_S,
              "request_timeout_s": REQUEST_TIMEOUT_S}
    if key:
        fields["api_key"] = key
    config = RunConfig(**fields)
    spec = RequestSpec(fields={"messages": [{"role": "user", "content": "hi"}]}, max_tokens=max_tokens,
                       input_tokens=4)

    async def go() -> tuple[float, RequestRecord]:
        async with open_stream_client(config, _client_kind) as client:
            t = time.monotonic()
            record = await asyncio.wait_for(client.run(1, spec), REQUEST_TIMEOUT_S + 5)
            return time.monotonic() - t, record

    return asyncio.run(go())


def one_line(detail: str) -> None:
    assert "\n" not in detail and len(detail) <= 200, detail


# -- usage that lies: rejected, counted as chunks (~), never summed -------------------------------------------

REJECTED_USAGE = {
    "usage-negative": "negative",
    "usage-huge": "absurd",
    "usage-over-int64": "absurd",
    "usage-float": "not an integer",
    "usage-string": "not an integer",
    "usage-bool": "not an integer",
    "usage-nan": "not an integer",
    "usage-prompt-only-bad": "negative",
}


@pytest.mark.parametrize("case", sorted(REJECTED_USAGE))
def test_usage_that_cannot_be_a_count_is_rejected_and_the_chunks_are_counted(hostile, case):
    _, r = run_one(hostile.url(case))
    assert r.ok, r.error_detail
    assert REJECTED_USAGE[case] in r.usage_rejected
    one_line(r.usage_rejected)
    assert r.input_tokens is None  # one bad number discredits the whole usage object
    assert r.output_estimated and r.output_tokens == r.chunks == 8


@pytest.mark.parametrize("case", ["usage-mismatch", "usage-below-chunks"])
def test_usage_that_disagrees_with_the_stream_is_flagged_not_used(hostile, case):
    _, r = run_one(hostile.url(case), max_tokens=16)
    assert r.ok and "usage says" in r.usage_rejected
    assert r.output_estimated and r.output_tokens == r.chunks == 10
    assert r.input_tokens == 12  # the prompt count is a separate fact and stays


def test_usage_a_few_tokens_off_is_believed(hostile):
    _, r = run_one(hostile.url("usage-slightly-off"))
    assert r.ok and r.usage_rejected == ""
    assert (r.output_tokens, r.output_estimated, r.chunks) == (10, False, 8)


# -- streams that never end: bounded by the read timeout -------------------------------------------------------

@pytest.mark.parametrize("case", ["keepalive-forever", "chunk-dribble"])
def test_bytes_without_tokens_end_at_the_read_timeout_not_the_total(hostile, case):
    took, r = run_one(hostile.url(case))
    assert r.error is ErrorClass.TIMEOUT, r.error_detail
    assert "no token for" in r.error_detail
    assert took < REQUEST_TIMEOUT_S / 2  # ended by the read timeout, far below the request timeout


@pytest.mark.parametrize("case", ["stall-after-headers", "stall-before-headers", "chunked-short", "length-lies"])
def test_silence_ends_at_the_read_timeout(hostile, case):
    took, r = run_one(hostile.url(case))
    assert r.error is ErrorClass.TIMEOUT, r.error_detail
    assert took < REQUEST_TIMEOUT_S / 2


def test_an_event_that_never_ends_fails_before_it_eats_the_memory(hostile):
    _, r = run_one(hostile.url("huge-line"))
    assert r.error is ErrorClass.MALFORMED
    assert "grew past 1 MiB" in r.error_detail


def test_a_response_id_of_100k_characters_is_not_kept(hostile):
    _, r = run_one(hostile.url("huge-id"))
    assert r.ok
    assert r.response_id is None or len(r.response_id) <= 200


# -- secrets in what the server sends back ---------------------------------------------------------------------

def test_a_server_echoing_an_upstream_bearer_token_is_scrubbed(hostile):
    _, r = run_one(hostile.url("echo-bearer"))
    assert r.error is ErrorClass.HTTP_5XX
    assert "sk-upstream" not in r.error_detail and "0a9f8e7d6c5b" not in r.error_detail
    one_line(r.error_detail)


def test_an_error_inside_the_stream_quoting_a_bearer_token_is_scrubbed(hostile):
    _, r = run_one(hostile.url("stream-error-bearer"))
    assert r.error is ErrorClass.HTTP_5XX and "error in the stream" in r.error_detail
    assert "77aa66bb55cc" not in r.error_detail


def test_a_server_echoing_our_key_and_authorization_header_is_scrubbed(hostile):
    _, r = run_one(hostile.url("echo-key"), key=SECRET)
    assert r.error is ErrorClass.HTTP_5XX
    assert SECRET not in r.error_detail and "4b1d9e0c7a2f33" not in r.error_detail


# -- 429 Retry-After: read and bounded -------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("case", "expected"),
    [("retry-after", 1.0), ("retry-after-absurd", 60.0), ("retry-after-date", 0.0),
     ("retry-after-negative", 0.0), ("retry-after-nan", None)],
)
def test_retry_after_is_read_and_bounded(hostile, case, expected):
    _, r = run_one(hostile.url(case))
    assert r.error is ErrorClass.HTTP_429
    assert r.retry_after_s == expected

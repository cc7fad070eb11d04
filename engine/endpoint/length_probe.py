"""One-token probe requests: how many prompt tokens the server counts for a request, and whether a request shape
fits its context.

They go through the load's own client (``engine.endpoint.client``), so bodies, headers and usage parsing are
identical to what the workers send; only ``max_tokens`` is 1, so a probe costs one prefill.
"""

from __future__ import annotations

import re
from dataclasses import replace

from engine.config import RunConfig
from engine.endpoint.client import (
    NOT_STREAMING,
    StreamClient,
    completions_url,
    error_message,
    open_session,
    request_body,
    request_headers,
)
from engine.endpoint.errors import PROBE_TIMEOUT_S, ExceedsContext, ProbeError, ServerFaultDuringProbe
from engine.records import ErrorClass, RequestSpec

_SERVER_FAULTS = frozenset(
    {ErrorClass.HTTP_5XX, ErrorClass.HTTP_429, ErrorClass.STREAM_BROKEN, ErrorClass.MALFORMED, ErrorClass.TIMEOUT}
)

_CONTEXT_RE = re.compile(r"context|max_model_len|too long|must be <=|exceeds", re.IGNORECASE)


async def prompt_tokens_of(client: StreamClient, spec: RequestSpec) -> int:
    """Send ``spec`` with max_tokens=1 and return the server's usage.prompt_tokens."""
    record = await client.run(0, replace(spec, max_tokens=1))
    if record.error is not None:
        detail = record.error_detail or record.error.value
        if record.status in (400, 413, 422) and _CONTEXT_RE.search(detail):
            raise ExceedsContext(detail)
        if record.status == 200 and detail.startswith(NOT_STREAMING):
            # not a flaky server but the wrong endpoint: the run would fail the same way, so this is the one line
            raise ProbeError(f"calibration probe: {detail}; is this an OpenAI-compatible streaming endpoint "
                             "(check the URL and --api)?")
        if record.error in _SERVER_FAULTS:
            raise ServerFaultDuringProbe(f"calibration probe failed: {detail}")
        raise ProbeError(f"calibration probe failed: {detail}")
    if record.input_tokens is None:
        raise ProbeError("the server sent no usage.prompt_tokens, so prompt lengths cannot be calibrated")
    return record.input_tokens


async def check_fits(config: RunConfig, spec: RequestSpec) -> None:
    """Raise ExceedsContext when the server refuses this prompt with its full max_tokens; the stream is closed as
    soon as the status line arrives, so a fitting request costs almost nothing."""
    import aiohttp

    body = request_body(config, spec)
    timeout = aiohttp.ClientTimeout(total=min(config.request_timeout_s, PROBE_TIMEOUT_S))
    async with (
        open_session(config) as session,
        session.post(completions_url(config), json=body, headers=request_headers(config), timeout=timeout) as resp,
    ):
        if resp.status == 200:
            resp.close()  # do not wait for the generation: closing the stream frees the server's slot
            return
        message = error_message(await resp.content.read(4096))
        line = f"HTTP {resp.status}: {message}" if message else f"HTTP {resp.status}"
        if resp.status in (400, 413, 422) and _CONTEXT_RE.search(message):
            raise ExceedsContext(line)
        raise ProbeError(f"probe failed: {line}")

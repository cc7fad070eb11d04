"""Ground truth: when the server really wrote each chunk, so a client's own timing can be checked against it."""

from __future__ import annotations

from array import array
from collections import OrderedDict


class RequestStamps:
    """One response's server-side facts. Stamps are ``perf_counter_ns`` taken just before the transport write."""

    __slots__ = ("chunk_write_ns", "completion_tokens", "prompt_tokens", "reasoning_chunks", "t_received_ns")

    def __init__(self, t_received_ns: int, prompt_tokens: int) -> None:
        self.t_received_ns = t_received_ns
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = 0
        self.reasoning_chunks = 0  # the first this many chunks carried reasoning content
        self.chunk_write_ns = array("q")  # 8 bytes a stamp: 100k requests x 128 chunks stay near 100 MB

    def to_json(self, response_id: str) -> dict[str, object]:
        return {
            "id": response_id,
            "t_received_ns": self.t_received_ns,
            "chunk_write_ns": self.chunk_write_ns.tolist(),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "reasoning_chunks": self.reasoning_chunks,
        }


class StampStore:
    """The most recent ``max_requests`` responses' stamps, oldest evicted first."""

    def __init__(self, max_requests: int) -> None:
        self.max_requests = max_requests
        self._items: OrderedDict[str, RequestStamps] = OrderedDict()

    def open(self, response_id: str, t_received_ns: int, prompt_tokens: int) -> RequestStamps:
        stamps = RequestStamps(t_received_ns, prompt_tokens)
        self._items[response_id] = stamps
        if len(self._items) > self.max_requests:
            self._items.popitem(last=False)
        return stamps

    def get(self, response_id: str) -> RequestStamps | None:
        return self._items.get(response_id)

    def __len__(self) -> int:
        return len(self._items)

"""Continuous batching, vLLM style: an FCFS queue gated by KV capacity, chunked prefill, one token per step.

One coroutine runs engine steps back to back on an absolute clock: each step's end is its start plus the modelled
duration (divided by the speed factor), and the next step starts at that end, not when the event loop got round
to it, so writing 256 chunks between steps does not slow the simulated GPU (like vLLM's async scheduling). Only
when the loop falls more than ``MAX_CATCH_UP_NS`` behind does the GPU count as idle and the clock restart.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from engine.sim.gpu import SimGpu
from engine.sim.model import SimConfig, StepCost, step_cost
from engine.sim.prefix_cache import NO_BLOCKS, PrefixCache, PromptBlocks
from engine.sim.stream import Sink

MAX_CATCH_UP_NS = 20_000_000


class Seq:
    """One request inside the engine."""

    __slots__ = (
        "blocks", "freed", "generated", "kv_tokens", "max_tokens", "prefilled", "prompt_tokens", "sink", "target",
    )  # fmt: skip

    def __init__(
        self, sink: Sink, prompt_tokens: int, max_tokens: int, target: int, blocks: PromptBlocks = NO_BLOCKS
    ) -> None:
        self.sink = sink
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens
        self.target = target  # tokens it will generate (== max_tokens unless it stops early)
        self.kv_tokens = prompt_tokens + max_tokens  # reserved at admission, so a running request never waits
        self.prefilled = 0
        self.blocks = blocks  # prefix-cache keys of the prompt
        self.generated = 0
        self.freed = False


class Scheduler:
    """Owns the queue, the running batch and the KV accounting; drives the simulated GPU one step at a time."""

    def __init__(self, cfg: SimConfig, gpu: SimGpu) -> None:
        self.cfg = cfg
        self.gpu = gpu
        self.waiting: deque[Seq] = deque()
        self.prefilling: list[Seq] = []
        self.decoding: list[Seq] = []
        self.kv_used = 0
        self.last_cost: StepCost | None = None
        self.steps = 0
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self.finished_total = 0
        self.prefix_cache = PrefixCache(cfg.prefix_cache_tokens)
        self._wake = asyncio.Event()

    @property
    def num_running(self) -> int:
        return len(self.prefilling) + len(self.decoding)

    def submit(self, seq: Seq) -> None:
        self.waiting.append(seq)
        self._wake.set()

    async def run(self) -> None:
        clock = time.perf_counter_ns
        t_next = clock()
        while True:
            if not (self.waiting or self.prefilling or self.decoding):
                self._wake.clear()
                await self._wake.wait()
                t_next = clock()
            self._admit()
            decoders = self.decoding
            prefills = self._plan_prefill(self.cfg.max_batched_tokens - len(decoders))
            if not decoders and not prefills:  # everything admitted was cancelled meanwhile
                await asyncio.sleep(0)
                continue
            cost = step_cost(self.cfg, len(decoders), sum(take for _, take in prefills), self.gpu.limit_w)
            self.last_cost = cost
            self.steps += 1
            self.gpu.begin_step(t_next, cost)
            t_end = t_next + int(cost.duration_s * 1e9 / self.cfg.speed)
            delay = (t_end - clock()) / 1e9
            await asyncio.sleep(delay if delay > 0 else 0)
            self._apply(decoders, prefills)
            now = clock()
            if not (self.waiting or self.prefilling or self.decoding):
                self.gpu.go_idle(t_end)
            elif now - t_end > MAX_CATCH_UP_NS:  # the loop fell behind: the GPU idled meanwhile
                self.gpu.go_idle(t_end)
                t_next = now
            else:
                t_next = t_end

    def _admit(self) -> None:
        """FCFS: admit from the head while the batch and the KV cache have room (no overtaking)."""
        cfg = self.cfg
        waiting = self.waiting
        while waiting:
            seq = waiting[0]
            if seq.sink.closed:
                waiting.popleft()
                continue
            if self.num_running >= cfg.max_batch or self.kv_used + seq.kv_tokens > cfg.kv_capacity_tokens:
                return
            waiting.popleft()
            self.kv_used += seq.kv_tokens
            seq.prefilled = self.prefix_cache.lookup(seq.blocks, seq.prompt_tokens)
            self.prefilling.append(seq)

    def _plan_prefill(self, budget: int) -> list[tuple[Seq, int]]:
        """Chunked prefill: the step's leftover token budget goes to prefilling sequences in arrival order."""
        plan: list[tuple[Seq, int]] = []
        for seq in self.prefilling:
            if budget <= 0:
                break
            take = min(seq.prompt_tokens - seq.prefilled, budget)
            plan.append((seq, take))
            budget -= take
        return plan

    def _apply(self, decoders: list[Seq], prefills: list[tuple[Seq, int]]) -> None:
        """The step is over: its tokens exist now. Emit them and retire finished or abandoned sequences."""
        started: list[Seq] = []
        for seq in decoders:
            if not seq.freed:
                self._emit(seq)
        for seq, take in prefills:
            if seq.freed:
                continue
            seq.prefilled += take
            self.prompt_tokens_total += take
            if seq.prefilled >= seq.prompt_tokens:
                self.prefix_cache.insert(seq.blocks)
                started.append(seq)
                self._emit(seq)  # the prefill step samples the first token
        self.decoding = [s for s in self.decoding if self._keep(s)]
        self.decoding.extend(s for s in started if self._keep(s))
        self.prefilling = [s for s in self.prefilling if s.prefilled < s.prompt_tokens and self._keep(s)]

    def _keep(self, seq: Seq) -> bool:
        if seq.sink.closed and not seq.freed:
            self._free(seq)
        return not seq.freed

    def _emit(self, seq: Seq) -> None:
        seq.generated += 1
        self.generation_tokens_total += 1
        if not seq.sink.token():
            self._free(seq)
        elif seq.generated >= seq.target:
            seq.sink.finish("length" if seq.target >= seq.max_tokens else "stop")
            self.finished_total += 1
            self._free(seq)

    def _free(self, seq: Seq) -> None:
        seq.freed = True
        self.kv_used -= seq.kv_tokens

    def close(self) -> None:
        """Server shutdown: end every open response so no handler waits forever."""
        for seq in (*self.waiting, *self.prefilling, *self.decoding):
            seq.sink.abort()
        self.waiting.clear()
        self.prefilling.clear()
        self.decoding.clear()

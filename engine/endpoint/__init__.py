"""Everything that talks to a serving endpoint: the streaming clients (lean httptools or aiohttp, + SSE), the
control-plane probes (httpx) and the one-token length probes. Below the workload layer: it sends what it is given
and never builds requests itself, so ``engine/workload`` stays pure."""

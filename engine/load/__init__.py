"""Driving load: the streaming client, the schedule, worker processes and the controller that owns them.

Data flow: controller -> workers (client: HTTP + SSE, perf_counter_ns stamps) -> RequestRecord batches -> the
controller's aggregator (``engine.metrics``) -> one Snapshot per tick.
"""

"""Telemetry read from other programs over Prometheus: server /metrics, the DCGM exporter, a Prometheus server.

``exposition`` parses the text format (with prometheus_client's parser), ``prom_query`` turns a Prometheus
query answer into the same shape, ``scrape`` polls sources off the hot paths, ``server_metrics`` recognises the
serving engine and normalises its figures, ``counters`` and ``server_account`` turn cumulative series into rates
and windowed percentiles that never go negative.
"""

"""From facts to figures: mergeable histograms, sliding windows, the aggregator that builds every Snapshot
(live and replay alike), and the headless summary of a finished run."""

"""Production traces: one reader per format, detected by its fields, read as a stream (bounded memory).

``open_trace(path)`` detects the format from the header (CSV) or the first object (JSONL), and returns a
``TraceSource`` whose ``rows()`` can be iterated any number of times, each pass streaming the file again.
``scan_trace`` makes one validating pass and returns the ``DataFingerprint`` (sha256, rows, length statistics) that
results and recordings carry, so two runs can be checked to have replayed the same data.
"""

from engine.workload.traces.detect import TRACE_FORMATS, TraceSource, open_trace
from engine.workload.traces.fingerprint import DataFingerprint, LengthStats, scan_trace
from engine.workload.traces.rows import TraceError, TraceRow, TraceWindow

__all__ = [
    "TRACE_FORMATS",
    "DataFingerprint",
    "LengthStats",
    "TraceError",
    "TraceRow",
    "TraceSource",
    "TraceWindow",
    "open_trace",
    "scan_trace",
]

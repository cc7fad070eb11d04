"""The one error a probe raises and the time limits every probe shares."""

from __future__ import annotations

LIST_MODELS_TIMEOUT_S = 10.0  # GET /models: a live server answers at once; waiting longer only delays the error
PREFLIGHT_TIMEOUT_S = 30.0  # one 1-token streaming request shaped like the run's
PROBE_TIMEOUT_S = 120.0  # a length probe: one prefill of up to the profile's longest prompt


class ProbeError(Exception):
    """A probe failed in a way the user can act on; ``str()`` is one line naming it (the server's own reason when it
    gave one) and what to try. Keys never appear in it."""


class ExceedsContext(ProbeError):
    """The server refused the request shape as too long for its context window (or its whole KV cache)."""


class ServerFaultDuringProbe(ProbeError):
    """A probe met a server fault (5xx, 429, a broken or malformed stream, a timeout), not a request the server
    refuses: a caller for whom the probe is optional (default calibration) may go on without it."""

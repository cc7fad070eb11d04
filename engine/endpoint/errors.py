"""The one error a probe raises and the time limits every probe shares."""

from __future__ import annotations

from engine.redact import redact_text

MAX_LINE = 300  # one readable line, however much the server sends back

LIST_MODELS_TIMEOUT_S = 10.0  # GET /models: a live server answers at once; waiting longer only delays the error
PREFLIGHT_TIMEOUT_S = 30.0  # one 1-token streaming request shaped like the run's
PROBE_TIMEOUT_S = 120.0  # a length probe: one prefill of up to the profile's longest prompt


class ProbeError(Exception):
    """A probe failed in a way the user can act on; ``str()`` is one line naming it (the server's own reason when it
    gave one) and what to try. Secrets never appear in it: the text is scrubbed when the error is made (it names
    URLs, which may carry a password, and quotes the server, which may echo the key)."""

    def __init__(self, message: str = "") -> None:
        flat = " ".join(redact_text(str(message)).split())
        super().__init__(flat if len(flat) <= MAX_LINE else flat[: MAX_LINE - 3] + "...")


class ExceedsContext(ProbeError):
    """The server refused the request shape as too long for its context window (or its whole KV cache)."""


class ServerFaultDuringProbe(ProbeError):
    """A probe met a server fault (5xx, 429, a broken or malformed stream, a timeout), not a request the server
    refuses: a caller for whom the probe is optional (default calibration) may go on without it."""

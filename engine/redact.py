"""Secrets never leave the process: one scrubber for every output path (terminal, JSON, CSV, reports, recordings,
logs, the event log, and error text a server sends back).

Three layers, so one forgotten call site is not a leak:

- **Known values.** ``register_secret`` is called once with the API key and a URL's password; every later
  ``redact_text`` replaces them wherever they appear (a server that echoes the key in an error body, a URL in a
  traceback line).
- **Shapes.** ``Bearer …``/``Basic …`` credentials, ``sk-…`` keys, ``key=…``/``token=…`` query parameters,
  ``user:password@`` in URLs and ``Authorization:``-style header lines, whether or not their value is known.
- **Keys.** In JSON-like data (``Redactor.data``), the whole value under a secret-looking key.

Cheap enough for error paths and files, deliberately never on the per-chunk hot path.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

REDACTED = "***"
_MIN_SECRET = 4  # shorter values would scrub ordinary text ("pw", "x")

_SECRET_KEY = re.compile(
    r"(api[_-]?key|authorization|secret|passw(or)?d|bearer|credential|cookie|(access|auth|bearer|api|session)"
    r"[_-]?token|^token$)",
    re.IGNORECASE,
)
_TEXT_PATTERNS = (
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{4,}"), r"\1 ***"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), "sk-***"),
    (re.compile(r"(?i)\b(api[_-]?key|token|access_token|auth)=([^&\s\"']+)"), r"\1=***"),
    (re.compile(r"(?i)\b(key)=([^&\s\"']{8,})"), r"\1=***"),  # a bare key= only with a key-sized value
    (re.compile(r"(?i)(\w+://)[^/@\s:]+:[^/@\s]*@"), r"\1***@"),  # user:password@host in URLs
    (re.compile(r"(?i)\b(x-api-key|api-key|authorization)\s*[:=]\s*\S+"), r"\1: ***"),
)

_lock = threading.Lock()
_known: tuple[str, ...] = ()


def register_secret(value: str | None) -> None:
    """Remember a secret value (the API key, a URL password) so every later redaction removes it."""
    global _known
    if not value or len(value) < _MIN_SECRET:
        return
    with _lock:
        if value not in _known:
            _known = tuple(sorted({*_known, value}, key=len, reverse=True))


def known_secrets() -> tuple[str, ...]:
    return _known


def redact_text(text: str, extra: Iterable[str | None] = ()) -> str:
    """``text`` with every registered (and ``extra``) secret value and every secret-shaped token replaced."""
    values = _known
    more = [v for v in extra if v and len(v) >= _MIN_SECRET]
    for v in sorted(more, key=len, reverse=True) if more else ():
        if v in text:
            text = text.replace(v, REDACTED)
    for v in values:
        if v in text:
            text = text.replace(v, REDACTED)
    for pattern, repl in _TEXT_PATTERNS:
        text = pattern.sub(repl, text)
    return text


def url_credentials(url: str) -> tuple[str | None, str | None]:
    """The (user, password) a URL carries, or (None, None)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None, None
    return parts.username, parts.password


def redact_url(url: str) -> str:
    """The URL without its password (``http://user:***@host/v1``); the user name is not a secret."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    if parts.password is None and "@" not in parts.netloc:
        return redact_text(url)
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    netloc = f"{user}:{REDACTED}@{host}" if parts.password is not None else f"{REDACTED}@{host}"
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def strip_credentials(url: str) -> str:
    """The URL with no user info at all (for what is shown: the endpoint without who logged in)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(SplitResult(parts.scheme, host, parts.path, parts.query, parts.fragment))


class Redactor:
    """Scrubs secrets from anything about to be written: known secret values (the API key itself, when the
    caller passes it, plus everything registered), well-known secret shapes and whole values under
    secret-looking keys. Belt and braces: ``RunConfig.safe_dump`` already leaves the key out."""

    def __init__(self, secret_values: Iterable[str | None] = ()) -> None:
        self._values = tuple(sorted({v for v in secret_values if v and len(v) >= _MIN_SECRET}, key=len, reverse=True))

    def text(self, s: str) -> str:
        return redact_text(s, self._values)

    def data(self, obj: Any) -> Any:
        """A deep copy of JSON-like data with secrets removed."""
        if isinstance(obj, dict):
            return {
                str(k): (REDACTED if _SECRET_KEY.search(str(k)) and v not in (None, "") else self.data(v))
                for k, v in obj.items()
            }
        if isinstance(obj, list | tuple):
            return [self.data(v) for v in obj]
        if isinstance(obj, str):
            return self.text(obj)
        return obj

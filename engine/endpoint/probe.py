"""Control plane, before any load: find the API base, list the models, pick one, and try one tiny request.

Uses httpx (plain, synchronous): these few calls are not on the hot path, and httpx's errors are easy to turn
into the one clear line a user needs ("cannot connect", "wrong path", "key refused", "which model?").
Every problem the user can fix raises ``ProbeError`` whose text is that line; keys never appear in it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from engine.config import RunConfig
from engine.endpoint.client import IGNORE_EOS_REJECTED, completions_url, error_message, request_body, request_headers
from engine.endpoint.errors import LIST_MODELS_TIMEOUT_S, MAX_LINE, PREFLIGHT_TIMEOUT_S, ProbeError
from engine.endpoint.sse import one_line
from engine.records import RequestSpec
from engine.redact import redact_text, redact_url

__all__ = ["KEY_HINT", "Endpoint", "ProbeError", "preflight", "resolve_endpoint"]

KEY_HINT = "pass --api-key or set OPENAI_API_KEY / WATTLOAD_API_KEY"
MAX_MODELS_SHOWN = 8


@dataclass(frozen=True, slots=True)
class Endpoint:
    base_url: str  # the API base ending in /v1 (or wherever /models answered)
    model: str
    models: tuple[str, ...]
    warning: str | None = None  # /models failed but --model named the model: the run goes on, and says why


class _NoModelList(ProbeError):
    """``/models`` answered, but with a server error or no model list: fatal only when no model was named."""


def resolve_endpoint(
    url: str, *, api_key: str | None = None, model: str | None = None, timeout_s: float = LIST_MODELS_TIMEOUT_S
) -> Endpoint:
    """Accept the server root or its /v1 base; return the base that serves ``/models`` and the model to use."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ProbeError(f"not an http(s) URL: {url!r} (e.g. http://127.0.0.1:8000 or http://host:8000/v1)")
    if api_key and (parts.username or parts.password):
        raise ProbeError(
            f"{redact_url(url)} carries credentials (user:password@) and an API key is set (--api-key, "
            "$WATTLOAD_API_KEY or $OPENAI_API_KEY): both cannot be sent; drop one of them"
        )
    candidates = [url] if parts.path.endswith("/v1") else [url + "/v1", url]
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(timeout=timeout_s, trust_env=False, headers=headers) as http:
        for base in candidates:
            try:
                models = _list_models(http, base, bool(api_key), timeout_s)
            except _NoModelList as exc:
                if not model:
                    raise
                # Listing models is a courtesy of the server; the load needs only the completions path. A proxy
                # or server whose /models is broken still gets its run when the operator named the model.
                warning = redact_text(f"{exc}; going on with --model {model!r}")
                return Endpoint(base_url=base, model=model, models=(), warning=warning)
            if models is not None:
                return Endpoint(base_url=base, model=_pick_model(models, model, base), models=tuple(models))
    tried = " and ".join(f"{c}/models" for c in candidates)
    raise ProbeError(f"no OpenAI-compatible API at {url} ({tried} answered HTTP 404); give the server root or its /v1")


def _list_models(http: httpx.Client, base: str, have_key: bool, timeout_s: float) -> list[str] | None:
    """The model ids at ``base``/models; None when that path does not exist (404)."""
    target = f"{base}/models"
    try:
        reply = http.get(target)
    except httpx.ConnectError as exc:
        raise ProbeError(f"cannot connect to {_host(base)} ({_reason(exc)}); is the server running?") from None
    except httpx.TimeoutException:
        why = f"{target} did not answer within {timeout_s:g} s; is the server busy or the URL wrong?"
        raise ProbeError(why) from None
    except httpx.HTTPError as exc:
        raise ProbeError(f"GET {target} failed: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    if reply.status_code == 404:
        return None
    if reply.status_code in (401, 403):
        raise ProbeError(_refused(reply.status_code, target, have_key))
    if reply.status_code != 200:
        why = f"GET {redact_url(target)} answered HTTP {reply.status_code}: {error_message(reply.content)}"
        raise _NoModelList(why)
    try:
        data = reply.json()["data"]
        ids = [m["id"] for m in data]
        if not all(isinstance(i, str) for i in ids):
            raise TypeError("model ids must be strings")
        return ids
    except (ValueError, KeyError, TypeError):
        why = f"{redact_url(target)} did not return an OpenAI model list; is this an OpenAI-compatible server?"
        raise _NoModelList(why) from None


def _pick_model(models: list[str], wanted: str | None, base: str) -> str:
    if wanted:
        if models and wanted not in models:
            raise ProbeError(f"model {wanted!r} is not served at {base} (it serves: {_names(models)}); check --model")
        return wanted
    if len(models) == 1:
        return models[0]
    if not models:
        raise ProbeError(f"{base}/models lists no models; name one with --model")
    raise ProbeError(f"{base} serves {len(models):,} models ({_names(models)}); pick one with --model")


def _names(models: list[str], budget: int = 120) -> str:
    """A few model names, each cut short, and how many more: a server with 5,000 ids still gets one line that
    keeps its advice at the end."""
    shown: list[str] = []
    used = 0
    for name in models[:MAX_MODELS_SHOWN]:
        short = one_line(name, 48)
        if shown and used + len(short) > budget:
            break
        shown.append(short)
        used += len(short) + 2
    more = len(models) - len(shown)
    return ", ".join(shown) + (f" and {more:,} more" if more > 0 else "")


def preflight(config: RunConfig, timeout_s: float = PREFLIGHT_TIMEOUT_S) -> str | None:
    """``_preflight``, with the warning scrubbed of secrets (it quotes the server, which may echo the key)."""
    warning = _preflight(config, timeout_s)
    if warning is None:
        return None
    secret = config.api_key.get_secret_value() if config.api_key is not None else None
    return one_line(redact_text(warning, [secret]), MAX_LINE)


def _preflight(config: RunConfig, timeout_s: float) -> str | None:
    """Send one 1-token streaming request shaped like the run's. Raises ProbeError for what the user must fix
    (404, 401/403, 422 for ignore_eos, other 4xx); returns a warning line for server-side trouble (5xx, 429,
    timeout), which the run itself will count, or None when the request worked."""
    text = "Say hi." if config.api != "completions" else "Hello"
    fields = {"messages": [{"role": "user", "content": text}]} if config.api != "completions" else {"prompt": text}
    body = request_body(config, RequestSpec(fields=fields, max_tokens=1, input_tokens=4))
    url = completions_url(config)
    try:
        with (
            httpx.Client(timeout=httpx.Timeout(timeout_s, read=min(timeout_s, config.read_timeout_s)),
                         trust_env=False) as http,
            http.stream("POST", url, json=body, headers=request_headers(config)) as reply,
        ):
            # A 200 is judged by its headers alone (its body may be a stream that never ends); an error's body
            # is read for its message, at most 64 KiB of it.
            raw = b"" if reply.status_code == 200 else _read_some(reply)
    except httpx.ConnectError as exc:
        raise ProbeError(f"cannot connect to {_host(url)} ({_reason(exc)}); is the server running?") from None
    except httpx.TimeoutException:
        waited = min(timeout_s, config.read_timeout_s)
        return f"a test request to {url} timed out (no answer within {waited:g} s); starting anyway"
    except httpx.HTTPError as exc:
        return f"a test request to {url} failed ({type(exc).__name__}); starting anyway"
    status = reply.status_code
    if status == 200:
        kind = reply.headers.get("content-type", "")
        if "event-stream" not in kind:
            shown = one_line(kind.split(";")[0], 60) or "no Content-Type"
            raise ProbeError(f"{url} answered a streaming request with HTTP 200 {shown}, not an event stream: "
                             "it does not stream; is this an OpenAI-compatible endpoint (check the URL and --api)?")
        return None
    message = error_message(raw)
    names_field = "ignore_eos" in message or "min_tokens" in message
    if config.ignore_eos and (status == 422 or (status == 400 and names_field)):
        raise ProbeError(IGNORE_EOS_REJECTED if status == 422 else IGNORE_EOS_REJECTED.replace("422", "400"))
    if status in (401, 403):
        raise ProbeError(_refused(status, url, config.api_key is not None))
    if status == 404:
        raise ProbeError(f"POST {url} answered HTTP 404 ({message}); check --model and --api (chat or completions)")
    if status == 429 or status >= 500:
        return f"a test request got HTTP {status} ({message}); starting anyway"
    raise ProbeError(f"the server rejected a test request: HTTP {status} ({message})")


def _read_some(reply: httpx.Response, limit: int = 1 << 16) -> bytes:
    """At most ``limit`` bytes of a body (a server that never stops must not hold the probe)."""
    got = bytearray()
    for part in reply.iter_raw():
        got += part
        if len(got) >= limit:
            break
    return bytes(got)


def _refused(status: int, target: str, have_key: bool) -> str:
    if have_key:
        return f"the server refused the API key (HTTP {status} from {target}); check --api-key or OPENAI_API_KEY"
    return f"the server wants an API key (HTTP {status} from {target}); {KEY_HINT}"


def _host(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc or url


def _reason(exc: Exception) -> str:
    text = str(exc).lower()
    if "refused" in text:
        return "connection refused"
    if "name or service" in text or "nodename" in text or "resolve" in text:
        return "unknown host"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__

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
from engine.endpoint.errors import LIST_MODELS_TIMEOUT_S, PREFLIGHT_TIMEOUT_S, ProbeError
from engine.records import RequestSpec

__all__ = ["KEY_HINT", "Endpoint", "ProbeError", "preflight", "resolve_endpoint"]

KEY_HINT = "pass --api-key or set OPENAI_API_KEY / WATTLOAD_API_KEY"


@dataclass(frozen=True, slots=True)
class Endpoint:
    base_url: str  # the API base ending in /v1 (or wherever /models answered)
    model: str
    models: tuple[str, ...]


def resolve_endpoint(
    url: str, *, api_key: str | None = None, model: str | None = None, timeout_s: float = LIST_MODELS_TIMEOUT_S
) -> Endpoint:
    """Accept the server root or its /v1 base; return the base that serves ``/models`` and the model to use."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ProbeError(f"not an http(s) URL: {url!r} (e.g. http://127.0.0.1:8000 or http://host:8000/v1)")
    candidates = [url] if parts.path.endswith("/v1") else [url + "/v1", url]
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(timeout=timeout_s, trust_env=False, headers=headers) as http:
        for base in candidates:
            models = _list_models(http, base, bool(api_key), timeout_s)
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
        raise ProbeError(f"GET {target} answered HTTP {reply.status_code}: {error_message(reply.content)}")
    try:
        data = reply.json()["data"]
        return [str(m["id"]) for m in data]
    except (ValueError, KeyError, TypeError):
        why = f"{target} did not return an OpenAI model list; is this an OpenAI-compatible server?"
        raise ProbeError(why) from None


def _pick_model(models: list[str], wanted: str | None, base: str) -> str:
    if wanted:
        if models and wanted not in models:
            served = ", ".join(models)
            raise ProbeError(f"model {wanted!r} is not served at {base} (it serves: {served}); check --model")
        return wanted
    if len(models) == 1:
        return models[0]
    if not models:
        raise ProbeError(f"{base}/models lists no models; name one with --model")
    raise ProbeError(f"{base} serves {len(models)} models ({', '.join(models)}); pick one with --model")


def preflight(config: RunConfig, timeout_s: float = PREFLIGHT_TIMEOUT_S) -> str | None:
    """Send one 1-token streaming request shaped like the run's. Raises ProbeError for what the user must fix
    (404, 401/403, 422 for ignore_eos, other 4xx); returns a warning line for server-side trouble (5xx, 429,
    timeout), which the run itself will count, or None when the request worked."""
    text = "Say hi." if config.api != "completions" else "Hello"
    fields = {"messages": [{"role": "user", "content": text}]} if config.api != "completions" else {"prompt": text}
    body = request_body(config, RequestSpec(fields=fields, max_tokens=1, input_tokens=4))
    url = completions_url(config)
    try:
        with (
            httpx.Client(timeout=timeout_s, trust_env=False) as http,
            http.stream("POST", url, json=body, headers=request_headers(config)) as reply,
        ):
            raw = reply.read()
    except httpx.ConnectError as exc:
        raise ProbeError(f"cannot connect to {_host(url)} ({_reason(exc)}); is the server running?") from None
    except httpx.TimeoutException:
        return f"a test request to {url} did not finish within {timeout_s:g} s; starting anyway"
    except httpx.HTTPError as exc:
        return f"a test request to {url} failed ({type(exc).__name__}); starting anyway"
    status = reply.status_code
    if status == 200:
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

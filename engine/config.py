"""Run settings: one validated model shared by the CLI, the controller, the workers and the recorder.

The API key is a ``SecretStr`` excluded from every dump, so it can reach the workers (which need it) but never a
recording, a log, a report or a JSON summary.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from engine.snapshot import LoadMode


def default_workers() -> int:
    """One worker process per two cores, at least one, at most eight (a worker drives ~40k tokens/s)."""
    return max(1, min(8, (os.cpu_count() or 2) // 2))


def api_key_from_env() -> str | None:
    return os.environ.get("WATTLOAD_API_KEY") or os.environ.get("OPENAI_API_KEY") or None


class RunConfig(BaseModel):
    """Everything a load run needs. Secrets are excluded from ``model_dump``/``safe_dump``."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    base_url: str = Field(description="the server's /v1 base, e.g. http://127.0.0.1:8000/v1")
    model: str = ""
    api: Literal["chat", "completions", "responses"] = "chat"
    api_key: SecretStr | None = Field(default=None, exclude=True)
    mode: LoadMode = LoadMode.CONCURRENCY
    concurrency: int = Field(default=8, ge=0, le=100_000)
    rate: float = Field(default=1.0, ge=0.0, le=1e6)
    step: float = Field(default=1, gt=0, description="hotkey step for concurrency (or rate)")
    duration_s: float | None = Field(default=None, gt=0)
    max_requests: int | None = Field(default=None, gt=0)
    input_tokens: int = Field(default=128, ge=1)
    max_tokens: int = Field(default=128, ge=1)
    ignore_eos: bool = Field(default=False, description="send ignore_eos/min_tokens to force the output length")
    workload: str = "synthetic"
    workers: int = Field(default_factory=default_workers, ge=1, le=64)
    tick_hz: float = Field(default=4.0, gt=0, le=60)
    window_s: float = Field(default=10.0, gt=0)
    request_timeout_s: float = Field(default=600.0, gt=0)
    read_timeout_s: float = Field(default=60.0, gt=0, description="longest silence between chunks")
    seed: int = 0
    record_token_times: bool = True
    http_client: Literal["auto", "lean", "aiohttp"] = Field(
        default="auto", description="streaming client: lean (httptools), aiohttp, or auto (lean; aiohttp when needed)"
    )

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        return v.rstrip("/")

    def safe_dump(self) -> dict[str, Any]:
        """Settings as JSON-able data with every secret removed (for recordings and reports)."""
        return self.model_dump(mode="json", exclude={"api_key"})

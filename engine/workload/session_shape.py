"""The ``[session]`` section of a workload profile (see ``engine/workload/sessions.py`` for what it does)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.workload.distributions import Distribution, Fixed, coerce_distribution


class SessionShape(BaseModel):
    """The ``[session]`` section of a workload profile."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    turns: Distribution = Field(default_factory=lambda: Fixed(value=3))
    """Turns per conversation."""
    input: Distribution | None = None
    """Tokens of each later user turn (None: the profile's input)."""
    output: Distribution | None = None
    """max_tokens of each later turn (None: the profile's output)."""
    think_time_s: float = Field(default=0.0, ge=0.0, le=3600.0)
    """Seconds between an answer and the next user turn."""
    think_time_max_s: float | None = Field(default=None, ge=0.0, le=3600.0)
    """With it, think time is uniform in [think_time_s, think_time_max_s]."""

    @field_validator("turns", "input", "output", mode="before")
    @classmethod
    def _shorthand(cls, v: object) -> object:
        return coerce_distribution(v)

    @model_validator(mode="after")
    def _think_range(self) -> SessionShape:
        if self.think_time_max_s is not None and self.think_time_max_s < self.think_time_s:
            raise ValueError("think_time_max_s must be >= think_time_s")
        return self

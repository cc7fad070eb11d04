"""Token-length distributions for workload profiles: validated on load, sampled with a caller's seeded RNG.

Sampling takes a ``random.Random`` rather than owning one, so a worker's per-request RNG (seeded from the run
seed and the request sequence number) fully determines every length and the run is reproducible. Every sample
is an integer token count of at least 1: a length distribution that could yield 0 or a negative count is
rejected when the profile loads, not clipped silently mid-run.

In TOML a plain integer means ``fixed``; a table picks the kind::

    input = 512
    output = { kind = "uniform", min = 64, max = 256 }
    input = { kind = "lognormal", mean = 800, std = 300, max = 4096 }
    output = { kind = "empirical", values = [128, 256, 1024], weights = [0.7, 0.2, 0.1] }
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_TOKENS_LIMIT = 10_000_000  # longer than any context window; catches unit mistakes (bytes for tokens)


class _Dist(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def sample(self, rng: random.Random) -> int:
        raise NotImplementedError

    def expected(self) -> float:
        """The mean of the samples (what a run's "target" length is compared against)."""
        raise NotImplementedError

    def bounds(self) -> tuple[int, int]:
        """The smallest and largest value a sample can take."""
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


class Fixed(_Dist):
    """Every request has exactly this many tokens (the matrix cells and most benchmarks)."""

    kind: Literal["fixed"] = "fixed"
    value: int = Field(ge=1, le=MAX_TOKENS_LIMIT)

    def sample(self, rng: random.Random) -> int:
        return self.value

    def expected(self) -> float:
        return float(self.value)

    def bounds(self) -> tuple[int, int]:
        return self.value, self.value

    def describe(self) -> str:
        return str(self.value)


class Uniform(_Dist):
    """Integers drawn evenly from [min, max], both included."""

    kind: Literal["uniform"] = "uniform"
    min: int = Field(ge=1, le=MAX_TOKENS_LIMIT)
    max: int = Field(ge=1, le=MAX_TOKENS_LIMIT)

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) > max ({self.max})")
        return self

    def sample(self, rng: random.Random) -> int:
        return rng.randint(self.min, self.max)

    def expected(self) -> float:
        return (self.min + self.max) / 2

    def bounds(self) -> tuple[int, int]:
        return self.min, self.max

    def describe(self) -> str:
        return f"uniform {self.min}..{self.max}"


class _Clipped(_Dist):
    """A continuous distribution rounded to integers and clipped to [min, max] (min defaults to 1)."""

    if TYPE_CHECKING:
        kind: str  # a field of each subclass (its Literal); not a field here

    mean: float = Field(gt=0, le=MAX_TOKENS_LIMIT)
    std: float = Field(ge=0, le=MAX_TOKENS_LIMIT)
    min: int = Field(default=1, ge=1, le=MAX_TOKENS_LIMIT)
    max: int = Field(default=MAX_TOKENS_LIMIT, ge=1, le=MAX_TOKENS_LIMIT)

    @model_validator(mode="after")
    def _ordered(self) -> _Clipped:
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) > max ({self.max})")
        if not self.min <= self.mean <= self.max:
            raise ValueError(f"mean ({self.mean:g}) is outside min..max ({self.min}..{self.max})")
        return self

    def _draw(self, rng: random.Random) -> float:
        raise NotImplementedError

    def sample(self, rng: random.Random) -> int:
        return min(self.max, max(self.min, round(self._draw(rng))))

    def expected(self) -> float:
        # Clipping shifts the mean (e.g. a normal clipped at 1 token); each kind gives its closed form.
        if self.std == 0:
            return float(min(self.max, max(self.min, round(self.mean))))
        return self._clipped_mean()

    def _clipped_mean(self) -> float:
        raise NotImplementedError

    def bounds(self) -> tuple[int, int]:
        return self.min, self.max

    def describe(self) -> str:
        return f"{self.kind} {self.mean:g}±{self.std:g}"


class Normal(_Clipped):
    """Gaussian lengths: symmetric spread around a typical size."""

    kind: Literal["normal"] = "normal"

    def _draw(self, rng: random.Random) -> float:
        return rng.gauss(self.mean, self.std)

    def _clipped_mean(self) -> float:
        # E[clip(X, a, b)] = a P(X<a) + b P(X>b) + the partial mean over [a, b] (closed form; rounding is unbiased)
        mu, sd, a, b = self.mean, self.std, self.min, self.max
        alpha, beta = (a - mu) / sd, (b - mu) / sd
        inside = mu * (_cdf(beta) - _cdf(alpha)) + sd * (_pdf(alpha) - _pdf(beta))
        return a * _cdf(alpha) + b * (1 - _cdf(beta)) + inside


class LogNormal(_Clipped):
    """Long-tailed lengths (real chat traffic); ``mean`` and ``std`` are those of the lengths themselves."""

    kind: Literal["lognormal"] = "lognormal"

    def _params(self) -> tuple[float, float]:
        sigma2 = math.log1p((self.std / self.mean) ** 2)
        return math.log(self.mean) - sigma2 / 2, math.sqrt(sigma2)

    def _draw(self, rng: random.Random) -> float:
        mu, sigma = self._params()
        return rng.lognormvariate(mu, sigma)

    def _clipped_mean(self) -> float:
        mu, sigma = self._params()
        a, b = self.min, self.max
        za, zb = (math.log(a) - mu) / sigma, (math.log(b) - mu) / sigma
        inside = math.exp(mu + sigma**2 / 2) * (_cdf(zb - sigma) - _cdf(za - sigma))
        return a * _cdf(za) + b * (1 - _cdf(zb)) + inside


def _cdf(z: float) -> float:
    return 0.5 * math.erfc(-z / math.sqrt(2))


def _pdf(z: float) -> float:
    return math.exp(-z * z / 2) / math.sqrt(2 * math.pi)


class Empirical(_Dist):
    """Lengths drawn from a list (e.g. measured from production), optionally weighted."""

    kind: Literal["empirical"] = "empirical"
    values: list[Annotated[int, Field(ge=1, le=MAX_TOKENS_LIMIT)]] = Field(min_length=1)
    weights: list[Annotated[float, Field(ge=0)]] | None = None

    @model_validator(mode="after")
    def _weights_match(self) -> Empirical:
        if self.weights is not None:
            if len(self.weights) != len(self.values):
                raise ValueError(f"weights has {len(self.weights)} entries but values has {len(self.values)}")
            if sum(self.weights) <= 0:
                raise ValueError("weights sum to 0")
        return self

    def sample(self, rng: random.Random) -> int:
        if self.weights is None:
            return rng.choice(self.values)
        return rng.choices(self.values, weights=self.weights, k=1)[0]

    def expected(self) -> float:
        if self.weights is None:
            return sum(self.values) / len(self.values)
        return sum(v * w for v, w in zip(self.values, self.weights, strict=True)) / sum(self.weights)

    def bounds(self) -> tuple[int, int]:
        return min(self.values), max(self.values)

    def describe(self) -> str:
        return f"empirical ({len(self.values)} values, mean {self.expected():.0f})"


Distribution = Annotated[Fixed | Uniform | Normal | LogNormal | Empirical, Field(discriminator="kind")]


def coerce_distribution(value: object) -> object:
    """TOML shorthand: a bare integer means a fixed length. Anything else is left for pydantic to validate."""
    if isinstance(value, int) and not isinstance(value, bool):
        return {"kind": "fixed", "value": value}
    return value

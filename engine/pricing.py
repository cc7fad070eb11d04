"""Pricing profiles: what a GPU-hour and a kWh cost, as validated TOML files (``profiles/pricing/*.toml``).

A profile prices GPUs either as a rental ($/GPU-hour) or as owned hardware (purchase price depreciated over N
years plus an hourly overhead), and says whether power is included. Every bad file gives one line that names the
file, the field and the rule broken, never a traceback.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_PRICING = "h100-sxm-rental"
HOURS_PER_YEAR = 8760.0


class PricingError(ValueError):
    """A pricing profile that cannot be used; ``str(exc)`` is one line naming file, field and rule."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RentalCost(_Strict):
    """GPUs rented by the hour (cloud on-demand or reserved)."""

    dollars_per_gpu_hour: float = Field(ge=0)
    """Price of one GPU for one hour, as billed."""


class OwnershipCost(_Strict):
    """GPUs bought: straight-line depreciation plus what it takes to run them."""

    purchase_price_per_gpu: float = Field(ge=0)
    """Server price divided by its GPUs (the host's share included), in dollars."""
    depreciation_years: float = Field(gt=0)
    """Years over which the purchase is written off (8760 hours a year, fully used)."""
    overhead_per_gpu_hour: float = Field(default=0.0, ge=0)
    """Host, network, space, support and staff per GPU-hour, energy excluded."""


class EnergyPrice(_Strict):
    """Electricity, counted from the measured energy when the GPU price does not include it."""

    included_in_gpu_price: bool
    """True for most rentals: the provider pays for power, so measured energy adds no cost."""
    dollars_per_kwh: float = Field(ge=0)
    """Price of one kWh at the meter."""
    pue: float = Field(default=1.0, ge=1.0, le=5.0)
    """Power usage effectiveness: facility energy / IT energy (cooling, conversion losses)."""


class PricingProfile(_Strict):
    """One way to price serving: GPU cost per hour plus (unless included) electricity."""

    name: str = ""
    """Defaults to the file name without .toml."""
    description: str = ""
    gpu: str = Field(min_length=1)
    """The GPU model these prices are for, e.g. "H100 SXM 80GB"."""
    source: str = Field(min_length=1)
    """Where the figures come from, and when (prices change: check them)."""
    assumptions: list[str] = Field(default_factory=list)
    gpus: int = Field(default=1, ge=1)
    """GPUs serving the endpoint, used when GPU telemetry cannot count them (a remote server)."""
    assumed_watts_per_gpu: float | None = Field(default=None, gt=0)
    """Average draw per GPU for the energy cost when no GPU telemetry is available."""
    rental: RentalCost | None = None
    ownership: OwnershipCost | None = None
    energy: EnergyPrice

    @model_validator(mode="after")
    def _one_cost_basis(self) -> Self:
        if (self.rental is None) == (self.ownership is None):
            raise ValueError("give exactly one of [rental] or [ownership]")
        return self

    @property
    def basis(self) -> str:
        return "rental" if self.rental is not None else "ownership"


def _rule(err: Any) -> str:
    ctx = err.get("ctx") or {}
    kind = err["type"]
    for key, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if key in ctx and kind.startswith(("greater", "less")):
            bound = ctx[key]
            bound = f"{bound:g}" if isinstance(bound, int | float) else bound
            return f"must be {op} {bound} (got {err['input']!r})"
    return str(err["msg"]).removeprefix("Value error, ")


def _one_line(origin: str, exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    if first["type"] == "missing":
        return f"{origin}: missing field '{where}'{more}"
    if first["type"] == "extra_forbidden":
        return f"{origin}: unknown key '{where}'{more}"
    field = f"field '{where}': " if where else ""
    return f"{origin}: {field}{_rule(first)}{more}"


def parse_pricing(data: bytes, origin: str, default_name: str = "") -> PricingProfile:
    """Validate TOML bytes into a profile; ``origin`` names the file in errors."""
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise PricingError(f"{origin}: not a TOML file (not UTF-8 text)") from None
    except tomllib.TOMLDecodeError as exc:
        raise PricingError(f"{origin}: not valid TOML: {exc}") from None
    if default_name and not raw.get("name"):
        raw["name"] = default_name
    try:
        return PricingProfile.model_validate(raw)
    except ValidationError as exc:
        raise PricingError(_one_line(origin, exc)) from None


def _builtin_dir() -> Any:
    return resources.files("profiles") / "pricing"


def list_pricing() -> list[str]:
    """Names of the built-in pricing profiles."""
    return sorted(p.name.removesuffix(".toml") for p in _builtin_dir().iterdir() if p.name.endswith(".toml"))


def load_pricing(name_or_path: str | Path) -> PricingProfile:
    """A built-in profile by name, or a TOML file by path. Raises PricingError (one line)."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if isinstance(name_or_path, Path) or text.endswith(".toml") or "/" in text or path.exists():
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise PricingError(f"{path}: cannot read pricing file ({exc.strerror})") from None
        return parse_pricing(data, str(path), path.stem)
    if text == "default":
        text = DEFAULT_PRICING
    builtin = _builtin_dir() / f"{text}.toml"
    if not builtin.is_file():
        raise PricingError(f"unknown pricing profile {text!r} (built in: {', '.join(list_pricing())})")
    return parse_pricing(builtin.read_bytes(), f"profiles/pricing/{text}.toml", text)


def apply_overrides(
    profile: PricingProfile,
    gpu_hourly: float | None = None,
    kwh: float | None = None,
    pue: float | None = None,
) -> PricingProfile:
    """The profile with command-line overrides: ``gpu_hourly`` makes it a rental at that price; ``kwh`` and
    ``pue`` set the electricity price and PUE. Raises PricingError for values a profile may not hold."""
    data = profile.model_dump()
    if gpu_hourly is not None:
        data["rental"] = {"dollars_per_gpu_hour": gpu_hourly}
        data["ownership"] = None
    if kwh is not None:
        data["energy"]["dollars_per_kwh"] = kwh
    if pue is not None:
        data["energy"]["pue"] = pue
    try:
        return PricingProfile.model_validate(data)
    except ValidationError as exc:
        raise PricingError(_one_line("pricing override", exc)) from None

"""The user's defaults file: ``$XDG_CONFIG_HOME/wattload/config.toml`` (``~/.config/wattload/config.toml``).

A few settings an operator would otherwise type every time (the endpoint, where the API key lives, the pricing
profile, the refresh rate, the load step, the window, the recordings folder, the GPU source, the colour theme).
Command-line flags always win; the file only changes the defaults of `run`, `demo` and `replay`. It never holds
a secret: the API key's *environment variable name* goes in ``api_key_env``, and a file that has an ``api_key``
is refused with one line.
``wattload config`` shows the path, every setting's effective value and where it came from.
"""

from __future__ import annotations

import argparse
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engine.cli.argtypes import parse_duration
from engine.cli.exits import UserError
from engine.gpu.base import BACKEND_KINDS

FILE_NAME = "config.toml"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def config_path(env: Mapping[str, str] | None = None) -> Path:
    """Where the file is (or would be): XDG_CONFIG_HOME when set and absolute, else ~/.config."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME", "")
    root = Path(base) if base and Path(base).is_absolute() else Path(env.get("HOME") or Path.home()) / ".config"
    return root / "wattload" / FILE_NAME


class FileSettings(BaseModel):
    """What the file may set; None = not set there (the built-in default applies)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str | None = Field(default=None, description="`wattload run` without a URL loads this endpoint")
    api_key_env: str | None = Field(default=None, description="the environment variable that holds the API key")
    pricing: str | None = Field(default=None, description="pricing profile (a built-in name or a TOML file)")
    refresh: float | None = Field(default=None, gt=0, description="dashboard refresh rate, Hz")
    step: float | None = Field(default=None, gt=0, description="hotkey load step (concurrency or req/s)")
    window: float | None = Field(default=None, gt=0, description="sliding window of the live figures, seconds")
    record_dir: str | None = Field(default=None, description="where recordings are written")
    gpu: str | None = Field(default=None, description="GPU telemetry source: " + ", ".join(BACKEND_KINDS))
    theme: str | None = Field(default=None, description="dashboard colour theme (Textual's names, e.g. nord)")

    @field_validator("window", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return parse_duration(value)
            except argparse.ArgumentTypeError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("record_dir")
    @classmethod
    def _home(cls, value: str | None) -> str | None:
        return None if value is None else os.path.expanduser(value)  # a shell would have expanded "~" in a flag

    @field_validator("gpu")
    @classmethod
    def _gpu(cls, value: str | None) -> str | None:
        if value is not None and value not in BACKEND_KINDS:
            raise ValueError(f"must be one of {', '.join(BACKEND_KINDS)}")
        return value

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError("must be an environment variable's name (e.g. VLLM_API_KEY), not a key")
        return value


# setting -> the argparse destination it is the default of (settings without one are read where they apply)
ARG_DESTS: Mapping[str, str] = {"pricing": "pricing", "refresh": "refresh", "step": "step", "window": "window",
                                "record_dir": "record_dir", "gpu": "gpu"}  # fmt: skip


def load_settings(path: Path | None = None) -> FileSettings:
    """The file's settings (empty when there is no file); a file that cannot be used is one UserError line."""
    path = config_path() if path is None else path
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return FileSettings()
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        data: dict[str, Any] = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid TOML ({exc})") from None
    if "api_key" in data:  # never echo it: the message names the key, not its value
        raise UserError(f"{path}: api_key does not belong in a file; put the name of the environment variable that "
                        "holds it in api_key_env (e.g. api_key_env = \"VLLM_API_KEY\")")
    try:
        return FileSettings.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "the file"
        if err["type"] == "extra_forbidden":
            known = ", ".join(FileSettings.model_fields)
            raise UserError(f"{path}: unknown setting {where!r} (known: {known})") from None
        raise UserError(f"{path}: {where}: {err['msg']}") from None


APPLIES_TO = ("run", "demo", "replay")  # the commands the file sets defaults for (sweep and plan keep their own:
# a sweep's --window unset means "each cap step's --step-time", plan's --pricing unset "the result's")


def apply_to_parser(settings: FileSettings, parser: argparse.ArgumentParser) -> None:
    """Make the file's values the defaults of the dashboard commands' options: a flag given still wins."""
    values = {dest: getattr(settings, name) for name, dest in ARG_DESTS.items() if getattr(settings, name) is not None}
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for name, sub in action.choices.items():
            if name not in APPLIES_TO:
                continue
            dests = {a.dest for a in sub._actions}
            wanted = {dest: value for dest, value in values.items() if dest in dests}
            if wanted:
                sub.set_defaults(**wanted)


def apply_to_args(settings: FileSettings, args: argparse.Namespace, env: Mapping[str, str] | None = None) -> None:
    """What a parser default cannot say: the endpoint of `run` (when neither a URL nor --sim is given) and the
    API key from the environment variable the file names (when --api-key is not given)."""
    env = os.environ if env is None else env
    if settings.endpoint and getattr(args, "command", None) == "run" and args.url is None and not args.sim:
        args.url = settings.endpoint
    if settings.api_key_env and hasattr(args, "api_key") and args.api_key is None:
        args.api_key = env.get(settings.api_key_env) or None

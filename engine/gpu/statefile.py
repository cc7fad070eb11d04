"""The power-cap state file: the limits GPUs had before wattload changed them.

It is written before the first change and removed after a full restore, so after a kill -9 (no handler runs)
``wattload gpu restore`` still knows what to put back. Default place: ``$WATTLOAD_STATE_DIR/powercap.json``,
else ``$XDG_STATE_HOME/wattload/powercap.json``, else ``~/.local/state/wattload/powercap.json``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

STATE_VERSION = 1


class StateFileError(ValueError):
    """The state file exists but cannot be read (one line naming the file)."""


class SavedLimit(BaseModel):
    """One GPU's power limit before the first change."""

    model_config = ConfigDict(extra="forbid")

    index: int = Field(ge=0)
    uuid: str | None = None
    name: str = ""
    limit_w: float = Field(gt=0, description="the requested limit to restore, in watts")


class PowerCapState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = STATE_VERSION
    source: str = "nvml"  # backend that made the change: "nvml", "sim" or "fake"
    sim_url: str | None = None  # where the sim backend was, to restore it too
    pid: int = Field(default_factory=os.getpid)
    written_at: str = Field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))  # a label only
    gpus: list[SavedLimit] = Field(default_factory=list)


def default_state_file() -> Path:
    """Where the state file lives unless a caller names one."""
    base = os.environ.get("WATTLOAD_STATE_DIR")
    if base:
        return Path(base) / "powercap.json"
    xdg = os.environ.get("XDG_STATE_HOME")
    root = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return root / "wattload" / "powercap.json"


def read_state(path: Path) -> PowerCapState | None:
    """The saved state, or None when there is no file. Raises StateFileError (one line) on a corrupt file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return PowerCapState.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "file"
        raise StateFileError(f"{path}: not a wattload power-cap state file ({where}: {first['msg']})") from None


def write_state(path: Path, state: PowerCapState) -> None:
    """Atomic write (temp file + rename), so a crash mid-write never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(state.model_dump_json(indent=2))
    os.replace(tmp, path)


def remove_state(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass

"""`wattload config`: where the defaults file is, every setting's effective value and where it came from.

Secrets are never printed: for the API key only the environment variable's name and whether it is set.
"""

from __future__ import annotations

import argparse
import os

from engine.cli.options import run_default
from engine.cli.settings_file import FileSettings, config_path, load_settings
from engine.pricing import DEFAULT_PRICING
from engine.redact import redact_url

BUILT_IN: dict[str, str] = {
    "endpoint": "none: `wattload run` needs a URL or --sim",
    "api_key_env": "none: $WATTLOAD_API_KEY, else $OPENAI_API_KEY",
    "pricing": f"the detected GPU's built-in profile, else {DEFAULT_PRICING}",
    "refresh": f"{run_default('tick_hz'):g} Hz",
    "step": "1 (demo: 4)",
    "window": f"{run_default('window_s'):g} s",
    "record_dir": "recordings",
    "gpu": "auto",
    "theme": "textual-dark",
}
UNITS = {"refresh": " Hz", "window": " s"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "config",
        help="show the defaults file (path, values, where each came from)",
        description=f"Show {config_path()}: the defaults it sets for run, demo and the dashboard (flags on the "
        "command line always win), every setting's effective value and where it came from. Keys: "
        + ", ".join(FileSettings.model_fields) + ". The API key itself never goes in the file: name its "
        "environment variable in api_key_env.",
    )
    p.set_defaults(func=_run)


def describe(settings: FileSettings, *, found: bool, path: str) -> list[str]:
    """The lines `wattload config` prints."""
    lines = [f"config file  {path}" + ("" if found else "  (not found: the built-in defaults apply)"), ""]
    rows = []
    for name in FileSettings.model_fields:
        value = getattr(settings, name)
        if value is None:
            shown, origin = BUILT_IN[name], "built-in default"
        else:
            shown, origin = f"{value:g}" if isinstance(value, float) else str(value), "config file"
            shown += UNITS.get(name, "")
            if name == "endpoint":
                shown = redact_url(shown)  # a password in the URL is a secret too
        if name == "api_key_env":
            names = [settings.api_key_env] if settings.api_key_env else ["WATTLOAD_API_KEY", "OPENAI_API_KEY"]
            state = ", ".join(f"${n} {'set' if os.environ.get(n) else 'not set'}" for n in names)
            shown += f" ({state})"
        rows.append((name, shown, origin))
    width = max(len(name) for name, _, _ in rows)
    value_w = max(len(shown) for _, shown, _ in rows)
    lines += [f"{name.ljust(width)}  {shown.ljust(value_w)}  {origin}" for name, shown, origin in rows]
    lines += ["", "Flags on the command line override every one of these."]
    return lines


def _run(_args: argparse.Namespace) -> int:
    path = config_path()
    settings = load_settings(path)
    print("\n".join(describe(settings, found=path.exists(), path=str(path))))
    return 0

"""The engine is headless, and provably so: no engine module and no `wattload run --headless` imports textual."""

import subprocess
import sys
import textwrap

from engine.sim.model import SimConfig
from engine.sim.process import start_sim_process

IMPORT_EVERY_ENGINE_MODULE = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    import engine
    names = [m.name for m in pkgutil.walk_packages(engine.__path__, "engine.")]
    for name in names:
        if name.endswith("__main__"):
            continue  # running a package's __main__ would start it (the simulator's CLI)
        importlib.import_module(name)
    assert len(names) > 20, names
    assert "textual" not in sys.modules, sorted(m for m in sys.modules if m.startswith("textual"))
    print(len(names), "modules")
    """
)

HEADLESS_RUN = textwrap.dedent(
    """
    import sys
    from tui.cli import main
    code = main(["run", sys.argv[1], "--headless", "--requests", "4", "-c", "2", "--max-tokens", "4", "--gpu", "none"])
    loaded = sorted(m for m in sys.modules if m == "textual" or m.startswith("textual."))
    print("exit", code, "textual:", loaded)
    sys.exit(1 if loaded else code)
    """
)


def test_no_engine_module_imports_textual():
    done = subprocess.run([sys.executable, "-c", IMPORT_EVERY_ENGINE_MODULE], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "modules" in done.stdout


def test_headless_run_never_imports_textual():
    with start_sim_process(SimConfig(speed=20.0)) as sim:
        done = subprocess.run([sys.executable, "-c", HEADLESS_RUN, sim.url], capture_output=True, text=True,
                              timeout=120)
    assert done.returncode == 0, done.stdout[-1000:] + done.stderr[-2000:]
    assert "textual: []" in done.stdout
    assert "4 ok" in done.stdout  # the run really ran: the summary counts its requests

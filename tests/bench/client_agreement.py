"""Do the two HTTP clients measure the same server the same way? (prints figures; not a pytest test)

Runs ``wattload run URL --headless`` against one real server with ``--http-client lean`` and
``--http-client aiohttp`` in turn (alternating, ``--rounds`` pairs, so drift in the server hits both), and prints
the whole-run figures of each (requests, output tok/s, TTFT, ITL, TPOT and E2E percentiles) and the lean/aiohttp
ratio. A client that stamps late or loses chunks shows as a ratio away from 1 beyond the round-to-round spread.

    python tests/bench/client_agreement.py URL [--model M] [-c 8] [--seconds 30] [--rounds 2]
        [--input-tokens 128] [--max-tokens 256] [--api chat] [--warmup SECONDS]

Used on the device machine against ``transformers serve`` on a random-weight model (see the README's HTTP-stack
section); any OpenAI-compatible server on loopback works.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIGURES = (
    ("requests", ("requests",)),
    ("out tok/s", ("output_tokens_per_s",)),
    ("TTFT p50", ("ttft", "p50")),
    ("TTFT p99", ("ttft", "p99")),
    ("ITL p50", ("itl", "p50")),
    ("ITL p99", ("itl", "p99")),
    ("TPOT p50", ("tpot", "p50")),
    ("E2E p50", ("e2e", "p50")),
)


def one_run(args: argparse.Namespace, client: str, out: Path) -> dict[str, float]:
    cmd = [sys.executable, "-c", "from tui.cli import main; main()", "run", args.url, "--headless",
           "-c", str(args.concurrency), "-d", f"{args.seconds:g}s", "--http-client", client,
           "--input-tokens", str(args.input_tokens), "--max-tokens", str(args.max_tokens), "--api", args.api,
           "--gpu", "none", "--no-calibrate", "--json", str(out)]
    if args.model:
        cmd += ["--model", args.model]
    done = subprocess.run(cmd, cwd=REPO, check=False, stdout=subprocess.DEVNULL, timeout=args.seconds + 120)
    if not out.exists():
        raise SystemExit(f"wattload run --http-client {client} wrote no JSON (exit {done.returncode})")
    total = json.loads(out.read_text())["result"]["total"]
    figures: dict[str, float] = {}
    for name, path in FIGURES:
        value: object = total
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        figures[name] = float(value) if isinstance(value, (int, float)) else float("nan")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--model", default=None)
    parser.add_argument("-c", "--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--input-tokens", type=int, default=128)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--api", default="chat")
    parser.add_argument("--warmup", type=float, default=0.0,
                        help="seconds of one discarded run first (a fresh server compiles and warms its caches)")
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"lean": [], "aiohttp": []}
    print(f"{args.url}: concurrency {args.concurrency}, {args.seconds:g} s per run, {args.rounds} round(s); "
          "latencies in ms")
    print(f"{'round':>5} {'client':>8} " + " ".join(f"{name:>10}" for name, _ in FIGURES))
    with tempfile.TemporaryDirectory() as tmp:
        if args.warmup > 0:
            one_run(argparse.Namespace(**{**vars(args), "seconds": args.warmup}), "lean", Path(tmp) / "warmup.json")
        for r in range(args.rounds):
            for client in ("lean", "aiohttp"):
                figures = one_run(args, client, Path(tmp) / f"{client}-{r}.json")
                runs[client].append(figures)
                print(f"{r + 1:>5} {client:>8} " + " ".join(f"{figures[n]:>10,.1f}" for n, _ in FIGURES), flush=True)
    print(f"{'':>5} {'ratio':>8} " + " ".join(
        f"{statistics.mean(f[n] for f in runs['lean']) / statistics.mean(f[n] for f in runs['aiohttp']):>10.3f}"
        for n, _ in FIGURES) + "   (lean / aiohttp, means over rounds)")


if __name__ == "__main__":
    main()

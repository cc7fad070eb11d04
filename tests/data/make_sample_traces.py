"""Writes the sample traces shipped in profiles/traces/ (synthetic, written for this project; seeded, so rerunning
it reproduces the files byte for byte). Each has a few hundred rows in the real format's fields and units.

    python tests/data/make_sample_traces.py
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[2] / "profiles" / "traces"
BLOCK = 512


def mooncake(rng: random.Random) -> None:
    """300 requests at ~10 req/s; 4 shared system prompts of 1-2 blocks, then unique blocks (hash_ids)."""
    next_id = 100
    prefixes = [[0], [1, 2], [3], [4, 5]]
    t = 0.0
    with open(OUT / "mooncake-sample.jsonl", "w", encoding="utf-8") as f:
        for _ in range(300):
            t += rng.expovariate(10.0) * 1000
            prefix = rng.choice(prefixes)
            length = rng.randint(len(prefix) * BLOCK + 64, len(prefix) * BLOCK + 1500)
            blocks = -(-length // BLOCK)
            ids = list(prefix) + list(range(next_id, next_id + blocks - len(prefix)))
            next_id += blocks - len(prefix)
            row = {"timestamp": round(t), "input_length": length, "output_length": rng.randint(16, 200),
                   "hash_ids": ids}
            f.write(json.dumps(row) + "\n")


def azure(rng: random.Random) -> None:
    """300 requests at ~10 req/s from an absolute start, 7 fractional digits as in the 2023/2024 files."""
    start = dt.datetime(2024, 5, 10, 0, 0, 0)
    t = 0.0
    with open(OUT / "azure-sample.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["TIMESTAMP", "ContextTokens", "GeneratedTokens"])
        for _ in range(300):
            t += rng.expovariate(10.0)
            stamp = start + dt.timedelta(seconds=t)
            text = stamp.strftime("%Y-%m-%d %H:%M:%S.%f") + str(rng.randint(0, 9))
            w.writerow([text, max(8, int(rng.lognormvariate(6.3, 0.8))), max(1, int(rng.lognormvariate(4.5, 0.7)))])


def burstgpt(rng: random.Random) -> None:
    """300 rows at ~10 req/s over two models; 12 failed in the source (Response tokens 0)."""
    failed = set(rng.sample(range(300), 12))
    t = 0.0
    with open(OUT / "burstgpt-sample.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Timestamp", "Session ID", "Model", "Request tokens", "Response tokens", "Total tokens",
                    "Log Type"])
        for i in range(300):
            t += rng.expovariate(10.0)
            req = max(4, int(rng.lognormvariate(5.8, 0.9)))
            resp = 0 if i in failed else max(1, int(rng.lognormvariate(4.8, 0.6)))
            w.writerow([round(t, 3), rng.randint(1, 60), rng.choice(["ChatGPT", "GPT-4"]), req, resp, req + resp,
                        "Conversation log"])


def bailian(rng: random.Random) -> None:
    """~100 conversations of 1-4 turns; each turn's input_length holds the history (earlier prompt + answer)."""
    rows: list[dict[str, object]] = []
    chat_id = 0
    for _ in range(100):
        t = rng.uniform(0, 30)
        parent = -1
        history = 0
        for turn in range(1, rng.randint(1, 4) + 1):
            user = rng.randint(40, 400)
            output = rng.randint(16, 160)
            length = history + user
            blocks = -(-length // BLOCK)
            rows.append({"chat_id": chat_id, "parent_chat_id": parent, "timestamp": round(t, 3),
                         "input_length": length, "output_length": output, "type": "text", "turn": turn,
                         "hash_ids": list(range(chat_id * 16, chat_id * 16 + blocks))})
            parent, history = chat_id, length + output
            chat_id += 1
            t += rng.uniform(2, 10)
    rows.sort(key=lambda r: (r["timestamp"], r["chat_id"]))
    with open(OUT / "bailian-sample.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    mooncake(random.Random(1))
    azure(random.Random(2))
    burstgpt(random.Random(3))
    bailian(random.Random(4))

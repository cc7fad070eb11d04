"""Device benchmark: wattload's NVML sampler against nvidia-smi, and energy from the counter against integrated power.

READ-ONLY: it changes nothing on the GPU (no power limit, clocks, persistence or compute mode; no NVML set call).
It idles, runs a bf16 matmul loop in a child process, idles again, while wattload's TelemetrySampler reads NVML
at 10 Hz and ``nvidia-smi -lms 200`` logs in parallel. Then, per phase, it compares energy from the energy counter
with trapezoid-integrated ``nvmlDeviceGetPowerUsage`` (the 1 s average), integrated instant power, and
integrated nvidia-smi readings. It needs only pynvml (and torch for the load); pydantic is optional (when present
it also runs EnergyAccount over the samples). Figures are printed and written to --out.

    python tests/bench/nvml_vs_smi.py --out /tmp/out [--idle 4] [--load 20] [--tail 5]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from itertools import pairwise
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.gpu.nvml import clock_event_labels, open_nvml
from engine.gpu.sampler import TelemetrySampler
from engine.records import TelemetrySample

NS = 1_000_000_000
SMI_FIELDS = (
    "timestamp",
    "power.draw",
    "power.draw.average",
    "power.draw.instant",
    "clocks.sm",
    "clocks.mem",
    "power.limit",
    "enforced.power.limit",
    "clocks_event_reasons.active",
    "clocks_event_reasons.sw_power_cap",
    "temperature.gpu",
    "utilization.gpu",
    "total_energy_consumption",
)

LOAD = r"""
import sys, time, torch
seconds = float(sys.argv[1])
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
for _ in range(3):
    a @ b
torch.cuda.synchronize()
t0 = time.perf_counter_ns(); print("LOAD_START", t0, flush=True)
n = 0
while time.perf_counter_ns() - t0 < seconds * 1e9:
    for _ in range(20):
        c = a @ b
    torch.cuda.synchronize(); n += 20
t1 = time.perf_counter_ns()
print("LOAD_END", t1, flush=True)
print("TFLOPS", 2 * 8192**3 * n / ((t1 - t0) / 1e9) / 1e12, flush=True)
"""


def smi_fields(gpu: int) -> list[str]:
    """The nvidia-smi query fields this driver knows (one probe each)."""
    ok = []
    for field in SMI_FIELDS:
        r = subprocess.run(
            ["nvidia-smi", f"--id={gpu}", f"--query-gpu={field}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        if r.returncode == 0 and "not a valid field" not in r.stdout + r.stderr:
            ok.append(field)
    return ok


def number(text: str) -> float | None:
    try:
        return float(text.strip().split()[0])
    except (ValueError, IndexError):
        return None


def trapezoid(points: list[tuple[int, float]], a: int, b: int) -> float | None:
    """Joules from (t_ns, watts) points restricted to [a, b]."""
    pts = [(t, w) for t, w in points if a <= t <= b]
    if len(pts) < 2:
        return None
    return sum((w0 + w1) / 2 * (t1 - t0) / NS for (t0, w0), (t1, w1) in pairwise(pts))


def counter_energy(samples: list[TelemetrySample], a: int, b: int) -> tuple[float | None, float]:
    """(joules from the counter between the first and last sample in [a, b], seconds covered)."""
    pts = [s for s in samples if a <= s.t_ns <= b and s.energy_mj is not None]
    if len(pts) < 2:
        return None, 0.0
    return (pts[-1].energy_mj - pts[0].energy_mj) / 1000.0, (pts[-1].t_ns - pts[0].t_ns) / NS  # type: ignore[operator]


def phase_figures(samples: list[TelemetrySample], smi: list[dict], a: int, b: int) -> dict:
    pts = [s for s in samples if a <= s.t_ns <= b]
    if len(pts) < 2:
        return {}
    lo, hi = pts[0].t_ns, pts[-1].t_ns  # compare every method over exactly the same span
    energy, span = counter_energy(samples, lo, hi)
    avg = trapezoid([(s.t_ns, s.power_w) for s in pts if s.power_w is not None], lo, hi)
    inst = trapezoid([(s.t_ns, s.power_instant_w) for s in pts if s.power_instant_w is not None], lo, hi)
    out = {
        "seconds": round(span, 3),
        "counter_J": energy,
        "integrated_power_usage_J": avg,
        "integrated_instant_J": inst,
        "counter_W": energy / span if energy and span else None,
    }
    for key in ("power.draw", "power.draw.instant", "power.draw.average"):
        rows = [(r["t_ns"], r[key]) for r in smi if r.get(key) is not None]
        out[f"smi_{key}_J"] = trapezoid(rows, lo, hi)
    energies = [
        (r["t_ns"], r["total_energy_consumption"])
        for r in smi
        if r.get("total_energy_consumption") is not None and lo <= r["t_ns"] <= hi
    ]
    if len(energies) >= 2:  # nvidia-smi reports this counter in J
        out["smi_total_energy_consumption_J"] = energies[-1][1] - energies[0][1]
        out["smi_energy_span_s"] = (energies[-1][0] - energies[0][0]) / NS
    sm = [s.sm_clock_mhz for s in pts if s.sm_clock_mhz is not None]
    if sm:
        out["sm_clock_mhz"] = {"min": min(sm), "median": statistics.median(sm), "max": max(sm)}
    mem = [s.mem_clock_mhz for s in pts if s.mem_clock_mhz is not None]
    if mem:
        out["mem_clock_mhz"] = {"min": min(mem), "max": max(mem)}
    temps = [s.temperature_c for s in pts if s.temperature_c is not None]
    if temps:
        out["temperature_c"] = {"min": min(temps), "max": max(temps)}
    reasons: dict[str, int] = {}
    for s in pts:
        for label in clock_event_labels(s.throttle_reasons):
            reasons[label] = reasons.get(label, 0) + 1
    out["clock_events_share"] = {k: round(v / len(pts), 3) for k, v in sorted(reasons.items())}
    binding = [s.power_cap_binding for s in pts if s.power_cap_binding is not None]
    out["power_cap_binding_share"] = round(sum(binding) / len(binding), 3) if binding else None
    return out


def energy_account_figures(samples: list[TelemetrySample], names: dict[int, str], a: int, b: int) -> dict | None:
    try:
        from engine.gpu.energy import EnergyAccount
    except ImportError:  # pydantic absent on this machine
        return None
    acc = EnergyAccount(names=names, source="nvml")
    for s in samples:
        if s.t_ns <= b:
            acc.add(s)
    st = acc.stats(
        b,
        window_s=(b - a) / NS,
        window_output_tokens=0,
        window_total_tokens=0,
        total_output_tokens=0,
        total_total_tokens=0,
        steady=True,
    )
    return {
        "window_energy_J": st.window.energy_j,
        "window_mean_W": st.window.mean_watts,
        "total_energy_J": st.total.energy_j,
        "watts_now": st.watts,
        "energy_source": st.energy_source,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")))
    ap.add_argument("--gpu", type=int, default=0)
    ap.add_argument("--idle", type=float, default=4.0)
    ap.add_argument("--load", type=float, default=20.0)
    ap.add_argument("--tail", type=float, default=5.0)
    ap.add_argument("--hz", type=float, default=10.0)
    ap.add_argument("--smi-ms", type=int, default=200)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    backend, message = open_nvml(gpus=str(args.gpu))
    print(message, flush=True)
    if backend is None:
        return 1
    driver = backend.driver_info()
    limits = backend.power_limits(args.gpu)
    names = {g.index: g.name for g in backend.gpus()}
    print(
        f"driver {driver.driver_version}, CUDA {driver.cuda_driver_version}, NVML {driver.nvml_version}; "
        f"limits {limits}",
        flush=True,
    )

    # cost of one read (all fields of one GPU), before anything else runs
    reads = []
    for _ in range(50):
        t = time.perf_counter_ns()
        backend.read([args.gpu])
        reads.append((time.perf_counter_ns() - t) / 1e6)

    fields = smi_fields(args.gpu)
    print("nvidia-smi fields:", ",".join(fields), flush=True)
    smi_path = args.out / "smi.csv"
    wall0, perf0 = time.time(), time.perf_counter_ns()
    smi_proc = subprocess.Popen(
        [
            "nvidia-smi",
            f"--id={args.gpu}",
            f"--query-gpu={','.join(fields)}",
            "--format=csv,noheader,nounits",
            f"-lms={args.smi_ms}",
        ],
        stdout=smi_path.open("w"),
        stderr=subprocess.DEVNULL,
    )
    samples: list[TelemetrySample] = []
    sampler = TelemetrySampler(backend, [args.gpu], hz=args.hz, on_samples=samples.extend)
    t_begin = time.perf_counter_ns()
    sampler.start()
    time.sleep(args.idle)
    load = subprocess.run(
        [sys.executable, "-c", LOAD, str(args.load)], capture_output=True, text=True, timeout=args.load + 120
    )
    marks = {
        k: float(v)
        for k, v in (
            ln.split()[:2]
            for ln in load.stdout.splitlines()
            if ln.split()[:1] and ln.split()[0] in ("LOAD_START", "LOAD_END", "TFLOPS")
        )
    }
    time.sleep(args.tail)
    sampler.stop()
    t_end = time.perf_counter_ns()
    smi_proc.terminate()
    smi_proc.wait(timeout=10)
    backend.close()
    if "LOAD_START" not in marks:
        print("load failed:", load.stderr[-2000:], flush=True)
        return 1
    l0, l1 = int(marks["LOAD_START"]), int(marks["LOAD_END"])

    smi: list[dict] = []
    with smi_path.open() as fh:
        for row in csv.reader(fh):
            if len(row) != len(fields):
                continue
            rec = dict(zip(fields, (c.strip() for c in row), strict=True))
            try:
                wall = time.mktime(time.strptime(rec["timestamp"].split(".")[0], "%Y/%m/%d %H:%M:%S"))
                wall += float("0." + rec["timestamp"].split(".")[1])
            except (ValueError, IndexError, KeyError):
                continue
            parsed: dict = {"t_ns": perf0 + int((wall - wall0) * NS)}
            for key in fields[1:]:
                parsed[key] = (
                    number(rec[key])
                    if key not in ("clocks_event_reasons.active", "clocks_event_reasons.sw_power_cap")
                    else rec[key]
                )
            smi.append(parsed)

    with (args.out / "samples.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(TelemetrySample.__slots__)
        for s in samples:
            w.writerow([getattr(s, k) for k in TelemetrySample.__slots__])
    try:
        report = build_report(
            args, samples, smi, reads, marks, sampler, driver, limits, names, fields, (t_begin, l0, l1, t_end)
        )
    except Exception:
        traceback.print_exc()
        return 1
    (args.out / "nvml_vs_smi.json").write_text(json.dumps(report, indent=2, default=str))
    print(json.dumps(report, indent=2, default=str), flush=True)
    return 0


def build_report(
    args: argparse.Namespace,
    samples: list[TelemetrySample],
    smi: list[dict],
    reads: list[float],
    marks: dict,
    sampler: TelemetrySampler,
    driver: object,
    limits: object,
    names: dict[int, str],
    fields: list[str],
    stamps: tuple[int, int, int, int],
) -> dict:
    t_begin, l0, l1, t_end = stamps
    phases = {
        "idle_before": (t_begin, l0),
        "load": (l0, l1),
        "load_steady": (l0 + 3 * NS, l1),
        "load_first_3s": (l0, l0 + 3 * NS),
        "idle_after": (l1, t_end),
        "whole_run": (t_begin, t_end),
    }
    report = {
        "gpu": names.get(args.gpu),
        "driver": repr(driver),
        "limits_w": repr(limits),
        "read_ms": {"median": statistics.median(reads), "max": max(reads)},
        "sampler": {
            "hz": args.hz,
            "samples": len(samples),
            "skipped_ticks": sampler.skipped_ticks,
            "last_error": sampler.last_error,
        },
        "smi": {"fields": fields, "rows": len(smi), "interval_ms": args.smi_ms},
        "matmul_tflops": marks.get("TFLOPS"),
        "phases": {name: phase_figures(samples, smi, a, b) for name, (a, b) in phases.items()},
        "energy_account_whole_run": energy_account_figures(samples, names, t_begin, t_end),
        "unsupported_fields": sorted(
            {k for s in samples[:1] for k in TelemetrySample.__slots__ if getattr(s, k) is None}
        ),
    }
    return report


if __name__ == "__main__":
    sys.exit(main())

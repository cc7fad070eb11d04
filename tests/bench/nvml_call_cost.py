"""Device benchmark: what each read-only NVML query that wattload makes costs, and what one batched
``nvmlDeviceGetFieldValues`` call returns for the same figures. READ-ONLY: no set call of any kind.

    python tests/bench/nvml_call_cost.py [--gpu 0] [--n 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import pynvml as nv

from engine.gpu.nvml import _field_value, open_nvml

FIELDS = {
    "POWER_INSTANT": nv.NVML_FI_DEV_POWER_INSTANT,
    "POWER_AVERAGE": nv.NVML_FI_DEV_POWER_AVERAGE,
    "POWER_CURRENT_LIMIT": nv.NVML_FI_DEV_POWER_CURRENT_LIMIT,
    "POWER_REQUESTED_LIMIT": nv.NVML_FI_DEV_POWER_REQUESTED_LIMIT,
    "POWER_MIN_LIMIT": nv.NVML_FI_DEV_POWER_MIN_LIMIT,
    "POWER_MAX_LIMIT": nv.NVML_FI_DEV_POWER_MAX_LIMIT,
    "TOTAL_ENERGY_CONSUMPTION": nv.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION,
    "ENERGY": nv.NVML_FI_DEV_ENERGY,
}


def timed(fn: Callable[[], Any], n: int) -> dict:
    costs = []
    value: Any = None
    for _ in range(n):
        t = time.perf_counter_ns()
        try:
            value = fn()
        except nv.NVMLError as exc:
            value = f"NVMLError {exc}"
        costs.append((time.perf_counter_ns() - t) / 1e3)
    costs.sort()
    return {
        "median_us": round(statistics.median(costs), 1),
        "p99_us": round(costs[int(0.99 * (n - 1))], 1),
        "value": str(value)[:80],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", type=int, default=0)
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    backend, message = open_nvml(gpus=str(args.gpu))
    print(message)
    if backend is None:
        return 1
    h = nv.nvmlDeviceGetHandleByIndex(args.gpu)
    calls: dict[str, Callable[[], Any]] = {
        "GetPowerUsage": lambda: nv.nvmlDeviceGetPowerUsage(h),
        "GetTotalEnergyConsumption": lambda: nv.nvmlDeviceGetTotalEnergyConsumption(h),
        "GetFieldValues[POWER_INSTANT]": lambda: _field_value(
            nv.nvmlDeviceGetFieldValues(h, [nv.NVML_FI_DEV_POWER_INSTANT])[0]
        ),
        "GetClockInfo(SM)": lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM),
        "GetClockInfo(MEM)": lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM),
        "GetTemperature": lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU),
        "GetUtilizationRates": lambda: nv.nvmlDeviceGetUtilizationRates(h).gpu,
        "GetMemoryInfo": lambda: nv.nvmlDeviceGetMemoryInfo(h).used,
        "GetPowerManagementLimit": lambda: nv.nvmlDeviceGetPowerManagementLimit(h),
        "GetEnforcedPowerLimit": lambda: nv.nvmlDeviceGetEnforcedPowerLimit(h),
        "GetCurrentClocksEventReasons": lambda: nv.nvmlDeviceGetCurrentClocksEventReasons(h),
        "backend.read (one GPU, all fields)": lambda: backend.read([args.gpu]),
    }
    report = {name: timed(fn, args.n) for name, fn in calls.items()}
    ids = list(FIELDS.values())

    def batch() -> dict[str, float | None]:
        values = nv.nvmlDeviceGetFieldValues(h, ids)
        return {name: _field_value(v) for name, v in zip(FIELDS, values, strict=True)}

    report["GetFieldValues[8 fields batched]"] = timed(batch, args.n)
    report["batched_values"] = batch()
    backend.close()
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

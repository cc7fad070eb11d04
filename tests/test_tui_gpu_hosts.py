"""Remote GPUs on a few hosts get a watts figure per host; on many hosts, totals; local GPUs, nothing."""

from engine.snapshot import GpuReading, GpuStats
from tui.widgets.gpu_hosts import host_summary


def stats(names_watts):
    return GpuStats(available=True, gpus=tuple(GpuReading(index=i, name=n, watts=w)
                                               for i, (n, w) in enumerate(names_watts)))  # fmt: skip


def test_few_hosts_get_a_row_each_summed_over_their_gpus():
    gpu = stats([("H100 @node-2:0", 300.0), ("H100 @node-1:0", 610.0), ("H100 @node-1:1", 600.0)])
    assert host_summary(gpu) == "node-1 1,210 W · node-2 300 W"


def test_many_hosts_are_totals_and_local_gpus_nothing():
    many = stats([(f"H100 @node-{h}:{g}", 500.0) for h in range(6) for g in range(8)])
    assert host_summary(many) == "48 GPUs on 6 hosts"
    assert host_summary(stats([("NVIDIA H100", 500.0), ("NVIDIA H100", 500.0)])) == ""
    assert host_summary(stats([("H100 @node-1:0", 500.0)])) == ""

"""The parts of --ray that need no cluster: the dealt schedule, clock offsets and shifts, the actor's share of a
request count and its bounded outbox, the flags, and that importing wattload never imports Ray."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
import threading

import pytest

from engine.load.clock_sync import SHIFTED_FIELDS, Ping, estimate_offset, shift_progress, shift_record
from engine.load.ray_actor import Outbox, ShareBudget
from engine.load.schedule import PoissonArrivals
from engine.records import RequestRecord, StreamProgress
from tui.cli import main


def one_schedule(rate: float, seed: int, start: int, n: int) -> list[int]:
    arrivals = PoissonArrivals(rate, seed, start)
    return [arrivals.next_due_ns() for _ in range(n)]  # type: ignore[misc]


@pytest.mark.parametrize("workers", [2, 3, 5])
def test_dealt_slots_together_are_the_one_schedule(workers):
    slots = [PoissonArrivals(0.0, 11, 0, slot, workers) for slot in range(workers)]
    for a in slots:
        a.restart(40.0, 1_000)  # Go: every worker starts at the session's t0
    dealt = sorted(t for a in slots for t in (a.next_due_ns() for _ in range(60)))
    assert dealt[: 60 * workers] == one_schedule(40.0, 11, 1_000, 60 * workers)
    # a restart (a rate change) on every slot at one instant starts one new schedule, dealt the same way
    for a in slots:
        a.restart(80.0, 9_000_000_000)
    again = sorted(t for a in slots for t in (a.next_due_ns() for _ in range(30)))
    fresh = PoissonArrivals(40.0, 11, 0)
    fresh.restart(1.0, 0)  # the first start keeps the seed...
    fresh.restart(80.0, 9_000_000_000)  # ...the second is the next epoch, as in every slot
    assert again == [fresh.next_due_ns() for _ in range(30 * workers)]
    assert all(t > 9_000_000_000 for t in again)


def test_the_first_start_keeps_what_one_worker_always_sent():
    a = PoissonArrivals(0.0, 5, 0)
    a.restart(25.0, 1_000)
    assert [a.next_due_ns() for _ in range(10)] == one_schedule(25.0, 5, 1_000, 10)


def test_clock_offset_comes_from_the_best_round_trip_within_half_of_it():
    # the worker's clock is 5 ms ahead; round trips of 3, 1 and 2 ms
    true = 5_000_000
    pings = [Ping(0, 1_500_000 + true + 400_000, 3_000_000), Ping(10_000_000, 10_500_000 + true + 100_000, 11_000_000),
             Ping(20_000_000, 21_000_000 + true, 22_000_000)]
    est = estimate_offset(pings)
    assert est.best_rtt_ns == 1_000_000 and est.uncertainty_ns == 500_000 and not est.same_clock
    assert abs(est.offset_ns - true) <= est.uncertainty_ns and est.offset_ns == true + 100_000
    same = estimate_offset(pings, same_clock=True)
    assert same.offset_ns == 0 and same.uncertainty_ns == 0 and same.measured_offset_ns == est.offset_ns
    with pytest.raises(ValueError):
        estimate_offset([])


def record(**kw) -> RequestRecord:
    base = {"worker": 1, "request_id": 3, "t_scheduled_ns": 100, "t_start_ns": 110, "t_headers_ns": 150,
            "t_first_token_ns": 200, "t_end_ns": 900, "input_tokens": 8, "output_tokens": 3,
            "output_estimated": False, "chunks": 3, "token_times_ns": (200, 500, 900)}
    return RequestRecord(**{**base, **kw})


def test_shifting_moves_every_stamp_and_no_duration():
    r = record()
    moved = shift_record(r, -50)
    assert (moved.t_scheduled_ns, moved.t_start_ns, moved.t_headers_ns, moved.t_first_token_ns, moved.t_end_ns) == (
        50, 60, 100, 150, 850)
    assert moved.token_times_ns == (150, 450, 850)
    assert (moved.ttft_ns, moved.e2e_ns, moved.tpot_ns) == (r.ttft_ns, r.e2e_ns, r.tpot_ns)
    assert shift_record(record(t_headers_ns=None, t_first_token_ns=None), 7).t_first_token_ns is None
    p = StreamProgress(1, 1_000, 4, 2, 0.5, first_tokens=((3, 200, 100),), waiting=1, waiting_since_ns=90)
    q = shift_progress(p, 10)
    assert (q.t_ns, q.first_tokens, q.waiting_since_ns, q.chunks) == (1_010, ((3, 210, 110),), 100, 4)
    assert shift_record(r, 0) is r and shift_progress(p, 0) is p


@pytest.mark.parametrize("cls", [RequestRecord, StreamProgress])
def test_every_stamp_field_is_shifted(cls):
    """A stamp added to a record or a progress tick (``*_ns``) must be moved by the clock offset too."""
    stamps = {f.name for f in dataclasses.fields(cls) if f.name.endswith("_ns")}
    assert stamps <= SHIFTED_FIELDS[cls], f"add {sorted(stamps - SHIFTED_FIELDS[cls])} to engine/load/clock_sync.py"


def test_a_share_of_the_request_count_behaves_like_the_shared_counter():
    budget = ShareBudget(max_requests=10, allowance=3)
    started = 0
    while True:  # what the worker loop does with the shared multiprocessing.Value
        with budget.get_lock():
            if budget.value >= 10:
                break
            budget.value += 1
            started += 1
    assert started == 3 and budget.exhausted
    assert not budget.grant(2)  # the loop has stopped asking: the grant goes to another worker
    fresh = ShareBudget(max_requests=10, allowance=1)
    assert fresh.grant(2) and fresh.value == 10 - 3


def test_the_outbox_is_bounded_and_takes_in_order():
    box = Outbox(maxsize=4)
    for i in range(4):
        box.send(i)
    blocked = threading.Thread(target=box.send, args=(4,), daemon=True)
    blocked.start()
    blocked.join(0.2)
    assert blocked.is_alive()  # full: the sender waits (back-pressure), memory does not grow
    assert box.take(1.0, most=3) == [0, 1, 2]
    blocked.join(2.0)
    assert box.take(1.0) == [3, 4] and box.take(0.01) == []


def test_worker_loss_policy_needs_ray(capsys):
    assert main(["run", "--sim", "--headless", "-n", "1", "--on-worker-loss", "stop"]) == 2
    assert "give --ray too" in capsys.readouterr().err


def test_importing_wattload_never_imports_ray():
    code = textwrap.dedent("""
        import importlib, pkgutil, sys
        import engine, tui.cli
        skip = {"engine.load.ray_pool", "engine.load.ray_actor"}
        for m in pkgutil.walk_packages(engine.__path__, "engine."):
            if m.name not in skip and not m.name.endswith("__main__"):
                importlib.import_module(m.name)
        tui.cli.build_parser().parse_args(["run", "--sim", "--ray", "local"])
        assert "ray" not in sys.modules, "ray was imported"
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]


def test_worker_health_keeps_the_worst_lags_and_the_record_rate():
    from engine.load.clock_sync import ClockOffset
    from engine.load.worker_health import HealthTracker

    t = HealthTracker(1, host="load-2", node="ab" * 20, state="running",
                      clock=ClockOffset(2_500_000, 400_000, 800_000, False, 2_500_000))
    t.on_batch(5, StreamProgress(1, 1_000_000_000, 9, 3, 4.0), received_ns=1_010_000_000)
    t.on_batch(15, StreamProgress(1, 3_008_000_000, 9, 2, 1.0), received_ns=3_010_000_000)
    h = t.snapshot()
    assert (h.records, h.records_per_s, h.in_flight, h.loop_lag_ms, h.send_lag_ms) == (20, 10.0, 2, 4.0, 10.0)
    assert h.node == "ab" * 6 and h.clock_offset_ms == 2.5 and h.clock_uncertainty_ms == 0.4
    assert h.line() == ("w1 load-2 running: clock +2.500 ± 0.400 ms, loop lag 4 ms, send lag 10 ms, 10.0 rec/s")

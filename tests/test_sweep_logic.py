"""The ceiling finder's rules on recorded figures: step plans, verdicts, capacity, knee, goodput, steadiness."""

import pytest
from pydantic import ValidationError

from engine.snapshot import Percentiles, RunState, Snapshot, WindowStats
from engine.sweep.rules import CeilingFinder, StepResult, SweepSettings, Verdict, step_from_snapshot
from engine.sweep.runner import StepJudge


def step(i, c, tps, *, err=0.0, ttft=50.0, tpot=20.0, requests=100):
    return StepResult(
        index=i,
        concurrency=c,
        held_s=10,
        steady=True,
        requests=requests,
        errors=round(requests * err / (1 - err)) if err < 1 else requests,
        error_rate=err,
        requests_per_s=tps / 100,
        output_tokens_per_s=tps,
        input_tokens_per_s=tps,
        ttft_p99_ms=ttft,
        tpot_p99_ms=tpot,
    )


def run(settings, figures):
    """Feed (throughput, kwargs) per planned step until the finder stops; return the finder."""
    finder = CeilingFinder(settings)
    for i, (tps, kw) in enumerate(figures):
        c = finder.next_concurrency()
        assert c is not None, "the finder asked for no more steps"
        finder.record(step(i, c, tps, **kw))
        if finder.done:
            break
    return finder


def test_geometric_and_linear_plans_end_exactly_at_max():
    assert list(SweepSettings(start=1, max=512).steps()) == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    assert list(SweepSettings(start=3, max=20, factor=1.5).steps()) == [3, 4, 6, 9, 14, 20]
    assert list(SweepSettings(start=2, max=9, linear_step=3).steps()) == [2, 5, 8, 9]
    assert SweepSettings(start=1, max=1).step_count() == 1
    with pytest.raises(ValidationError, match=r"--start \(8\) is above --max \(4\)"):
        SweepSettings(start=8, max=4)


def test_plateau_stops_and_capacity_is_the_first_step_at_the_ceiling():
    f = run(SweepSettings(), [(100, {}), (200, {}), (390, {}), (700, {}), (720, {})])
    o = f.outcome()
    assert [s.verdict for s in o.steps][-1] is Verdict.PLATEAU
    assert o.capacity == 8 and o.capacity_step.output_tokens_per_s == 700
    assert o.knee == 8  # 4 -> 8 still grew 79% for 100% more load
    assert "saturated" in o.stop_reason
    assert o.goodput_tokens_per_s is None  # no SLO given


def test_a_drop_beyond_the_threshold_stops():
    f = run(SweepSettings(threshold=0.05), [(100, {}), (200, {}), (150, {})])
    o = f.outcome()
    assert o.steps[-1].verdict is Verdict.DROPPED
    assert "fell 25% below the best" in o.stop_reason
    assert o.capacity == 2


def test_error_rate_over_ten_percent_stops_and_is_not_capacity():
    f = run(SweepSettings(), [(100, {}), (200, {}), (400, {"err": 0.2})])
    o = f.outcome()
    assert o.steps[-1].verdict is Verdict.ERRORS
    assert "error rate 20% > 10%" in o.stop_reason
    assert o.capacity == 2  # the step with errors never counts, however fast it was


def test_slo_stops_and_goodput_is_the_best_step_within_it():
    settings = SweepSettings(slo_ttft_p99_ms=1000, slo_tpot_p99_ms=60)
    f = run(settings, [(100, {}), (200, {"tpot": 59}), (380, {"ttft": 1500})])
    o = f.outcome()
    assert o.steps[-1].verdict is Verdict.SLO
    assert "TTFT p99 1.50 s > SLO 1.00 s" in o.stop_reason
    assert o.goodput_tokens_per_s == 200 and o.goodput_concurrency == 2
    assert o.capacity == 4  # throughput ceiling seen so far; the SLO bounds goodput, not throughput


def test_reaching_max_stops_with_that_reason():
    f = run(SweepSettings(start=1, max=4), [(100, {}), (200, {}), (400, {})])
    assert f.done and f.stop_reason == "reached --max 4"
    assert f.outcome().capacity == 4


def test_knee_ignores_an_inefficient_first_step():
    f = run(SweepSettings(), [(100, {}), (140, {}), (280, {}), (540, {}), (700, {}), (710, {})])
    assert f.outcome().knee == 8


# -- holding a step: StepJudge on recorded snapshots ----------------------------------------------------------


def snap(t, tps, *, conc=4, steady=True, requests=20):
    return Snapshot(
        t_s=t,
        window_s=2.0,
        state=RunState.RUNNING,
        target_concurrency=conc,
        steady=steady,
        total=WindowStats(output_tokens=round(tps * t)),  # streamed at this rate since the start
        window=WindowStats(
            span_s=2.0,
            requests=requests,
            output_tokens_per_s=tps,
            ttft=Percentiles(count=requests, p99=80.0, p50=40.0),
        ),
    )


def feed(judge, snaps):
    for s in snaps:
        result = judge.feed(s)
        if result is not None:
            return s.t_s, result
    return None, None


def test_a_step_holds_until_its_window_only_covers_it_and_is_steady():
    settings = SweepSettings(window_s=2.0, step_time_s=20.0, steady_tolerance=0.05)
    judge = StepJudge(0, 4, settings, t_start_s=10.0)
    snaps = [snap(10.0 + k * 0.25, 1000.0, steady=10.0 + k * 0.25 >= 12.0) for k in range(40)]
    snaps.insert(0, snap(9.9, 10.0, conc=2))  # before the change reached the controller: ignored
    t, result = feed(judge, snaps)
    assert t == pytest.approx(13.0)  # window (2 s) after the change, plus half a window of steady figures
    assert result.steady and result.concurrency == 4 and result.output_tokens_per_s == 1000.0
    assert result.ttft_p99_ms == 80.0 and result.held_s == pytest.approx(3.0)


def test_an_unsteady_step_ends_at_step_time():
    settings = SweepSettings(window_s=2.0, step_time_s=6.0, steady_tolerance=0.05)
    judge = StepJudge(0, 4, settings, t_start_s=0.0)
    t, result = feed(judge, [snap(k * 0.25, 1000.0 if k % 2 else 1300.0) for k in range(40)])
    assert t == pytest.approx(6.0)
    assert not result.steady


def test_a_window_full_of_errors_ends_the_step_early():
    settings = SweepSettings(window_s=2.0, step_time_s=20.0)
    judge = StepJudge(0, 4, settings, t_start_s=0.0)
    failing = [
        snap(k * 0.25, 300.0 + 100 * (k % 3)).model_copy(
            update={"window": WindowStats(requests=10, errors=30, error_rate=0.75, output_tokens_per_s=300.0 + k)}
        )
        for k in range(40)
    ]
    t, result = feed(judge, failing)
    assert t == pytest.approx(2.0)  # as soon as the window holds only this step
    assert result.error_rate == 0.75


def test_step_from_snapshot_takes_the_window_and_the_energy():
    s = snap(5.0, 800.0).model_copy(update={"total": WindowStats(requests=999)})
    r = step_from_snapshot(2, 8, 4.0, True, s)
    assert (r.index, r.concurrency, r.requests, r.output_tokens_per_s) == (2, 8, 20, 800.0)
    assert r.watts is None and r.joules_per_output_token is None  # no GPU: n/a, never zero


def test_a_step_past_the_admission_limit_is_judged_by_its_waiting_requests_not_its_survivors():
    """The simulator's chat case: at 512 with 256 queued, the survivors' TTFT p99 (454 ms) and tok/s looked
    better than at 256. The waiting requests are censored observations: the step queues, TTFT p99 is "≥" the
    oldest wait, and capacity stays at the admission limit."""
    finder = CeilingFinder(SweepSettings(start=128, max=1024, slo_ttft_p99_ms=5000))
    finder.record(step(0, 128, 3000, ttft=900))
    finder.record(step(1, 256, 3900, ttft=1665))
    queued = step(2, 512, 4600, ttft=454).model_copy(
        update={"waiting_first_token": 256, "oldest_wait_ms": 9000.0, "ttft_p99_ms": 9000.0, "ttft_p99_censored": True}
    )
    judged = finder.record(queued)
    assert judged.verdict is Verdict.QUEUED and finder.done
    assert "256 of 512 requests still waiting" in judged.reason and "TTFT p99 ≥ 9.00 s" in judged.reason
    assert judged.slo_failures(finder.settings) == ["TTFT p99 ≥ 9.00 s > SLO 5.00 s"]
    o = finder.outcome()
    assert o.capacity == 256 and "reached --max" not in o.stop_reason


def test_censored_ttft_p99_is_a_bound_only_when_the_waiting_reach_the_top_percentile():
    from engine.sweep.rules import censored_ttft_p99

    assert censored_ttft_p99(454.0, 1000, 256, 9000.0) == (9000.0, True)
    assert censored_ttft_p99(454.0, 1000, 5, 9000.0) == (454.0, False)  # 0.5%: inside the p99's slack
    assert censored_ttft_p99(None, 0, 4, 1200.0) == (1200.0, True)  # nothing observed yet: the wait is the bound
    assert censored_ttft_p99(80.0, 50, 0, None) == (80.0, False)


def test_a_step_that_completed_nothing_is_extended_and_never_the_best():
    """A 512-token answer at 30 tok/s takes ~17 s: a 10 s window at concurrency 1 completed nothing, and the
    next step was stopped for 'falling below' it."""
    settings = SweepSettings(step_time_s=20, window_s=10)
    judge = StepJudge(0, 1, settings, t_start_s=0.0)
    empty = WindowStats(output_tokens_per_s=31.0)
    snaps = [Snapshot(t_s=t, target_concurrency=1, window_s=10, steady=True, window=empty) for t in range(11, 40)]
    assert all(judge.feed(s) is None for s in snaps)  # past --step-time, still holding: nothing to judge yet
    finder = CeilingFinder(settings)
    finder.record(step(0, 1, 31.0, requests=0))
    judged = finder.record(step(1, 2, 25.0))
    assert judged.verdict is Verdict.IMPROVED  # compared with nothing, not with an empty step


def test_a_step_holds_three_request_durations():
    settings = SweepSettings(step_time_s=20, window_s=10)
    judge = StepJudge(0, 4, settings, t_start_s=0.0)
    w = WindowStats(requests=5, output_tokens_per_s=120.0, e2e=Percentiles(count=5, p50=16_000.0))
    results = [judge.feed(Snapshot(t_s=t / 4, target_concurrency=4, window_s=10, steady=True, window=w))
               for t in range(40, 4 * 60)]
    done = next((i, r) for i, r in enumerate(results) if r is not None)
    assert done[1].held_s == pytest.approx(48.0, abs=0.3)  # 3 x 16 s, not the 20 s step time
    assert done[1].hold_note == "held 48 s: 3 request durations (E2E p50 16.0 s)"


def test_a_step_is_judged_by_the_tokens_it_streamed_over_its_hold():
    """The real-server case of issue 10: 512-token answers at ~30 tok/s per stream, a 10 s window. Whatever a
    window happens to hold (a burst of usage corrections, or none), the step streamed 2 x 30 tok/s over its hold,
    and that is what the next step is compared with."""
    settings = SweepSettings(step_time_s=20, window_s=10)
    judge = StepJudge(1, 2, settings, t_start_s=100.0)
    e2e = Percentiles(count=2, p50=17_000.0)
    result = None
    for k in range(400):
        t = 100.0 + k / 4
        window = WindowStats(requests=2, output_tokens_per_s=25.0 + (k % 2), e2e=e2e)  # steady-looking, but low
        s = Snapshot(t_s=t, window_s=10, steady=True, target_concurrency=2, window=window,
                     total=WindowStats(output_tokens=round(3000 + 60.0 * (t - 100.0))))
        result = judge.feed(s)
        if result is not None:
            break
    assert result is not None and result.held_s >= 51.0  # 3 request durations
    assert result.output_tokens_per_s == pytest.approx(60.0, rel=0.01)
    assert result.window_output_tokens_per_s in (25.0, 26.0)
    assert result.output_tokens == pytest.approx(60.0 * (result.held_s - 10), rel=0.01)  # after the first window
    finder = CeilingFinder(settings)
    finder.record(step(0, 1, 31.0))
    assert finder.record(result).verdict is Verdict.IMPROVED  # not "fell below the best (31 tok/s)"

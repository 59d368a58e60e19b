"""The poll schedule on a fake clock: plain numbers for time, no threads, no sleeping.

A simulated job's percentage rises linearly; the plan says when to poll, the test jumps
the clock there and hands back what the job would report. What the tracker does with a
real thread is covered by the smoke tests in test_tracker.py.
"""

from __future__ import annotations

import math

import pytest

from runway_widget.models import Task
from runway_widget.tracking.schedule import Line, PollPlan, ProgressFit, Timing

T = Timing()


def running(pct: int | None, status: str = "processing") -> Task:
    return Task("t", status, pct)


class LinearJob:
    """A job that reports ``staged`` until ``start``, then rises linearly to ``finish``."""

    def __init__(self, start: float, finish: float) -> None:
        self.start, self.finish = start, finish

    def at(self, t: float) -> Task:
        if t >= self.finish:
            return Task("t", "finished", 100, video_url="https://cdn.example/t.mp4")
        if t < self.start:
            return Task("t", "staged", 0)
        return running(int(100 * (t - self.start) / (self.finish - self.start)))


def follow(job: LinearJob, timing: Timing = T, horizon: float = 600.0) -> tuple[int, float]:
    """Poll ``job`` exactly when the plan says; returns (polls, seconds late at the finish)."""
    plan = PollPlan(timing, now=0.0)
    polls = 0
    while plan.due < horizon:
        now = plan.due
        task = job.at(now)
        polls += 1
        plan.polled(now, task, on_time=True)
        if task.is_done:
            return polls, now - job.finish
    raise AssertionError("the plan never saw the finish")


# -- the first polls ---------------------------------------------------------------------------


def test_the_first_poll_comes_after_first_delay_and_quiet_gaps_grow():
    plan = PollPlan(T, now=100.0)
    assert (plan.due, plan.kind) == (101.0, "first")
    gaps = []
    now = plan.due
    for _ in range(12):
        plan.polled(now, running(None, "staged"), on_time=True)
        gaps.append(plan.due - now)
        now = plan.due
    assert gaps[:3] == pytest.approx([1.0, 1.5, 2.25])
    assert gaps == sorted(gaps)
    assert max(gaps) == T.max_interval  # never beyond the ceiling
    assert plan.kind == "sample"


def test_scaled_timing_keeps_the_shape():
    fast = Timing.scaled(0.05, 3.0)
    assert (fast.first_delay, fast.quiet_gap, fast.second_gap) == pytest.approx((0.1, 0.1, 0.2))
    assert (fast.max_interval, fast.growth, fast.middle) == (3.0, T.growth, T.middle)


# -- predicting the finish ---------------------------------------------------------------------


@pytest.mark.parametrize(("start", "finish"), [(2, 22), (3, 45), (1, 61), (10, 130)])
def test_a_linear_job_is_seen_finished_soon_with_few_polls(start, finish):
    polls, late = follow(LinearJob(start, finish))
    fixed_interval_polls = math.ceil(finish / 3.0)  # what a 3 s loop would cost
    assert late <= 1.5, f"finish seen {late:.2f}s late"
    assert polls <= max(8, 0.6 * fixed_interval_polls), polls


def test_a_job_that_runs_late_is_retried_at_widening_gaps():
    plan = PollPlan(T, now=0.0)
    for t, pct in ((1.0, 10), (3.0, 30), (5.0, 50), (7.0, 70), (9.0, 90)):
        plan.polled(t, running(pct), on_time=True)
    predicted = plan.fit.line().time_of(100.0)
    assert predicted == pytest.approx(10.0, abs=0.2)
    now, gaps = plan.due, []
    for _ in range(4):  # the job stalls at 99%
        assert plan.kind == "finish"
        plan.polled(now, running(99), on_time=True)
        gaps.append(plan.due - now)
        now = plan.due
    assert gaps == sorted(gaps) and gaps[-1] > gaps[0]
    assert all(g <= T.max_interval for g in gaps)


def test_a_ride_along_poll_is_not_a_miss():
    plan = PollPlan(T, now=0.0)
    for t, pct in ((1.0, 10), (3.0, 30), (5.0, 50), (7.0, 70), (9.0, 90)):
        plan.polled(t, running(pct), on_time=True)
    before = plan.misses
    plan.polled(10.0, running(99), on_time=False)
    assert plan.misses == before
    plan.polled(10.2, running(99), on_time=True)
    assert plan.misses == before + 1


def test_pull_window_is_small_for_a_finish_and_wide_otherwise():
    plan = PollPlan(T, now=0.0)
    assert plan.pull_window() == max(T.sample_pull, 0.5 * T.first_delay)
    for t, pct in ((1.0, 10), (3.0, 30), (5.0, 50), (7.0, 70), (9.0, 90)):
        plan.polled(t, running(pct), on_time=True)
    assert plan.kind == "finish" and plan.pull_window() == T.finish_pull


def test_a_stale_reply_is_not_a_sample_of_the_rate():
    plan = PollPlan(T, now=0.0)
    plan.polled(1.0, running(10), on_time=True)
    plan.polled(3.0, running(5), on_time=True, stale=True)
    assert plan.fit.samples == 1


def test_a_pushed_update_makes_polls_a_rare_safety_net():
    plan = PollPlan(T, now=0.0)
    plan.pushed_update(2.0, running(20))
    assert (plan.kind, plan.due) == ("watch", 2.0 + T.max_interval)
    plan.polled(plan.due, running(40), on_time=True)
    assert plan.kind in ("watch", "sample") and plan.due - plan.last_poll == T.max_interval


def test_a_finished_task_plans_nothing_more():
    plan = PollPlan(T, now=0.0)
    due = plan.due
    plan.polled(1.0, Task("t", "finished", 100), on_time=True)
    assert plan.due == due


# -- the fitted line and the percentage shown between polls --------------------------------------


def test_the_fit_needs_a_clear_rise_and_ignores_what_is_not_a_sample():
    fit = ProgressFit()
    fit.add(0.0, running(None))
    fit.add(0.1, running(0))
    fit.add(0.2, Task("t", "finished", 100))
    assert fit.samples == 0 and fit.line() is None
    fit.add(1.0, running(10))
    fit.add(1.2, running(11))  # too close in time and too small a rise
    assert fit.line() is None
    fit.add(3.0, running(30))
    line = fit.line()
    assert isinstance(line, Line)
    assert line.slope == pytest.approx(10.0, rel=0.05)
    assert fit.value_at(5.0) == pytest.approx(50.0, abs=1.5)


def test_the_estimate_moves_between_polls_on_a_fake_clock():
    plan = PollPlan(T, now=0.0)
    plan.polled(1.0, running(10), on_time=True)
    assert plan.estimate(1.5) is None  # one sample: the rate is unknown
    plan.polled(3.0, running(30), on_time=True)
    shown = [plan.estimate(t) for t in (3.0, 3.5, 4.0, 4.5)]
    assert shown == sorted(shown) and shown[-1] > shown[0]
    assert shown[1] == pytest.approx(35.0, abs=1.0)


def test_uncertainty_shrinks_as_samples_agree():
    fit = ProgressFit()
    doubts = []
    for i in range(1, 8):
        fit.add(float(i), running(10 * i))
        line = fit.line()
        if line is not None:
            doubts.append(line.sigma_time_of(100.0))
    assert doubts == sorted(doubts, reverse=True)

"""The limit the gateway assumes of the upstream: slow start, AIMD, pauses (pure arithmetic)."""

from __future__ import annotations

import pytest

from runway_widget.gateway.upstream_limit import (
    DECREASE,
    MAX_PAUSE,
    PROBE_JOBS,
    START,
    UpstreamLimit,
)


def test_slow_start_adds_a_slot_per_acceptance_but_never_above_what_runs_and_one():
    limit = UpstreamLimit()
    assert limit.slots(None) == START
    limit = limit.accepted(running=2, stated=None)
    assert limit.slots(None) == 3  # one more than runs: the limit is met by one submission
    limit = limit.accepted(running=3, stated=None)
    assert limit.slots(None) == 4
    # a quiet hour of one job at a time does not build a window for the next rush
    for _ in range(100):
        limit = limit.accepted(running=1, stated=None)
    assert limit.slots(None) == 4


def test_a_busy_answer_lowers_the_window_once_per_round_and_to_what_ran():
    limit = UpstreamLimit(window=10.0)
    after = limit.busy(sent_at=5.0, now=6.0, retry_after=None, stated=None, running=4)
    assert after.slots(None) == 4  # the upstream ran no more than the gateway's 4
    assert after.threshold == 4.0 and after.decreased_at == 6.0
    # an answer to a submission sent before that decrease does not lower it again
    again = after.busy(sent_at=5.5, now=6.1, retry_after=None, stated=None, running=3)
    assert again.window == 4.0 and again.busy_total == 2
    # a later round does: multiplicatively, when fewer ran than the window
    later = again.busy(sent_at=7.0, now=8.0, retry_after=None, stated=None, running=9)
    assert later.window == pytest.approx(4.0 * DECREASE)


def _a_slot_more(limit: UpstreamLimit) -> tuple[UpstreamLimit, int]:
    """The window once it tries one job more, and how many jobs had to end first."""
    slots = limit.slots(None)
    for ended in range(1, 10**6):
        limit = limit.ended(1, stated=None)
        if limit.slots(None) > slots:
            return limit, ended
    raise AssertionError("the window never grew")


def test_after_the_first_busy_a_slot_more_is_tried_less_often_each_time_it_fails():
    limit = UpstreamLimit(window=4.0, threshold=4.0)
    assert limit.accepted(running=4, stated=None).window == 4.0  # acceptances no longer grow
    waits = []
    for now in range(1, 5):  # each try of a fifth job meets the same limit of 4
        limit, waited = _a_slot_more(limit)
        waits.append(waited)
        limit = limit.busy(sent_at=now, now=now, retry_after=0, stated=None, running=4)
        assert limit.slots(None) == 4
    assert waits == [PROBE_JOBS, 2 * PROBE_JOBS, 4 * PROBE_JOBS, 8 * PROBE_JOBS]
    lower = limit.busy(sent_at=9, now=9, retry_after=0, stated=None, running=2)
    assert _a_slot_more(lower)[1] == PROBE_JOBS  # the limit moved: the tries start afresh


def test_busy_pauses_everyone_for_retry_after_or_doubling_pauses():
    limit = UpstreamLimit()
    told = limit.busy(sent_at=0.0, now=100.0, retry_after=7.0, stated=None, running=2)
    assert told.paused_until == 107.0
    unsaid = UpstreamLimit()
    pauses = []
    for now in (0.0, 10.0, 20.0, 30.0):
        unsaid = unsaid.busy(sent_at=now, now=now, retry_after=None, stated=None, running=1)
        pauses.append(unsaid.paused_until - now)
    assert pauses == [1.0, 2.0, 4.0, 8.0]
    assert unsaid.accepted(running=1, stated=None).busy_streak == 0  # and from 1 s again
    huge = limit.busy(sent_at=0.0, now=0.0, retry_after=10**6, stated=None, running=2)
    assert huge.paused_until == MAX_PAUSE


def test_an_unreachable_upstream_pauses_without_lowering_the_window():
    limit = UpstreamLimit(window=6.0, threshold=6.0)
    after = limit.unreachable(now=50.0, retry_after=None)
    assert (after.window, after.paused_until) == (6.0, 51.0)


def test_a_stated_limit_rules_until_the_upstream_says_otherwise():
    limit = UpstreamLimit()  # nothing learned: the statement is taken as it is
    assert limit.slots(stated=8) == 8
    busy = limit.busy(sent_at=1.0, now=1.0, retry_after=None, stated=8, running=5)
    assert busy.slots(stated=8) == 5  # it was wrong: learned downwards
    for _ in range(int(10 * PROBE_JOBS)):
        busy = busy.ended(1, stated=8)
    assert busy.slots(stated=8) == 8  # and never above the statement

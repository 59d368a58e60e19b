"""What to do after a failure is a structured hint, worded by each front end.

Python code and the terminal read ``str(error)``: what happened, then the advice with the
command that helps. The panel words the same hint for its readers, and a dashboard (whose
visitors have no command line) without any command.
"""

from __future__ import annotations

import pytest

from runway_widget.errors import (
    Hint,
    ServerError,
    SubmissionUnknownError,
    TaskNotFoundError,
    TaskTimeoutError,
    advice,
)
from runway_widget.widget.banner import details_for, message_for

UNANSWERED = "no answer to the submission to http://127.0.0.1:9/runway-imagine (timed out)"


def test_str_is_what_happened_then_the_advice_for_the_terminal():
    exc = SubmissionUnknownError(UNANSWERED, hint=Hint.CHECK_HISTORY)
    assert exc.detail == UNANSWERED and exc.hint is Hint.CHECK_HISTORY
    assert str(exc) == exc.message == (
        f"{UNANSWERED}; the task may or may not exist: check `runway-widget history` "
        "before resubmitting"
    )


@pytest.mark.parametrize(
    ("exc", "detail", "hint", "says"),
    [
        (TaskNotFoundError("t-404", status_code=404), "task t-404 is unknown to the server",
         Hint.CHECK_TASK_ID, "(`runway-widget history` lists both)"),
        (TaskTimeoutError(None, "t-slow", 5.0),
         "task t-slow still running after 5s (no status seen yet)",
         Hint.WAIT_AGAIN, "wait again, or `runway-widget fetch t-slow` later"),
    ],
)
def test_the_task_errors_carry_their_hint_apart(exc, detail, hint, says):
    assert exc.detail == detail and exc.hint is hint
    assert str(exc) == f"{detail}; {advice(hint, getattr(exc, 'task_id', None))}"
    assert says in str(exc)


def test_an_error_without_a_hint_is_its_message_alone():
    exc = ServerError("the server failed on /fetch (HTTP 500): boom", status_code=500)
    assert exc.hint is None and str(exc) == exc.detail == exc.message


@pytest.mark.parametrize(
    "exc",
    [
        SubmissionUnknownError(UNANSWERED, hint=Hint.CHECK_HISTORY),
        ServerError("the server failed on /runway-imagine (HTTP 500): boom",
                    hint=Hint.CHECK_HISTORY, status_code=500),
    ],
)
def test_the_panel_words_the_hint_once_and_a_dashboard_without_commands(exc):
    panel = details_for(exc, message_for(exc))
    assert panel[0] == exc.detail
    assert panel[1].startswith("The job may or may not exist (and may be charged).")
    assert " ".join(panel).count("runway-widget history") == 1
    dashboard = details_for(exc, message_for(exc), dashboard=True)
    assert dashboard[0] == exc.detail
    assert "Ask the organiser to check the job history" in dashboard[1]
    assert "runway-widget" not in " ".join(dashboard)


"""An objective's counts agree with its time to complete: completed in the stage + censored =
entered, and a completion after leaving the stage is counted apart (it is censored at the exit)."""

from __future__ import annotations

from datetime import datetime, timedelta

from closeloop.analysis.journey import Entrant, objective_times

T = datetime(2024, 6, 1)
DAY = timedelta(days=1)


def entrant(name: str, entered: int, done: int | None, exited: int | None) -> Entrant:
    """Entered ``entered`` days before T; objective done / stage left that many days after."""
    start = T - entered * DAY
    return Entrant(
        account_id=name,
        name=None,
        owner=None,
        arr=None,
        entered_at=start,
        completed_at=None,
        exited_at=None if exited is None else start + exited * DAY,
        in_stage=exited is None,
        objectives=(None if done is None else start + done * DAY,),
    )


def test_a_completion_after_leaving_is_censored_and_counted_apart() -> None:
    entrants = [
        entrant("in stage, done day 4", 20, 4, None),
        entrant("left on day 30, done day 10", 40, 10, 30),
        entrant("left on day 30, done day 33", 40, 33, 30),  # after leaving
        entrant("in stage, not done", 12, None, None),
    ]
    # The warehouse counts every entrant with a completion time by T: 3.
    times = objective_times("Connected", 0, entrants, T, completed=3)
    assert (times.entered, times.completed, times.censored) == (4, 2, 2)
    assert times.completed_after_exit == 1
    assert times.completed + times.censored == times.entered
    # KM: events at 4 and 10; censored at 12 and 30. S(4) = 3/4, S(10) = 3/4 * 2/3 = 1/2.
    assert times.median_days == 10.0


def test_an_undated_objective_counts_every_completion() -> None:
    entrants = [entrant("a", 20, 20, None), entrant("b", 40, 40, 30)]
    times = objective_times("Invited", 0, entrants, T, completed=2, dated=False)
    assert (times.completed, times.censored, times.completed_after_exit) == (2, 0, 0)
    assert times.median_days is None

"""The stage view on the hand-built company of tests/journey_support.py, on DuckDB + SQLite and on
PostgreSQL: counts, Kaplan–Meier times to complete computed by hand, completion orders, the class
of every account in the stage, and the view as of an earlier date. Class thresholds are validated
with located errors.

Kaplan–Meier of "Connected" (days from entry; E completed, C censored at exit or T), n = 14:

    1E 1E (a07, a10)  S = 12/14             = 0.8571
    2E (a01)          S = 0.8571 * 11/12    = 0.7857
    3E (a04)          S = 0.7857 * 10/11    = 0.7143   <- first S <= 0.75: q(0.25) = 3
    4E (a11)          S = 0.7143 * 9/10     = 0.6429
    5C (a09)
    6E (a03)          S = 0.6429 * 7/8      = 0.5625
    10E (a02)         S = 0.5625 * 6/7      = 0.4821   <- median (and q(0.5)) = 10
    12E (a05) 12C (a08)  S = 0.4821 * 5/6   = 0.4018
    14E (a06)         S = 0.4018 * 3/4      = 0.3013
    20E (a12), 22C (a14)  S = 0.3013 * 2/3  = 0.2009   <- p75 (and q(0.75), "stuck") = 20
    28C (a13)

a12 completed Connected on day 20 but left incomplete on day 30 (it never invited anyone).

"Invited", n = 14: 2E (a08) S = 13/14 = 0.9286; 3C (a10); 4E (a03) S = 0.9286 * 11/12 = 0.8512;
5E (a01) 5C (a09) S = 0.8512 * 10/11 = 0.7738; 7E (a11) S = 0.7738 * 8/9 = 0.6878 (q(0.25) = 7);
8E (a04) S = 0.6878 * 7/8 = 0.6019; 15C (a07); 17E (a14) S = 0.6019 * 5/6 = 0.5015; then only
censored (18 a06, 20 a05, 28 a13, 30 a02, 30 a12): the curve never reaches 0.5, so the median, p75,
q(0.5) and q(0.75) do not exist (null) and "Invited" is never due.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from journey_support import T, journey_project, load_journey_dataset

from closeloop.errors import DefinitionErrors
from closeloop.schemas.journey import AccountClass, SignalKind
from closeloop.services import journey
from closeloop.services.definitions import validate_project
from closeloop.services.project import open_workspace
from closeloop.settings import load_settings
from support import Backends


def test_stage_view_matches_the_hand_computed_case(backends: Backends, tmp_path: Path) -> None:
    folder = journey_project(tmp_path / "project")
    with open_workspace(folder, environ=backends.environ()) as workspace:
        load_journey_dataset(workspace.warehouse)
        view = journey.stage_view(
            workspace, "Onboarding", T, accounts=True, since=T - timedelta(days=17)
        )

    # In the stage: a05 a06 a07 a08 a09 a10 a13 a14. Completed: a01 a03 a04 a11. Left
    # incomplete on day 30: a02 (T-5) and a12 (T-15). Entered within 30 days: all but a01 a02
    # a12; completed within them: a03 (T-19), a04 (T-12), a11 (T-15).
    assert (view.in_stage, view.entered, view.completed, view.exited) == (8, 14, 4, 2)
    assert (view.window.entered, view.window.completed, view.window.exited) == (11, 3, 2)

    connected, invited = view.objectives
    assert (connected.count, connected.entered, connected.censored) == (10, 14, 4)
    assert connected.completion_rate == pytest.approx(10 / 14)
    assert (connected.median_days, connected.p75_days) == (10.0, 20.0)
    assert (connected.ahead_days, connected.behind_days, connected.stuck_days) == (3.0, 10.0, 20.0)
    assert (invited.count, invited.censored) == (6, 8)
    assert (invited.median_days, invited.p75_days) == (None, None)
    assert (invited.ahead_days, invited.behind_days, invited.stuck_days) == (7.0, None, None)
    # Medians among completers: Connected 1 1 2 3 4 | 6 10 12 14 20 -> 5; Invited 2 4 5 | 7 8 17
    # -> 6; so Connected comes first.
    assert (connected.completer_median_days, invited.completer_median_days) == (5.0, 6.0)
    assert view.typical_order == ["Connected", "Invited"]
    assert [(s.objectives, s.accounts) for s in view.sequences] == [
        (["Connected"], 6),  # a02 a05 a06 a07 a10 a12
        (["Connected", "Invited"], 3),  # a01 a04 a11
        (["Invited"], 2),  # a08 a14
        (["Invited", "Connected"], 1),  # a03
    ]

    assert view.thresholds.model_dump() == {
        "ahead": 0.25,
        "behind": 0.5,
        "stuck": 0.75,
        "stuck_days": 10.0,
    }
    assert view.accounts is not None
    classes = {account.account_id: account.account_class for account in view.accounts}
    assert classes == {
        # Connected done on day 12 / 14: not before q(0.25) = 3; Invited is never due.
        "a05": AccountClass.ON_TRACK,
        "a06": AccountClass.ON_TRACK,
        # Connected done on day 1 < 3.
        "a07": AccountClass.AHEAD,
        "a10": AccountClass.AHEAD,
        # Day 12 without Connected: due (12 > 10), not overdue (12 <= 20).
        "a08": AccountClass.BEHIND,
        # Day 5: nothing due.
        "a09": AccountClass.ON_TRACK,
        # Day 28 without Connected: overdue (28 > 20) and no progress for 28 >= 10 days.
        "a13": AccountClass.STUCK,
        # Day 22: overdue, but Invited was done 5 days ago (< 10): behind, not stuck.
        "a14": AccountClass.BEHIND,
    }
    a14 = next(account for account in view.accounts if account.account_id == "a14")
    assert (a14.days_in_stage, a14.days_since_progress) == (22.0, 5.0)
    assert (a14.objectives_done, a14.objectives_missing) == (["Invited"], ["Connected"])
    assert (a14.owner, a14.arr, a14.name) == ("lin", 14_000.0, "Stage a14")
    assert "overdue" in a14.reason and "progress 5 days ago" in a14.reason
    a13 = next(account for account in view.accounts if account.account_id == "a13")
    assert "no progress for 28 days" in a13.reason

    # As of T-17: entered a01 a02 a03 a04 a05 a06 a11 a12 a13 a14; in the stage a02 a04 a05 a06
    # a11 a12 a13 a14; Connected done by then a01 a02 a03 a04 (on T-17 itself) a11 a12 = 6/10.
    # KM then: 1C(a06) 2E S=8/9 3E,3C(a05) S*7/8=0.7778 4E S*5/6=0.6481 5C(a14) 6E S*3/4=0.4861
    # -> median 6, now 10: +4 days.
    change = view.since
    assert change is not None
    assert (change.in_stage_before, change.in_stage_now, change.in_stage_change) == (8, 8, 0)
    moved = change.objectives[0]
    assert moved.completion_rate_before == pytest.approx(0.6)
    assert moved.completion_rate_change == pytest.approx(10 / 14 - 0.6)
    assert (moved.median_days_before, moved.median_days_now, moved.median_days_change) == (
        6.0,
        10.0,
        4.0,
    )


def test_the_project_thresholds_apply_when_a_stage_has_none(tmp_path: Path) -> None:
    folder = journey_project(tmp_path / "project")
    stages = folder / "stages.yaml"
    stages.write_text(stages.read_text().split("    classes:")[0])
    config = folder / "closeloop.yaml"
    config.write_text(config.read_text() + "stage_classes:\n  stuck: 0.6\n  stuck_days: 20\n")
    with open_workspace(folder, environ={}) as workspace:
        load_journey_dataset(workspace.warehouse)
        view = journey.stage_view(workspace, "Onboarding", T, accounts=True)
    assert view.thresholds.model_dump() == {
        "ahead": 0.25,
        "behind": 0.5,
        "stuck": 0.6,
        "stuck_days": 20.0,
    }
    # q(0.6) of Connected: the first S <= 0.4 is 0.3013 on day 14.
    assert view.objectives[0].stuck_days == 14.0
    assert view.accounts is not None
    classes = {account.account_id: account.account_class for account in view.accounts}
    # a13: 28 > 14 and 28 days without progress >= 20; a14 overdue too but progressed 5 days ago.
    assert classes["a13"] == AccountClass.STUCK
    assert classes["a14"] == AccountClass.BEHIND
    with open_workspace(folder, environ={}) as workspace, pytest.raises(LookupError) as unknown:
        journey.stage_view(workspace, "Nope", T)
    assert "Onboarding" in str(unknown.value)


def test_class_thresholds_and_signal_rules_are_validated_with_their_place(tmp_path: Path) -> None:
    folder = journey_project(tmp_path / "project")
    stages = folder / "stages.yaml"
    stages.write_text(stages.read_text().replace("stuck: 0.75", "stuck: 0.4"))
    config = folder / "closeloop.yaml"
    original = config.read_text()
    config.write_text(original + "signals:\n  renewal_risk:\n    risk: usage_chnage_60d < -0.2\n")
    result = validate_project(load_settings(folder, {}))
    assert not result.valid
    by_file = {
        Path(p.location.file).name: p
        for p in result.problems
        if p.location is not None and p.location.file
    }
    order = by_file["stages.yaml"]
    assert "ahead (0.25) < behind (0.5) < stuck (0.4)" in order.message
    risk = by_file["closeloop.yaml"]
    assert "usage_chnage_60d" in risk.message and "usage_change_60d" in risk.hint + risk.message
    assert risk.location is not None and risk.location.line is not None
    assert config.read_text().splitlines()[risk.location.line - 1].strip().startswith("risk:")
    with pytest.raises(DefinitionErrors), open_workspace(folder, environ={}):
        pass

    stages.write_text(stages.read_text().replace("stuck: 0.4", "stuck: 0.75"))
    config.write_text(original + "stage_classes:\n  ahead: 1.5\n")
    result = validate_project(load_settings(folder, {}))
    assert [p.message for p in result.problems if p.severity == "error"] == [
        "stage_classes.ahead: Input should be less than 1"
    ]
    problem = result.problems[0]
    assert problem.location is not None and problem.location.line is not None
    assert config.read_text().splitlines()[problem.location.line - 1].strip() == "ahead: 1.5"


UNDATED = """\
  - name: Expansion
    entry: signup_date within last 60 days
    entered_at: signup_date
    exit:
      after_days: 30
    objectives:
      - name: Connected
        completion: count(event "integration_connected") >= 1
      - name: Big
        completion: arr >= 5000
    classes: {stuck: 0.75, stuck_days: 10}
"""


def test_an_objective_that_cannot_be_dated_has_no_times_and_is_no_progress(
    tmp_path: Path,
) -> None:
    """``arr >= 5000`` says whether, never when: the compiler dates it T. It must not become a
    completion on day d = T - entry (nor progress "today"), so it gets no times, no place in the
    order, a warning, and never makes an account due or active. Connected is dated as in the
    Onboarding stage (same events; no exit on completion, so a01 censors nothing new): q(0.75) =
    20, and a13 (day 28, ARR 13,000 so Big holds) is stuck: no dated progress for 28 days."""
    folder = journey_project(tmp_path / "project")
    stages = folder / "stages.yaml"
    stages.write_text(stages.read_text() + UNDATED)
    with open_workspace(folder, environ={}) as workspace:
        load_journey_dataset(workspace.warehouse)
        view = journey.stage_view(workspace, "Expansion", T, accounts=True)
        found = journey.signals(workspace, T, SignalKind.SLOW_COMPLETER)
    connected, big = view.objectives
    assert (connected.dated, big.dated) == (True, False)
    assert connected.stuck_days == 20.0
    assert (big.median_days, big.completer_median_days, big.behind_days) == (None, None, None)
    assert big.count == 10  # a05-a14 have ARR >= 5,000
    assert any("'Big'" in warning and "cannot be dated" in warning for warning in view.warnings)
    assert view.typical_order == ["Connected", "Big"]
    assert all(sequence.objectives == ["Connected"] for sequence in view.sequences)
    assert view.accounts is not None
    a13 = next(account for account in view.accounts if account.account_id == "a13")
    assert a13.objectives_done == ["Big"] and a13.days_since_progress == 28.0
    assert a13.account_class == AccountClass.STUCK
    # a09 (day 5) has only Big: nothing due, and an undated completion is not "early" either.
    a09 = next(account for account in view.accounts if account.account_id == "a09")
    assert (a09.objectives_done, a09.account_class) == (["Big"], AccountClass.ON_TRACK)
    assert [signal.id for signal in found.signals] == [
        "slow_completer:Onboarding:Connected",
        "slow_completer:Expansion:Connected",
    ]

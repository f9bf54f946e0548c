"""The demo end to end: simulated company, real engine, SMTP on loopback, measured against truth."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from closeloop.engine.assignment import HOLDOUT, TREATMENT
from closeloop.present.report_view import headline
from closeloop.services.demo import run_demo
from closeloop.stats import Status


def test_an_a_a_job_reports_no_significant_lift(tmp_path: Path) -> None:
    """No true effect, a fixed seed: the lift's CI contains zero and nothing is called a win."""
    result = run_demo(
        tmp_path / "aa", accounts=1500, enrollment_days=60, seed=11, scenario_name="no_effect"
    )
    report = result.report
    assert all(truth.effect == 0.0 for truth in result.truths.values())
    assert report.lift.ci.lower <= 0.0 <= report.lift.ci.upper
    assert report.status is Status.INCONCLUSIVE
    assert report.lift.p_value > 0.05
    assert not report.srm.mismatch
    assert all(segment.p_value_bh > 0.05 for segment in report.segments)


@pytest.mark.slow
def test_the_demo_recovers_the_true_effects(tmp_path: Path) -> None:
    """`make demo`'s run: every segment's true effect lies inside its measured 95% CI."""
    result = run_demo(tmp_path / "demo")
    report = result.report
    arms = report.arms
    entered = arms[HOLDOUT].entered + arms[TREATMENT].entered
    assert entered > 2000
    assert 0.15 < arms[HOLDOUT].entered / entered < 0.25
    assert report.status is Status.POSITIVE
    assert report.lift.ci.lower > 0
    overall = result.truths["all"].effect
    assert report.lift.ci.lower <= overall <= report.lift.ci.upper
    for segment in report.segments:
        assert segment.column == "segment"
        truth = result.truths[segment.segment].effect
        assert segment.lift.ci.lower <= truth <= segment.lift.ci.upper, segment.segment
    # Holdout accounts never got mail; each treated account got exactly one message.
    assert result.emails_received == result.unique_message_ids == arms[TREATMENT].entered
    # Time to goal: treatment reaches the goal sooner (negative difference in restricted mean).
    assert report.time_to_goal.absolute.ci.upper < 0
    # ... which helps, so its status is positive (every status is from the goal's side), and the
    # headline's words and interval say it one way: days sooner, with the interval in days sooner.
    assert report.time_to_goal.absolute.status is Status.POSITIVE
    difference = report.time_to_goal.absolute
    assert (
        f"{-difference.estimate:.1f} days sooner on average "
        f"[{-difference.ci.upper:.1f}, {-difference.ci.lower:.1f}]"
    ) in headline(result.model)
    # Revenue at 90 days after entry, from the simulated subscriptions, both arms.
    assert report.revenue is not None
    ninety = report.revenue.horizon(90)
    assert ninety.matured > 1000
    assert 0.9 < ninety.arms[HOLDOUT].retention <= 1.0
    page = result.html_path.read_text()
    assert page.count("<svg") >= 2
    truth = json.loads((result.project_dir / "truth.json").read_text())
    assert {row["segment"] for row in truth["effect_on_completion_within_horizon"]} >= {"all"}

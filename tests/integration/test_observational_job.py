"""A job without a holdout is measured against matched eligible-but-not-enrolled accounts.

The job only runs from day 35, so accounts that signed up before were eligible and never enrolled:
they are the comparison cohort, entering when they were first eligible. The audience is a day old
at most, so enrolled and comparison accounts enter at the same tenure (the launch day brings no
backlog of older accounts, which would have no comparison and be pruned). Every enrolled unit was
emailed, so the simulator's truth for the job's matured enrollments is the effect on the treated,
which the matched comparison estimates.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from closeloop.services.project import init_project, open_workspace
from closeloop.services.reports import job_report
from closeloop.services.results import job_report_model
from closeloop.services.simulation import simulate_into, simulation_config
from support import Backends

JOBS = """\
jobs:
  - name: Integration nudge
    audience: |
      signup_date within last 1 days
        and count(event "integration_connected") = 0
    goal: count(event "integration_connected") >= 1
    duration_days: 21
    observational: true
    holdout: 0
    starts_at: {starts_at}
    steps:
      - send: email
        subject: "Connect {{{{ account.name }}}}"
        template: integration_nudge
    hypothesis:
      expected_effect: Emailed accounts connect an integration sooner.
      primary_metric: completion_rate
      horizon_days: 14
"""


@pytest.mark.slow
@pytest.mark.parametrize("backends", ["embedded"], indirect=True)
def test_an_observational_job_gets_a_matched_comparison_near_its_true_effect(
    backends: Backends, tmp_path: Path
) -> None:
    config = simulation_config("default", accounts=2400, days=100, arrival_days=85, seed=3)
    start = datetime.combine(config.start, datetime.min.time())
    folder = tmp_path / "project"
    init_project(folder, name="observational")
    (folder / "jobs.yaml").write_text(
        JOBS.format(starts_at=(start + timedelta(days=35)).isoformat()), encoding="utf-8"
    )
    with open_workspace(folder, environ=backends.environ()) as workspace:
        result = simulate_into(workspace, config, run_jobs=True)
        report = job_report(workspace, "Integration nudge", segment_by=())

    (truth,) = result.job_truths
    overall = next(effect for effect in truth.effects if effect.segment == "all")
    matched = report.matched
    assert matched is not None
    assert matched.estimand == "effect on the treated (ATT), observational"
    counts = matched.counts
    assert counts.treated_matched > 500 and counts.control_matched > 300
    # Matching prunes (almost) none of the treated here: the estimate is about the same units the
    # truth is computed on.
    assert counts.treated_pruned <= 0.05 * (counts.treated_matched + counts.treated_pruned)
    effect = matched.completion
    assert effect.ci.lower <= overall.effect <= effect.ci.upper, (effect, overall)
    assert report.status is matched.status
    assert any("observational" in warning for warning in report.warnings)
    payload = job_report_model(report).model_dump(mode="json")
    assert payload["matched"]["arm"] == "treatment"  # type: ignore[index]
    assert payload["matched"]["control"] == "comparison"  # type: ignore[index]

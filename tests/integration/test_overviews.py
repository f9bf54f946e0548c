"""The dashboard's index overviews on the hand-built company of tests/journey_support.py, on
DuckDB + SQLite and on PostgreSQL: every stage's counts are its stage view's, every health
score's bands and bins count each scored account once and match the account's own score."""

from __future__ import annotations

from pathlib import Path

import pytest
from journey_support import T, journey_project, load_journey_dataset

from closeloop.errors import NotFoundError
from closeloop.services import health, journey, overviews
from closeloop.services.project import open_workspace
from support import Backends


def test_stages_overview_counts_each_stage_as_its_view(backends: Backends, tmp_path: Path) -> None:
    folder = journey_project(tmp_path / "project")
    with open_workspace(folder, environ=backends.environ()) as workspace:
        load_journey_dataset(workspace.warehouse)
        overview = overviews.stages_overview(workspace, T)
        view = journey.stage_view(workspace, "Onboarding", T)
    [stage] = overview.stages
    # as in test_stage_view: 8 in the stage, 14 entered, 4 completed, 2 left; window 11/3/2
    assert (stage.in_stage, stage.entered, stage.completed, stage.exited) == (8, 14, 4, 2)
    assert stage.window == view.window
    assert stage.completion_rate == pytest.approx(4 / 14)
    assert stage.objectives == ["Connected", "Invited"]
    assert overview.as_of == T.replace(tzinfo=overview.as_of.tzinfo)


def test_health_overview_counts_every_scored_account_once(
    backends: Backends, tmp_path: Path
) -> None:
    folder = journey_project(tmp_path / "project")
    with open_workspace(folder, environ=backends.environ()) as workspace:
        load_journey_dataset(workspace.warehouse)
        overview = overviews.health_overview(workspace, T)
        [score] = overview.scores
        lowest = score.lowest[0]
        explained = health.account_health(workspace, lowest.account_id, T, score=score.score_name)
        with pytest.raises(NotFoundError, match="Vibes"):
            overviews.health_overview(workspace, T, score="Vibes")
    # a01-a14 and b1-b5 exist at T
    assert score.accounts == 19
    assert 0 < score.scored <= score.accounts
    assert sum(score.bands.values()) == score.scored
    assert sum(b.accounts for b in score.distribution) == score.scored
    assert [b.low for b in score.distribution] == [10.0 * i for i in range(10)]
    values = [a.score for a in score.lowest]
    assert values == sorted(values) and len(values) == min(score.scored, overviews.LOWEST)
    assert explained.scores[0].now.score == pytest.approx(lowest.score)
    assert explained.scores[0].now.band == lowest.band
    assert score.mean is not None and min(values) <= score.mean <= 100


def test_a_project_without_health_scores_says_so(tmp_path: Path, backends: Backends) -> None:
    folder = journey_project(tmp_path / "project")
    (folder / "health.yaml").write_text("health_scores: []\n")
    with open_workspace(folder, environ=backends.environ()) as workspace:
        load_journey_dataset(workspace.warehouse)
        with pytest.raises(NotFoundError, match="defines no health scores"):
            overviews.health_overview(workspace, T)

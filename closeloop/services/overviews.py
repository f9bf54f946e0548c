"""The dashboard's index pages: every stage with its counts, every health score with its bands.

Both reuse the computations behind ``closeloop stage`` and ``closeloop health`` (the stage view,
the point-in-time score of every account), so the numbers are the ones those commands print.
"""

from __future__ import annotations

from datetime import datetime

from closeloop.analysis import health as health_analysis
from closeloop.data.health_inputs import measure_values
from closeloop.errors import NotFoundError
from closeloop.schemas.overviews import (
    HealthOverview,
    HealthScoreOverview,
    ScoreBin,
    ScoredAccount,
    StagesOverview,
    StageSummary,
)
from closeloop.services import health, journey
from closeloop.services.definitions import naive_utc
from closeloop.services.project import Workspace

LOWEST = 20  # accounts listed at the bottom of each score


def stages_overview(
    workspace: Workspace, as_of: datetime, *, window_days: float = journey.DEFAULT_WINDOW_DAYS
) -> StagesOverview:
    """Each stage's counts as of ``as_of``, in the order the project defines them."""
    summaries = []
    warnings: list[str] = []
    for name, loaded in workspace.project.stages.items():
        view = journey.stage_view(workspace, name, as_of, window_days=window_days)
        summaries.append(
            StageSummary(
                name=view.name,
                description=loaded.definition.description,
                objectives=[objective.name for objective in loaded.objectives],
                in_stage=view.in_stage,
                entered=view.entered,
                completed=view.completed,
                exited=view.exited,
                completion_rate=view.completed / view.entered if view.entered else None,
                window=view.window,
            )
        )
        warnings += [warning for warning in view.warnings if warning not in warnings]
    return StagesOverview(as_of=naive_utc(as_of), stages=summaries, warnings=warnings)


def _bins(scores: list[float]) -> list[ScoreBin]:
    counts = [0] * 10
    for score in scores:
        counts[min(int(score // 10), 9)] += 1
    return [ScoreBin(low=10.0 * i, high=10.0 * (i + 1), accounts=n) for i, n in enumerate(counts)]


def health_overview(
    workspace: Workspace, at: datetime, *, score: str | None = None
) -> HealthOverview:
    """Every score (or ``score``) of every account as of ``at``: bands, ten-point bins and the
    lowest-scoring accounts. NotFoundError when the project defines no health score."""
    at = naive_utc(at)
    found = []
    project = workspace.project
    if score is not None:
        chosen = [project.health_score(score)]  # NotFoundError naming the scores there are
    elif project.health_scores:
        chosen = list(project.health_scores.values())
    else:
        raise NotFoundError(
            "this project defines no health scores: define them in health.yaml (docs/health.md)"
        )
    for loaded in chosen:
        values = measure_values(loaded, workspace.warehouse, at, workspace.project.catalog)
        scored = health_analysis.score_accounts(health.rule(loaded), values)
        with_score = [item for item in scored if item.score is not None]
        bands = {band: 0 for band in health_analysis.BANDS}
        for item in with_score:
            if item.band is not None:
                bands[item.band] += 1
        numbers = [item.score for item in with_score if item.score is not None]
        lowest = sorted(with_score, key=lambda item: (item.score, item.account_id))[:LOWEST]
        definition = loaded.definition
        found.append(
            HealthScoreOverview(
                score_name=loaded.name,
                description=definition.description,
                poor_below=definition.bands.poor,
                concerning_below=definition.bands.concerning,
                accounts=len(scored),
                scored=len(numbers),
                mean=sum(numbers) / len(numbers) if numbers else None,
                bands=bands,
                distribution=_bins(numbers),
                lowest=[
                    ScoredAccount(
                        account_id=item.account_id,
                        segment=item.segment,
                        score=item.score,
                        band=item.band,
                    )
                    for item in lowest
                    if item.score is not None
                ],
            )
        )
    return HealthOverview(at=at, scores=found)

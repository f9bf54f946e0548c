"""``closeloop outcomes team``: the team's relationship work and a scorecard per CSM built on what
CS can influence, beside revenue (docs/metrics.md "Team")."""

from __future__ import annotations

from datetime import datetime

from closeloop.analysis import team
from closeloop.engine.publish import publish_enrollments
from closeloop.errors import LocatedError
from closeloop.schemas.team import (
    ActivityKind,
    ChurnReason,
    ChurnSummary,
    Scorecard,
    Share,
    TeamOutcomes,
)
from closeloop.services.project import Workspace
from closeloop.stats.proportions import wilson_bounds

CONFIDENCE = 0.95
_Z = 1.959963984540054  # the two-sided 95% normal quantile


def team_outcomes(
    workspace: Workspace,
    start: datetime,
    end: datetime,
    *,
    by: str = team.DEFAULT_BY,
    sponsor_attribute: str = team.DEFAULT_SPONSOR_ATTRIBUTE,
    reference_attribute: str = team.DEFAULT_REFERENCE_ATTRIBUTE,
    publish: bool = True,
) -> TeamOutcomes:
    """The team's outcomes for ``[start, end)``. ``publish`` first copies the engine's
    enrollments into the warehouse (goals achieved and the arms' completion read them there)."""
    if start >= end:
        raise LocatedError(
            f"the window is empty: start {start.isoformat()} is not before end {end.isoformat()}",
            hint="give --start before --end (start is included, end is not)",
        )
    for name, value in (
        ("sponsor_attribute", sponsor_attribute),
        ("reference_attribute", reference_attribute),
    ):
        if not value.strip():
            raise LocatedError(f"{name} is empty", hint="name an account attribute or property")
    if publish:
        publish_enrollments(workspace.store, workspace.warehouse)
    figures = team.team_figures(
        workspace.warehouse,
        start,
        end,
        by=by,
        sponsor_attribute=sponsor_attribute,
        reference_attribute=reference_attribute,
    )
    managed = {book.csm: book.accounts for book in figures.books}
    return TeamOutcomes(
        start=start,
        end=end,
        first_day=figures.first_day.isoformat(),
        last_day=figures.last_day.isoformat(),
        by=by,
        sponsor_attribute=sponsor_attribute,
        reference_attribute=reference_attribute,
        confidence=CONFIDENCE,
        scorecards=[_scorecard(book) for book in figures.books],
        activities=[
            ActivityKind(
                owner=row.owner,
                kind=row.kind,
                activities=row.activities,
                accounts_touched=row.accounts_touched,
                accounts_managed=managed.get(row.owner, 0),
                activities_per_account=_ratio(row.activities, managed.get(row.owner, 0)),
            )
            for row in figures.activities
        ],
        churn=_churn(figures.churn),
    )


def share(successes: int, n: int) -> Share:
    """A proportion with its Wilson score interval (valid at small n; null when n is 0)."""
    if n == 0:
        return Share(successes=successes, n=n, rate=None, lower=None, upper=None)
    lower, upper = wilson_bounds(float(successes), float(n), _Z)
    return Share(
        successes=successes,
        n=n,
        rate=successes / n,
        lower=max(0.0, float(lower)),
        upper=min(1.0, float(upper)),
    )


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def _scorecard(book: team.BookFigures) -> Scorecard:
    treated = share(book.treated_completed, book.treated_units)
    holdout = share(book.holdout_completed, book.holdout_units)
    nps = (
        (book.nps_promoters - book.nps_detractors) / book.nps_responses * 100
        if book.nps_responses
        else None
    )
    return Scorecard(
        csm=book.csm,
        accounts=book.accounts,
        activities=book.activities,
        activities_per_account=_ratio(book.activities, book.accounts),
        people=book.people,
        engaged_people=book.engaged_people,
        contacts_engaged_per_account=_ratio(book.engaged_people, book.accounts),
        engaged_people_share=_ratio(book.engaged_people, book.people),
        engaged_accounts=book.engaged_accounts,
        sponsor_accounts=book.sponsor_accounts,
        sponsor_share=_ratio(book.sponsor_accounts, book.accounts),
        reference_accounts=book.reference_accounts,
        reference_share=_ratio(book.reference_accounts, book.accounts),
        goals_achieved=book.goals_achieved,
        goal_accounts=book.goal_accounts,
        nps=nps,
        nps_responses=book.nps_responses,
        csat=share(book.csat_satisfied, book.csat_responses),
        controllable_churns=book.controllable_churns,
        controllable_mrr_lost=book.controllable_mrr_lost,
        churns=book.churns,
        treated_completion=treated,
        holdout_completion=holdout,
        completion_difference=(
            treated.rate - holdout.rate
            if treated.rate is not None and holdout.rate is not None
            else None
        ),
        starting_mrr=book.starting_mrr,
        retained_mrr=book.retained_mrr,
        nrr=_ratio(book.retained_mrr, book.starting_mrr),
    )


def _churn(reasons: list[team.ChurnCount]) -> ChurnSummary:
    flagged = [row for row in reasons if row.controllable is not None]
    controllable = [row for row in flagged if row.controllable]
    controllable_mrr = sum(row.mrr_lost for row in controllable)
    return ChurnSummary(
        churns=sum(row.churns for row in reasons),
        mrr_lost=sum(row.mrr_lost for row in reasons),
        controllable_churns=sum(row.churns for row in controllable),
        controllable_mrr_lost=controllable_mrr,
        unflagged_churns=sum(row.churns for row in reasons if row.controllable is None),
        controllable_share=share(
            sum(row.churns for row in controllable), sum(row.churns for row in flagged)
        ),
        controllable_mrr_share=_ratio(controllable_mrr, sum(row.mrr_lost for row in flagged)),
        reasons=[
            ChurnReason(
                reason=row.reason,
                controllable=row.controllable,
                churns=row.churns,
                mrr_lost=row.mrr_lost,
            )
            for row in reasons
        ],
    )

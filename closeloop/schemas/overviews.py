"""Overviews the dashboard's index pages show: every stage with its counts (``/stages``) and every
health score with its bands (``/health``), each one call of ``closeloop.services.overviews``;
the pages' JSON twins (``/stages.json``, ``/health.json``) are these models."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from closeloop.schemas.base import Number, Schema
from closeloop.schemas.health import Band
from closeloop.schemas.journey import WindowCounts


class StageSummary(Schema):
    """One stage as of a time: the counts of its stage view, without objectives' times."""

    name: str
    description: str
    objectives: list[str]
    in_stage: int = Field(ge=0, description="accounts in the stage now")
    entered: int = Field(ge=0, description="accounts that entered it (ever, by as_of)")
    completed: int = Field(ge=0)
    exited: int = Field(ge=0, description="accounts that left it without completing")
    completion_rate: Number = Field(description="completed / entered; null with no entrants")
    window: WindowCounts


class StagesOverview(Schema):
    """Every stage of the project, in the order defined, as of ``as_of``."""

    as_of: datetime
    stages: list[StageSummary]
    warnings: list[str] = Field(default_factory=list, description="stale data")


class ScoreBin(Schema):
    """Accounts whose score is in [low, high) (the last bin includes 100)."""

    low: float
    high: float
    accounts: int = Field(ge=0)


class ScoredAccount(Schema):
    account_id: str
    segment: str | None
    score: float
    band: Band | None


class HealthScoreOverview(Schema):
    """One score over every account as of a time: the bands and the distribution."""

    score_name: str
    description: str
    poor_below: float
    concerning_below: float
    accounts: int = Field(ge=0, description="accounts existing as of `at`")
    scored: int = Field(ge=0, description="accounts with a score (a measure has a value)")
    mean: Number = Field(description="the mean score of the scored accounts")
    bands: dict[str, int] = Field(description="accounts per band: poor, concerning, healthy")
    distribution: list[ScoreBin] = Field(description="ten bins of ten points")
    lowest: list[ScoredAccount] = Field(description="the lowest-scoring accounts, lowest first")


class HealthOverview(Schema):
    """Every health score of the project as of ``at`` (computed, not read from snapshots)."""

    at: datetime
    scores: list[HealthScoreOverview]


class OutcomePage(Schema):
    """One outcome the dashboard shows, and where else the same model is served."""

    name: str
    path: str = Field(description="the dashboard page (its JSON twin: PATH.json)")
    api: str = Field(description="the API route that returns the same model")
    command: str = Field(description="the CLI command that prints it (--format json)")
    description: str


class OutcomePages(Schema):
    """``/outcomes``: the outcome pages there are."""

    pages: list[OutcomePage]

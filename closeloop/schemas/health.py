"""Health scores: the project's scores, one account's score explained, the daily snapshot and the
backtest, as ``closeloop health …`` and ``/api/health-scores/…`` return them. docs/health.md
defines every field."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import Field

from closeloop.schemas.base import Number, Schema

Band = Literal["poor", "concerning", "healthy"]


class HealthMeasureSummary(Schema):
    name: str
    expression: str
    kind: Literal["number", "boolean"]
    weight: float
    polarity: Literal["higher_is_better", "lower_is_better"]
    range: list[float] | None = Field(description="[low, high] for a number measure")


class HealthSegmentSummary(Schema):
    when: str
    weights: dict[str, float] = Field(description="each measure's weight for these accounts")


class HealthScoreSummary(Schema):
    name: str
    description: str
    poor_below: float
    concerning_below: float
    measures: list[HealthMeasureSummary]
    segments: list[HealthSegmentSummary]
    file: str


class HealthScoreList(Schema):
    """The project's health scores (``GET /api/health-scores``)."""

    scores: list[HealthScoreSummary]


class HealthMeasureValue(Schema):
    """One measure of one account's score."""

    name: str
    value: Number = Field(description="the raw value (true/false as 1/0); null when missing")
    scaled: Number = Field(description="the value on the 0..100 scale, good end 100")
    weight: float = Field(description="the configured weight for the account's segment")
    effective_weight: float = Field(
        description="share of the weights of the measures that have a value (0 when missing)"
    )
    contribution: float = Field(description="effective_weight x scaled: points of the score")
    missing: bool


class AccountHealth(Schema):
    """One score of one account as of a time."""

    score_name: str
    account_id: str
    at: datetime
    segment: str | None = Field(description="the account's stored segment")
    variant: str | None = Field(
        description="the `when` of the segment variant whose weights apply; null: the default"
    )
    score: Number = Field(description="0..100; null when no weighted measure has a value")
    band: Band | None
    missing: list[str] = Field(description="measures without a value (re-weighted away)")
    measures: list[HealthMeasureValue]


class MeasureChange(Schema):
    name: str
    value_before: Number
    value_now: Number
    contribution_before: float
    contribution_now: float
    change: float = Field(description="contribution_now - contribution_before (points)")


class HealthExplained(Schema):
    """A score now, and with ``since`` the score then and what moved it."""

    now: AccountHealth
    before: AccountHealth | None
    change: Number = Field(description="score now - score before; null without both")
    changes: list[MeasureChange] = Field(
        description="per measure, sorted by absolute change of contribution (largest first)"
    )


class AccountHealthReport(Schema):
    """``closeloop health show ACCOUNT`` / ``GET /api/health-scores/accounts/{account_id}``."""

    account_id: str
    at: datetime
    since: datetime | None
    scores: list[HealthExplained]


class SnapshotTaken(Schema):
    score_name: str
    day: date
    accounts: int = Field(description="rows written (every account existing on the day)")
    scored: int = Field(description="accounts with a score (at least one measure has a value)")
    bands: dict[str, int] = Field(description="accounts per band")


class HealthSnapshot(Schema):
    """``closeloop health snapshot`` / ``POST /api/health-scores/snapshot``."""

    at: datetime
    day: date
    computed_at: datetime
    scores: list[SnapshotTaken]


class HealthPoint(Schema):
    """One day of an account's snapshot history."""

    score_name: str
    day: date
    score: Number
    band: Band | None


class OutcomeRate(Schema):
    events: int
    rate: Number
    low: Number = Field(description="95% Wilson lower bound")
    high: Number = Field(description="95% Wilson upper bound")


class Discrimination(Schema):
    """How well low scores pick out one bad outcome: churn among the group's paying accounts,
    contraction among those of them that did not churn."""

    outcome: Literal["churn", "contraction"]
    n: int = Field(description="accounts compared (contraction: those that did not churn)")
    events: int
    rate: Number
    auc: Number = Field(
        description="P(score of an account with the outcome < score of one without); ties 1/2"
    )
    auc_low: Number = Field(description="95% DeLong interval on the logit scale")
    auc_high: Number
    status: Literal["ok", "no_events", "no_non_events", "degenerate"]
    top_decile_lift: Number = Field(
        description="outcome rate in the lowest-scoring 10% / overall rate"
    )


class BacktestGroup(Schema):
    segment: str = Field(description="'all', or a value of the accounts' segment")
    n: int = Field(description="paying accounts with a score")
    churn: Discrimination
    contraction: Discrimination


class CalibrationRow(Schema):
    group: str = Field(description="a band, or a score decile 'd1' (lowest) to 'd10'")
    n: int
    score_min: Number
    score_max: Number
    churn: OutcomeRate
    contraction: OutcomeRate


class ScoreBacktest(Schema):
    score_name: str
    auc: Number = Field(description="churn AUC over all scored accounts")
    auc_low: Number
    auc_high: Number
    unscored: int = Field(description="paying accounts without a score (left out)")
    groups: list[BacktestGroup] = Field(description="'all' first, then each segment")
    by_band: list[CalibrationRow]
    by_decile: list[CalibrationRow]
    warnings: list[str]


class HealthBacktest(Schema):
    """``closeloop health backtest`` / ``GET /api/health-scores/backtest``."""

    at: datetime = Field(description="scores computed as of this time (point in time)")
    horizon_days: float
    end: datetime = Field(description="at + horizon: outcomes counted in (at, end]")
    accounts: int = Field(description="accounts with MRR > 0 at `at`")
    scores: list[ScoreBacktest]
    warnings: list[str] = Field(
        description="about the whole backtest, e.g. a horizon that ends after the latest data"
    )

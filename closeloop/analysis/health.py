"""Health scores: scoring each account from its measure values, the daily snapshot table, and
the outcomes a backtest checks a score against.

A measure's value is scaled to 0..100: a number linearly between its range (low -> 0, high ->
100, clamped), true -> 100 and false -> 0; ``lower_is_better`` turns the scale around. The
score is ``sum(w_i * s_i) / sum(w_i)`` over the measures that have a value, so a missing input
is left out and the others are re-weighted; each measure's *effective* weight is its share of
that sum and its *contribution* ``effective weight * scaled value`` (contributions add up to
the score). Measure values come from the warehouse, one row per account
(:func:`closeloop.data.health_inputs.measure_values`); only that row leaves it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa
import sqlglot.expressions as sge

from closeloop.analysis.revenue import Policy, timeline
from closeloop.data.tables import HEALTH_SCORES
from closeloop.data.warehouse import Warehouse

POOR, CONCERNING, HEALTHY = "poor", "concerning", "healthy"
BANDS = (POOR, CONCERNING, HEALTHY)


@dataclass(frozen=True)
class MeasureRule:
    """How one measure is scaled: a number between ``low`` and ``high``, or true/false when
    ``low`` is None."""

    name: str
    weight: float
    higher_is_better: bool
    low: float | None = None
    high: float | None = None

    def scale(self, value: float) -> float:
        """``value`` on the 0..100 scale, good end at 100."""
        if self.low is None or self.high is None:
            scaled = 100.0 if value else 0.0
        else:
            share = (value - self.low) / (self.high - self.low)
            scaled = 100.0 * min(1.0, max(0.0, share))
        return scaled if self.higher_is_better else 100.0 - scaled


@dataclass(frozen=True)
class ScoreRule:
    """A score: its measures, bands and the weights of each segment variant (in order)."""

    name: str
    poor: float
    concerning: float
    measures: tuple[MeasureRule, ...]
    variants: tuple[tuple[float, ...], ...] = ()

    def weights(self, variant: int) -> tuple[float, ...]:
        """The measures' weights for accounts of ``variant`` (-1: the default weights)."""
        if variant < 0:
            return tuple(measure.weight for measure in self.measures)
        return self.variants[variant]

    def band(self, score: float | None) -> str | None:
        if score is None:
            return None
        return POOR if score < self.poor else CONCERNING if score < self.concerning else HEALTHY


@dataclass(frozen=True)
class MeasurePart:
    """One measure of one account's score."""

    name: str
    value: float | None
    scaled: float | None
    weight: float  # as configured for the account's segment variant
    effective_weight: float  # share of the weights of the measures that have a value
    contribution: float  # effective weight * scaled value: points of the score
    missing: bool


@dataclass(frozen=True)
class AccountScore:
    account_id: str
    segment: str | None
    variant: int
    score: float | None  # None when no weighted measure has a value
    band: str | None
    parts: tuple[MeasurePart, ...]

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(part.name for part in self.parts if part.missing)


def score_account(
    rule: ScoreRule,
    account_id: str,
    values: Sequence[float | None],
    variant: int = -1,
    segment: str | None = None,
) -> AccountScore:
    """The score of one account from its measure values (None: missing), re-weighting over
    the measures that have a value."""
    weights = rule.weights(variant)
    present = sum(w for w, v in zip(weights, values, strict=True) if v is not None)
    parts = []
    total = 0.0
    for measure, weight, value in zip(rule.measures, weights, values, strict=True):
        if value is None:
            parts.append(MeasurePart(measure.name, None, None, weight, 0.0, 0.0, True))
            continue
        scaled = measure.scale(value)
        share = weight / present if present > 0 else 0.0
        total += share * scaled
        parts.append(MeasurePart(measure.name, value, scaled, weight, share, share * scaled, False))
    score = total if present > 0 else None
    return AccountScore(account_id, segment, variant, score, rule.band(score), tuple(parts))


def score_accounts(rule: ScoreRule, values: ir.Table) -> list[AccountScore]:
    """Every account of a :func:`~closeloop.data.health_inputs.measure_values` table, scored
    (one row per account is read back), ordered by account id."""
    rows = values.order_by("account_id").to_pyarrow().to_pylist()
    count = len(rule.measures)
    return [
        score_account(
            rule,
            str(row["account_id"]),
            [_number(row[f"value_{index}"]) for index in range(count)],
            int(row["variant"]),
            row["segment"],
        )
        for row in rows
    ]


def _number(value: Any) -> float | None:
    """A value read back, with NaN and infinities (a bad imported value) as missing."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


# -- snapshots -----------------------------------------------------------------------------------


def _ensure_table(warehouse: Warehouse) -> None:
    if not warehouse.has_table(HEALTH_SCORES.name):
        warehouse.backend.create_table(HEALTH_SCORES.name, schema=HEALTH_SCORES.ibis_schema())


def write_snapshot(
    warehouse: Warehouse,
    score_name: str,
    day: date,
    scores: Iterable[AccountScore],
    computed_at: datetime,
) -> int:
    """Replace the rows of (``score_name``, ``day``) with these scores; returns how many rows.

    The delete and the insert are two statements: a crash between them leaves the day empty,
    and taking it again fills it (the daemon does, since the day is then missing).
    """
    _ensure_table(warehouse)
    condition = sge.and_(
        sge.column("score_name").eq(sge.Literal.string(score_name)),
        sge.column("day").eq(sge.cast(sge.Literal.string(day.isoformat()), "date")),
    )
    statement = sge.delete(HEALTH_SCORES.name, where=condition)
    cursor = warehouse.backend.raw_sql(statement.sql(dialect=warehouse.dialect))
    # PostgreSQL hands back a cursor to close; DuckDB its connection, which must stay open.
    if cursor is not getattr(warehouse.backend, "con", None) and hasattr(cursor, "close"):
        cursor.close()
    rows: dict[str, list[Any]] = {name: [] for name in HEALTH_SCORES.column_names}
    for scored in scores:
        rows["snapshot_id"].append(f"{score_name}|{scored.account_id}|{day.isoformat()}")
        rows["score_name"].append(score_name)
        rows["account_id"].append(scored.account_id)
        rows["day"].append(day)
        rows["score"].append(scored.score)
        rows["band"].append(scored.band)
        rows["measures"].append(_measures_json(scored))
        rows["computed_at"].append(computed_at)
    count = len(rows["snapshot_id"])
    if count:
        schema = HEALTH_SCORES.ibis_schema().to_pyarrow()
        warehouse.append(HEALTH_SCORES.name, pa.Table.from_pydict(rows, schema=schema))
    return count


def _measures_json(scored: AccountScore) -> str:
    return json.dumps(
        [
            {
                "name": part.name,
                "value": part.value,
                "scaled": part.scaled,
                "weight": part.weight,
                "effective_weight": part.effective_weight,
                "missing": part.missing,
            }
            for part in scored.parts
        ],
        separators=(",", ":"),
    )


def snapshot_rows(warehouse: Warehouse, score_name: str, day: date) -> int:
    """How many rows the snapshot of ``score_name`` on ``day`` holds (0: not taken)."""
    if not warehouse.has_table(HEALTH_SCORES.name):
        return 0
    table = warehouse.table(HEALTH_SCORES.name)
    matching = table.filter(
        (table.score_name == ibis.literal(score_name, type="string"))
        & (table.day == ibis.literal(day, type="date"))
    )
    return int(matching.count().to_pyarrow().as_py())


@dataclass(frozen=True)
class SnapshotPoint:
    score_name: str
    day: date
    score: float | None
    band: str | None
    measures: str


def history(
    warehouse: Warehouse,
    account_id: str,
    start: date,
    end: date,
    score_names: Sequence[str] | None = None,
) -> list[SnapshotPoint]:
    """One account's snapshots with ``start <= day <= end``, by score and day."""
    if not warehouse.has_table(HEALTH_SCORES.name):
        return []
    table = warehouse.table(HEALTH_SCORES.name)
    rows = table.filter(
        (table.account_id == ibis.literal(account_id, type="string"))
        & (table.day >= ibis.literal(start, type="date"))
        & (table.day <= ibis.literal(end, type="date"))
    )
    if score_names is not None:
        rows = rows.filter(rows.score_name.isin([str(name) for name in score_names]))
    found = rows.order_by(["score_name", "day"]).to_pyarrow().to_pylist()
    return [
        SnapshotPoint(
            r["score_name"], _as_date(r["day"]), _number(r["score"]), r["band"], r["measures"]
        )
        for r in found
    ]


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    assert isinstance(value, date)
    return value


# -- outcomes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What happened to a paying account in (T, T + horizon]."""

    mrr_at: float
    mrr_after: float
    churned: bool  # MRR fell to 0 by the end, or a churn reason was recorded in the window
    contracted: bool  # MRR at the end below MRR at T but above 0


def outcomes(warehouse: Warehouse, at: datetime, horizon_days: float) -> dict[str, Outcome]:
    """Per account with MRR > 0 on ``at``'s day: its churn and contraction in the horizon.

    MRR on a day comes from the subscription timeline of ``closeloop.analysis.revenue`` (rows
    active on the day; paused rows count 0). One row per paying account is read back.
    """
    end = at + timedelta(days=horizon_days)
    line = timeline(warehouse, Policy(), at.date(), end.date())
    before = _mrr_on(line, at.date(), "mrr_at")
    after = _mrr_on(line, end.date(), "mrr_after")
    paying = before.filter(before.mrr_at > 0)
    joined = paying.left_join(after, paying.account_id == after.account_id).select(
        paying.account_id, paying.mrr_at, mrr_after=after.mrr_after.fill_null(0.0)
    )
    reasons = warehouse.table("churn_reasons")
    window = reasons.filter(
        (reasons.churned_at > ibis.literal(at, type="timestamp"))
        & (reasons.churned_at <= ibis.literal(end, type="timestamp"))
    )
    recorded = window.select(reason_account=window.account_id).distinct()
    joined = joined.left_join(recorded, joined.account_id == recorded.reason_account).select(
        "account_id",
        "mrr_at",
        "mrr_after",
        reasoned=recorded.reason_account.notnull(),
    )
    found: dict[str, Outcome] = {}
    for row in joined.to_pyarrow().to_pylist():
        mrr_at, mrr_after = float(row["mrr_at"]), float(row["mrr_after"])
        churned = mrr_after <= 0 or bool(row["reasoned"])
        contracted = not churned and mrr_after < mrr_at
        found[str(row["account_id"])] = Outcome(mrr_at, mrr_after, churned, contracted)
    return found


def latest_data(warehouse: Warehouse) -> datetime | None:
    """The time of the latest event: outcomes after it cannot be seen yet."""
    events = warehouse.table("events")
    found = events.timestamp.max().to_pyarrow().as_py()
    return found if isinstance(found, datetime) else None


def _mrr_on(line: ir.Table, day: date, name: str) -> ir.Table:
    """Each account's MRR on ``day``: its latest timeline row on or before it."""
    upto = line.filter(line.day <= ibis.literal(day, type="date"))
    order = ibis.window(group_by="account_id", order_by=ibis.desc("day"))
    ranked = upto.mutate(_n=ibis.row_number().over(order))
    return ranked.filter(ranked._n == 0).select("account_id", **{name: ranked.mrr})


def by_account(scores: Iterable[AccountScore]) -> Mapping[str, AccountScore]:
    return {scored.account_id: scored for scored in scores}

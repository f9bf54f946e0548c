"""Health scores (docs/health.md): the project's scores, one account's score explained, the daily
snapshot the daemon takes, the snapshot history of an account, and the backtest that shows
whether a score predicts churn and contraction at all.

Every score is computed point in time: as of T, from data up to T only. The snapshot of day D
is the score as of D 00:00 UTC (data through the end of D - 1), so taking it on D or any later
day writes the same rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import date, datetime, time, timedelta

import numpy as np

from closeloop.analysis import health as analysis
from closeloop.data.health_inputs import measure_values
from closeloop.definitions.catalog import LoadedHealthScore
from closeloop.definitions.expressions import format_expression
from closeloop.engine.state import utc_now
from closeloop.errors import LocatedError, NotFoundError
from closeloop.present.format import num
from closeloop.schemas.health import (
    AccountHealth,
    AccountHealthReport,
    BacktestGroup,
    CalibrationRow,
    Discrimination,
    HealthBacktest,
    HealthExplained,
    HealthMeasureSummary,
    HealthMeasureValue,
    HealthPoint,
    HealthScoreList,
    HealthScoreSummary,
    HealthSegmentSummary,
    HealthSnapshot,
    MeasureChange,
    OutcomeRate,
    ScoreBacktest,
    SnapshotTaken,
)
from closeloop.services.project import Workspace
from closeloop.stats import discrimination as stats

DEFAULT_HORIZON_DAYS = 90.0
ALL = "all"
log = logging.getLogger("closeloop.health")
ProgressCallback = Callable[[str, int, int], None]  # score name, done, total


def scores(workspace: Workspace) -> HealthScoreList:
    """The project's health scores as defined (measures, weights, bands, segment variants)."""
    return HealthScoreList(scores=[_summary(s) for s in workspace.project.health_scores.values()])


def _summary(score: LoadedHealthScore) -> HealthScoreSummary:
    definition = score.definition
    return HealthScoreSummary(
        name=score.name,
        description=definition.description,
        poor_below=definition.bands.poor,
        concerning_below=definition.bands.concerning,
        measures=[
            HealthMeasureSummary(
                name=m.name,
                expression=m.definition.expression.strip(),
                kind="number" if m.number is not None else "boolean",
                weight=m.definition.weight,
                polarity=m.definition.polarity.value,
                range=list(m.definition.range) if m.definition.range is not None else None,
            )
            for m in score.measures
        ],
        segments=[
            HealthSegmentSummary(
                when=format_expression(segment.when),
                weights=dict(zip(_measure_names(score), weights, strict=True)),
            )
            for segment, weights in zip(score.segments, rule(score).variants, strict=True)
        ],
        file=score.file,
    )


def _measure_names(score: LoadedHealthScore) -> list[str]:
    return [measure.name for measure in score.measures]


def rule(score: LoadedHealthScore) -> analysis.ScoreRule:
    """How a loaded score is computed, for the analysis layer."""
    measures = tuple(
        analysis.MeasureRule(
            name=m.name,
            weight=m.definition.weight,
            higher_is_better=m.definition.polarity.value == "higher_is_better",
            low=m.definition.range[0] if m.definition.range is not None else None,
            high=m.definition.range[1] if m.definition.range is not None else None,
        )
        for m in score.measures
    )
    variants = tuple(
        tuple(segment.definition.weights.get(m.name, m.weight) for m in measures)
        for segment in score.segments
    )
    bands = score.definition.bands
    return analysis.ScoreRule(score.name, bands.poor, bands.concerning, measures, variants)


def _selected(workspace: Workspace, name: str | None) -> list[LoadedHealthScore]:
    project = workspace.project
    if name is not None:
        return [project.health_score(name)]
    if not project.health_scores:
        raise NotFoundError(
            "this project defines no health scores: define them in health.yaml "
            "(`closeloop init` writes an example; docs/health.md)"
        )
    return list(project.health_scores.values())


def _score_all(
    workspace: Workspace, score: LoadedHealthScore, as_of: datetime
) -> list[analysis.AccountScore]:
    values = measure_values(score, workspace.warehouse, as_of, workspace.project.catalog)
    return analysis.score_accounts(rule(score), values)


def _score_one(
    workspace: Workspace, score: LoadedHealthScore, account_id: str, as_of: datetime
) -> analysis.AccountScore | None:
    values = measure_values(score, workspace.warehouse, as_of, workspace.project.catalog)
    found = analysis.score_accounts(rule(score), values.filter(values.account_id == account_id))
    return found[0] if found else None


# -- show ----------------------------------------------------------------------------------------


def account_health(
    workspace: Workspace,
    account_id: str,
    at: datetime,
    *,
    since: datetime | None = None,
    score: str | None = None,
) -> AccountHealthReport:
    """Each score of one account as of ``at``: measure values, weights and contributions; with
    ``since``, the score then and the change of each measure's contribution (why it moved)."""
    if since is not None and since >= at:
        raise LocatedError(
            f"--since {since.isoformat()} is not before --at {at.isoformat()}",
            hint="give --since an earlier time than --at",
        )
    explained = []
    for loaded in _selected(workspace, score):
        now = _score_one(workspace, loaded, account_id, at)
        if now is None:
            raise NotFoundError(
                f"no account {account_id!r} as of {at.isoformat()}: check the id, or give a "
                "later --at"
            )
        before = _score_one(workspace, loaded, account_id, since) if since is not None else None
        explained.append(_explained(loaded, now, at, before, since))
    return AccountHealthReport(account_id=account_id, at=at, since=since, scores=explained)


def _explained(
    score: LoadedHealthScore,
    now: analysis.AccountScore,
    at: datetime,
    before: analysis.AccountScore | None,
    since: datetime | None,
) -> HealthExplained:
    changes = []
    change = None
    if before is not None:
        for part_now, part_before in zip(now.parts, before.parts, strict=True):
            changes.append(
                MeasureChange(
                    name=part_now.name,
                    value_before=part_before.value,
                    value_now=part_now.value,
                    contribution_before=part_before.contribution,
                    contribution_now=part_now.contribution,
                    change=part_now.contribution - part_before.contribution,
                )
            )
        changes.sort(key=lambda item: (-abs(item.change), item.name))
        if now.score is not None and before.score is not None:
            change = now.score - before.score
    return HealthExplained(
        now=_account_health(score, now, at),
        before=_account_health(score, before, since) if before and since else None,
        change=change,
        changes=changes,
    )


def _account_health(
    score: LoadedHealthScore, scored: analysis.AccountScore, at: datetime
) -> AccountHealth:
    variant = None
    if scored.variant >= 0:
        variant = format_expression(score.segments[scored.variant].when)
    return AccountHealth(
        score_name=score.name,
        account_id=scored.account_id,
        at=at,
        segment=scored.segment,
        variant=variant,
        score=scored.score,
        band=scored.band,
        missing=list(scored.missing),
        measures=[
            HealthMeasureValue(
                name=part.name,
                value=part.value,
                scaled=part.scaled,
                weight=part.weight,
                effective_weight=part.effective_weight,
                contribution=part.contribution,
                missing=part.missing,
            )
            for part in scored.parts
        ],
    )


# -- snapshots -----------------------------------------------------------------------------------


def snapshot_time(day: date) -> datetime:
    """The time the snapshot of ``day`` is computed as of: the day's start (UTC)."""
    return datetime.combine(day, time())


def snapshot(
    workspace: Workspace,
    at: datetime | None = None,
    *,
    score: str | None = None,
    on_progress: ProgressCallback | None = None,
) -> HealthSnapshot:
    """Take the snapshot of ``at``'s day (default today, UTC) for each score (or ``score``),
    replacing that day's rows if it was taken before."""
    computed_at = utc_now()
    day = (at or computed_at).date()
    as_of = snapshot_time(day)
    selected = _selected(workspace, score)
    taken = []
    for index, loaded in enumerate(selected):
        if on_progress is not None:
            on_progress(loaded.name, index, len(selected))
        scored = _score_all(workspace, loaded, as_of)
        rows = analysis.write_snapshot(workspace.warehouse, loaded.name, day, scored, computed_at)
        bands = {band: 0 for band in analysis.BANDS}
        for item in scored:
            if item.band is not None:
                bands[item.band] += 1
        taken.append(
            SnapshotTaken(
                score_name=loaded.name,
                day=day,
                accounts=rows,
                scored=sum(1 for item in scored if item.score is not None),
                bands=bands,
            )
        )
    if on_progress is not None:
        on_progress("", len(selected), len(selected))
    return HealthSnapshot(at=as_of, day=day, computed_at=computed_at, scores=taken)


def daily_snapshot(workspace: Workspace, now: datetime) -> HealthSnapshot | None:
    """The daemon's daily snapshot, after a tick: today's (``now``'s UTC day) for each score
    that has none yet. A score that fails is logged and skipped; it never stops the ticks, and
    the next cycle tries it again (its day is still missing). None when nothing was taken."""
    day = now.date()
    taken: list[HealthSnapshot] = []
    for loaded in workspace.project.health_scores.values():
        try:
            if analysis.snapshot_rows(workspace.warehouse, loaded.name, day) == 0:
                taken.append(snapshot(workspace, now, score=loaded.name))
        except Exception as error:  # any failure here must not stop the daemon's ticks
            log.warning("health snapshot of %r for %s failed: %s", loaded.name, day, error)
    if not taken:
        return None
    return HealthSnapshot(
        at=taken[0].at,
        day=day,
        computed_at=taken[0].computed_at,
        scores=[item for result in taken for item in result.scores],
    )


def trajectory(
    workspace: Workspace,
    account_id: str,
    start: date | datetime,
    end: date | datetime,
    score: str | None = None,
) -> list[HealthPoint]:
    """One account's snapshot history, ``start <= day <= end``, by score then day (empty when
    no snapshot was taken)."""
    first = start.date() if isinstance(start, datetime) else start
    last = end.date() if isinstance(end, datetime) else end
    names = [score] if score is not None else None
    return [
        HealthPoint(
            score_name=point.score_name,
            day=point.day,
            score=point.score,
            band=point.band,
        )
        for point in analysis.history(workspace.warehouse, account_id, first, last, names)
    ]


# -- backtest ------------------------------------------------------------------------------------


def backtest(
    workspace: Workspace,
    at: datetime,
    *,
    horizon_days: float = DEFAULT_HORIZON_DAYS,
    score: str | None = None,
) -> HealthBacktest:
    """Each score as of ``at`` (computed point in time, not read from snapshots) against churn
    and contraction in ``(at, at + horizon]`` of the accounts paying at ``at``: AUC with its
    interval, top-decile lift and calibration, overall and per segment."""
    if horizon_days <= 0:
        raise LocatedError(
            f"the horizon must be positive (got {horizon_days:g} days)", hint="e.g. --horizon 90d"
        )
    selected = _selected(workspace, score)
    outcomes = analysis.outcomes(workspace.warehouse, at, horizon_days)
    results = [
        _score_backtest(loaded, _score_all(workspace, loaded, at), outcomes) for loaded in selected
    ]
    end = at + timedelta(days=horizon_days)
    warnings = []
    latest = analysis.latest_data(workspace.warehouse)
    if latest is not None and latest < end:
        warnings.append(
            f"the horizon ends {end:%Y-%m-%d}, after the latest event ({latest:%Y-%m-%d}): "
            "churn after the data ends cannot be seen, and subscriptions that stop where the "
            "data stops look like churn; give an earlier --at or a shorter --horizon"
        )
    return HealthBacktest(
        at=at,
        horizon_days=horizon_days,
        end=end,
        accounts=len(outcomes),
        scores=results,
        warnings=warnings,
    )


def _score_backtest(
    loaded: LoadedHealthScore,
    scored: Sequence[analysis.AccountScore],
    outcomes: dict[str, analysis.Outcome],
) -> ScoreBacktest:
    paying = [(item, outcomes[item.account_id]) for item in scored if item.account_id in outcomes]
    kept = [(item, outcome) for item, outcome in paying if item.score is not None]
    unscored = len(outcomes) - len(kept)
    segments = sorted({item.segment for item, _ in kept if item.segment is not None})
    groups = [_group(ALL, kept)]
    groups += [_group(name, [p for p in kept if p[0].segment == name]) for name in segments]
    overall = groups[0]
    warnings = []
    for result in (overall.churn, overall.contraction):
        if result.events == 0:
            continue
        if result.auc_low is None or result.auc_high is None or result.auc_low <= 0.5:
            warnings.append(
                f"this score does not predict {result.outcome}: AUC {num(result.auc, 2)} "
                f"(95% {num(result.auc_low, 2)} to {num(result.auc_high, 2)}) includes 0.5, a "
                f"coin toss, over {result.events} accounts with {result.outcome}"
            )
    if unscored:
        warnings.append(
            f"{unscored} paying account(s) had no score (no measure had a value) and are left out"
        )
    return ScoreBacktest(
        score_name=loaded.name,
        auc=overall.churn.auc,
        auc_low=overall.churn.auc_low,
        auc_high=overall.churn.auc_high,
        unscored=unscored,
        groups=groups,
        by_band=_calibration(kept, [item.band or "" for item, _ in kept], list(analysis.BANDS)),
        by_decile=_deciles(kept),
        warnings=warnings,
    )


Pair = tuple[analysis.AccountScore, analysis.Outcome]


def _group(name: str, pairs: Sequence[Pair]) -> BacktestGroup:
    """Churn among every paying account of the group; contraction among those that did not
    churn (a churned account is neither a contraction nor a counter-example of one)."""
    retained = [(item, outcome) for item, outcome in pairs if not outcome.churned]
    return BacktestGroup(
        segment=name,
        n=len(pairs),
        churn=_discrimination("churn", pairs, [outcome.churned for _, outcome in pairs]),
        contraction=_discrimination(
            "contraction", retained, [outcome.contracted for _, outcome in retained]
        ),
    )


def _discrimination(outcome: str, pairs: Sequence[Pair], bad: Sequence[bool]) -> Discrimination:
    values = np.array([item.score for item, _ in pairs], dtype=float)
    flags = np.array(bad, dtype=bool)
    result = stats.auc(values[flags], values[~flags])
    events = int(flags.sum())
    return Discrimination(
        outcome=outcome,
        n=len(pairs),
        events=events,
        rate=events / len(pairs) if pairs else None,
        auc=result.auc,
        auc_low=result.low,
        auc_high=result.high,
        status=result.status,
        top_decile_lift=stats.top_decile_lift(values, flags),
    )


def _calibration(
    pairs: Sequence[Pair], labels: Sequence[str], order: list[str]
) -> list[CalibrationRow]:
    rows = []
    for label in order:
        members = [pair for pair, own in zip(pairs, labels, strict=True) if own == label]
        values = [item.score for item, _ in members if item.score is not None]
        rows.append(
            CalibrationRow(
                group=label,
                n=len(members),
                score_min=min(values) if values else None,
                score_max=max(values) if values else None,
                churn=_rate(sum(outcome.churned for _, outcome in members), len(members)),
                contraction=_rate(sum(outcome.contracted for _, outcome in members), len(members)),
            )
        )
    return rows


def _deciles(pairs: Sequence[Pair]) -> list[CalibrationRow]:
    groups = stats.decile_groups([item.score or 0.0 for item, _ in pairs])
    labels = [f"d{group + 1}" for group in groups]
    present = sorted({int(group) for group in groups})
    return _calibration(pairs, labels, [f"d{group + 1}" for group in present])


def _rate(events: int, n: int) -> OutcomeRate:
    found = stats.rate(events, n)
    return OutcomeRate(events=events, rate=found.rate, low=found.low, high=found.high)

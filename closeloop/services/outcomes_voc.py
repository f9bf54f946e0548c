"""Voice of the customer and the divergence alert as use cases returning schema models.

:func:`voc` answers "what is our NPS, CSAT and CES, and its trend?"; :func:`divergence` answers
"is satisfaction rising while net revenue retention is flat or falling?" (docs/metrics.md).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from scipy import stats as sps

from closeloop.analysis import voc as analysis
from closeloop.analysis.voc import GroupCounts, KindCounts, Reach, VocCounts
from closeloop.errors import ConfigurationError
from closeloop.schemas.options import DEFAULT_ALPHA as DEFAULT_ALPHA
from closeloop.schemas.options import DEFAULT_COMMENTS as DEFAULT_COMMENTS
from closeloop.schemas.options import DEFAULT_CSAT_MIN_RISE as DEFAULT_CSAT_MIN_RISE
from closeloop.schemas.options import DEFAULT_NPS_MIN_RISE as DEFAULT_NPS_MIN_RISE
from closeloop.schemas.options import DEFAULT_NRR_MAX_CHANGE as DEFAULT_NRR_MAX_CHANGE
from closeloop.schemas.options import DEFAULT_PERIODS as DEFAULT_PERIODS
from closeloop.schemas.voc import (
    CesDirection,
    CesValue,
    CsatValue,
    Divergence,
    DivergencePeriod,
    DivergenceRule,
    ExcludedScale,
    NpsValue,
    PeriodName,
    ResponseRate,
    Satisfaction,
    SurveyComment,
    Voc,
    VocGroup,
    VocThresholds,
)
from closeloop.services.outcomes_revenue import revenue
from closeloop.services.project import Workspace
from closeloop.stats import voc as stats

MAX_COMMENTS = 1000
PERIODS_PER_YEAR = {"month": 12, "quarter": 4}
MAX_TREND_PERIODS = 240  # 20 years of months: the trend's response rates are one query each
NRR_SOURCE = "closeloop outcomes revenue --period (endpoint method, default policy)"


def _check_window(start: datetime, end: datetime) -> None:
    if end <= start:
        raise ConfigurationError(
            f"--end ({end.isoformat()}) must be after --start ({start.isoformat()}): "
            "the window is [start, end)"
        )


def _check_period(period: str) -> PeriodName:
    if period not in ("month", "quarter"):
        raise ConfigurationError(f"--period {period!r}: choose month or quarter")
    return "month" if period == "month" else "quarter"


def _nps(counts: KindCounts) -> NpsValue:
    estimate = stats.nps_estimate(counts.promoters, counts.detractors, counts.n)
    return NpsValue(
        value=estimate.value,
        lower=estimate.lower,
        upper=estimate.upper,
        responses=counts.n,
        promoters=counts.promoters,
        passives=counts.n - counts.promoters - counts.detractors,
        detractors=counts.detractors,
    )


def _csat(counts: KindCounts) -> CsatValue:
    estimate = stats.share_estimate(counts.satisfied, counts.n)
    return CsatValue(
        value=estimate.value,
        lower=estimate.lower,
        upper=estimate.upper,
        responses=counts.n,
        satisfied=counts.satisfied,
    )


def _ces(counts: KindCounts, scale: tuple[float, float] | None) -> CesValue:
    if scale is None:
        mean = stats.Estimate(None, None, None)
    else:
        mean = stats.mean_estimate(counts.n, counts.total, counts.total_squares, scale)
    easy = stats.share_estimate(counts.easy, counts.n)
    return CesValue(
        value=mean.value,
        lower=mean.lower,
        upper=mean.upper,
        responses=counts.n,
        easy=counts.easy,
        easy_share=easy.value,
        easy_lower=easy.lower,
        easy_upper=easy.upper,
        scale_min=None if scale is None else scale[0],
        scale_max=None if scale is None else scale[1],
    )


def _level(group: GroupCounts, level: str, scale: tuple[float, float] | None) -> Satisfaction:
    empty = KindCounts()
    return Satisfaction(
        nps=_nps(group.counts.get(("nps", level), empty)),
        csat=_csat(group.counts.get(("csat", level), empty)),
        ces=_ces(group.counts.get(("ces", level), empty), scale),
    )


def _percent(part: int, whole: int) -> float | None:
    return 100 * part / whole if whole else None


def _rates(group: GroupCounts) -> list[ResponseRate]:
    rates = []
    for kind in analysis.KINDS:
        reach = group.reach.get(kind, Reach())
        rates.append(
            ResponseRate(
                kind=kind,
                accounts_active=reach.accounts_active,
                accounts_responding=reach.accounts_responding,
                account_response_rate=_percent(reach.accounts_responding, reach.accounts_active),
                people=reach.people,
                people_responding=reach.people_responding,
                people_response_rate=_percent(reach.people_responding, reach.people),
            )
        )
    return rates


def _group(group: GroupCounts, counts: VocCounts) -> VocGroup:
    assert group.start is not None and group.end is not None
    return VocGroup(
        key=group.key,
        start=group.start,
        end=group.end,
        respondents=_level(group, "respondent", counts.ces_scale),
        accounts=_level(group, "account", counts.ces_scale),
        response_rates=_rates(group),
    )


def voc(
    workspace: Workspace,
    start: datetime,
    end: datetime,
    *,
    period: str = "month",
    by: str | None = None,
    ces_direction: CesDirection = "lower_is_easier",
    comments: int = DEFAULT_COMMENTS,
) -> Voc:
    """NPS, CSAT and CES of the answers given in [start, end), at respondent and account level,
    with response rates, the trend per ``period``, segments by account attribute ``by`` (as of
    ``start``), the answers left out and the newest ``comments`` comments."""
    _check_window(start, end)
    chosen = _check_period(period)
    # Months touched by [start, end): the end's month counts only when the window reaches into it.
    months = (end.year - start.year) * 12 + end.month - start.month
    months += end > end.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if months / (1 if chosen == "month" else 3) > MAX_TREND_PERIODS:
        raise ConfigurationError(
            f"--start {start:%Y-%m-%d} to --end {end:%Y-%m-%d} spans more than "
            f"{MAX_TREND_PERIODS} {chosen}s of trend: choose a shorter window"
            + (" or --period quarter" if chosen == "month" else "")
        )
    if ces_direction not in ("lower_is_easier", "higher_is_easier"):
        raise ConfigurationError(
            f"--ces-direction {ces_direction!r}: choose lower_is_easier or higher_is_easier"
        )
    if not 0 <= comments <= MAX_COMMENTS:
        raise ConfigurationError(f"--comments {comments}: choose 0 to {MAX_COMMENTS}")
    counts = analysis.voc_counts(
        workspace.warehouse,
        start,
        end,
        period=chosen,
        by=by,
        direction=ces_direction,
        comments=comments,
    )
    headline = _level(counts.overall, "respondent", counts.ces_scale)
    return Voc(
        start=start,
        end=end,
        period=chosen,
        by=by,
        ces_direction=ces_direction,
        confidence=stats.CONFIDENCE,
        nps=headline.nps,
        csat=headline.csat,
        ces=headline.ces,
        account_level=_level(counts.overall, "account", counts.ces_scale),
        response_rates=_rates(counts.overall),
        trend=[_group(group, counts) for group in counts.trend],
        segments=[_group(group, counts) for group in counts.segments],
        excluded=[
            ExcludedScale(
                kind=item.kind,
                scale_min=item.scale_min,
                scale_max=item.scale_max,
                responses=item.responses,
                reason=item.reason,
            )
            for item in counts.excluded
        ],
        comments=[
            SurveyComment(
                response_id=row.response_id,
                account_id=row.account_id,
                person_id=row.person_id,
                kind=row.kind,
                score=row.score,
                responded_at=row.responded_at,
                comment=row.comment,
            )
            for row in counts.comments
        ],
        comments_total=counts.comments_total,
    )


def _per_year(value: float | None, period: PeriodName) -> float | None:
    return None if value is None else value * PERIODS_PER_YEAR[period]


EARLIEST_YEAR = 1900  # no revenue or survey data is older; dates before year 1 do not exist


def divergence(
    workspace: Workspace,
    end: datetime,
    *,
    periods: int = DEFAULT_PERIODS,
    period: str = "month",
    nps_min_rise: float = DEFAULT_NPS_MIN_RISE,
    csat_min_rise: float = DEFAULT_CSAT_MIN_RISE,
    nrr_max_change: float = DEFAULT_NRR_MAX_CHANGE,
    alpha: float = DEFAULT_ALPHA,
) -> Divergence:
    """Over the ``periods`` whole periods before ``end`` (rounded down to a period's start):
    NPS and CSAT per period (respondent level), NRR per period (``closeloop outcomes revenue``,
    endpoint method), their slopes per year, and whether satisfaction rose (slope at least the
    minimum rise *and* significantly above zero at one-sided ``alpha``) while NRR's slope stayed
    at or below ``nrr_max_change``."""
    chosen = _check_period(period)
    if not 2 <= periods <= 120:
        raise ConfigurationError(f"--periods {periods}: choose 2 to 120 (a slope needs two)")
    if not 0 < alpha < 1:
        raise ConfigurationError(f"--alpha {alpha}: choose a level between 0 and 1")
    step = 1 if chosen == "month" else 3
    # The last whole period ends where the period holding ``end`` starts.
    boundary = analysis.period_starts(end, end + timedelta(microseconds=1), chosen)[0]
    if boundary.year * 12 + boundary.month - 1 - step * periods < EARLIEST_YEAR * 12:
        raise ConfigurationError(
            f"--end {end:%Y-%m-%d} with {periods} {chosen}s would start before "
            f"{EARLIEST_YEAR}: choose a later end or fewer periods"
        )
    bounds = [
        (
            analysis.add_months(boundary, -step * (periods - i)),
            analysis.add_months(boundary, -step * (periods - i - 1)),
        )
        for i in range(periods)
    ]
    window_start, window_end = bounds[0][0], bounds[-1][1]
    counts = analysis.voc_counts(
        workspace.warehouse, window_start, window_end, period=chosen, comments=0
    )
    # NRR per period from the revenue outcome (endpoint method, default policy), so the alert
    # and `closeloop outcomes revenue --period` never disagree.
    rows = revenue(workspace, window_start.date(), window_end.date(), period=chosen).rows
    by_start = {row.period_start: row for row in rows}
    retention: list[tuple[float, float | None]] = []
    for first, _ in bounds:
        row = by_start.get(first.date())
        if row is None or row.nrr is None:
            retention.append((row.starting_mrr if row else 0.0, None))
        else:
            retention.append((row.starting_mrr, row.nrr))
    series = []
    nps_values: list[float | None] = []
    nps_variances: list[float | None] = []
    csat_values: list[float | None] = []
    csat_variances: list[float | None] = []
    nrr_values: list[float | None] = []
    for (first, _), group, (starting, ratio) in zip(bounds, counts.trend, retention, strict=True):
        nps_counts = group.counts.get(("nps", "respondent"), KindCounts())
        csat_counts = group.counts.get(("csat", "respondent"), KindCounts())
        nps = _nps(nps_counts)
        csat = _csat(csat_counts)
        nrr = None if ratio is None else 100 * ratio
        nps_values.append(nps.value)
        nps_variances.append(
            stats.nps_variance(nps_counts.promoters, nps_counts.detractors, nps_counts.n)
        )
        csat_values.append(csat.value)
        csat_variances.append(stats.share_variance(csat_counts.satisfied, csat_counts.n))
        nrr_values.append(nrr)
        assert group.end is not None
        series.append(
            DivergencePeriod(
                key=analysis.period_label(first, chosen),
                start=first,
                end=group.end,
                nps=nps.value,
                nps_responses=nps.responses,
                csat=csat.value,
                csat_responses=csat.responses,
                nrr=nrr,
                starting_mrr=starting,
                retained_mrr=None if ratio is None else round(ratio * starting, 6),
            )
        )
    nrr_slope = _per_year(stats.slope(nrr_values), chosen)
    critical = float(sps.norm.isf(alpha))
    rules = []
    slopes = {}
    for name, label, values, variances, minimum, unit in (
        ("nps_rising_nrr_flat", "NPS", nps_values, nps_variances, nps_min_rise, "points"),
        ("csat_rising_nrr_flat", "CSAT", csat_values, csat_variances, csat_min_rise, "pp"),
    ):
        estimate, error = stats.weighted_slope(values, variances)
        per_year = _per_year(estimate, chosen)
        slopes[label] = per_year
        z = estimate / error if estimate is not None and error else None
        rising = per_year is not None and z is not None and per_year >= minimum and z >= critical
        flat = nrr_slope is not None and nrr_slope <= nrr_max_change
        fired = rising and flat
        explanation = (
            f"{label} slope {_text(per_year)} {unit}/year (z {_text(z)}; rising needs at least "
            f"{minimum:g} and z >= {critical:.2f}); NRR slope {_text(nrr_slope)} pp/year "
            f"(flat or falling at or below {nrr_max_change:g})"
        )
        rules.append(
            DivergenceRule(
                name=name,
                fired=fired,
                satisfaction_slope=per_year,
                satisfaction_slope_z=z,
                nrr_slope=nrr_slope,
                explanation=explanation,
            )
        )
    return Divergence(
        fired=any(rule.fired for rule in rules),
        start=window_start,
        end=window_end,
        thresholds=VocThresholds(
            periods=periods,
            period=chosen,
            nps_min_rise=nps_min_rise,
            csat_min_rise=csat_min_rise,
            nrr_max_change=nrr_max_change,
            alpha=alpha,
        ),
        nrr_source=NRR_SOURCE,
        nps_slope=slopes["NPS"],
        csat_slope=slopes["CSAT"],
        nrr_slope=nrr_slope,
        rules=rules,
        series=series,
    )


def _text(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:+.1f}"

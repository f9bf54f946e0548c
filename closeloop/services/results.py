"""Builders: the analysis results (dataclasses) as the public models of :mod:`closeloop.schemas`.

One function per result type; ``analysis`` computes, these shape, every surface dumps the model.
A number that does not exist (NaN, infinity) becomes null through :data:`closeloop.schemas.Number`.
"""

from __future__ import annotations

from collections.abc import Sequence

from closeloop.analysis import job_report as analysis_report
from closeloop.analysis import matching, measurement, revenue_value
from closeloop.present.report_view import impact_line
from closeloop.schemas.job_report import (
    ArmCounts,
    Deliveries,
    Guardrail,
    JobReport,
    LaunchPlan,
    ValueOutcome,
    Verdict,
    VersionCount,
)
from closeloop.schemas.measurement import (
    Arm,
    BalanceRow,
    Bayesian,
    Comparison,
    CompetingOutcome,
    CovariateAdjusted,
    EntryWeek,
    EntryWeeks,
    Estimate,
    HeterogeneityTest,
    LogRank,
    MatchCounts,
    MatchedComparison,
    MatchedCovariate,
    Measurement,
    MeasureSource,
    SampleRatio,
    Segment,
    SurvivalCurve,
    TwoPart,
    ValueCap,
)
from closeloop.schemas.revenue import (
    RevenueArm,
    RevenueComparison,
    RevenueHorizon,
    RevenueResult,
    RevenueValue,
)
from closeloop.stats import ComparisonResult, Interval, KaplanMeierResult

__all__ = [
    "job_report_model",
    "matched_model",
    "measurement_model",
    "revenue_model",
]


# -- measurement -----------------------------------------------------------------------------------


def measurement_model(
    result: measurement.Measurement,
    *,
    warnings: Sequence[str] = (),
    source: MeasureSource | None = None,
    matched: Sequence[matching.MatchedComparison] | None = None,
) -> Measurement:
    """The measurement in the format of docs/measure-format.md.

    ``warnings`` (about the input) come before the measurement's own; ``source`` says where the
    units came from (``closeloop measure``); ``matched`` holds its ``--match-on`` comparisons
    (None: not asked for, or none).
    """
    options = result.options
    srm = result.srm
    cap = result.value_cap
    return Measurement(
        horizon_days=options.horizon_days,
        control=options.control,
        as_of=options.as_of.isoformat() if options.as_of is not None else None,
        running=result.running,
        alpha=options.alpha,
        looks_while_running=options.looks_while_running,
        running_alpha=options.running_alpha,
        final_alpha=options.final_alpha,
        status=result.status.value,
        source=source,
        arms={name: _arm(arm) for name, arm in result.arms.items()},
        pooled=_arm(result.pooled) if result.pooled is not None else None,
        comparisons=[_comparison(comparison) for comparison in result.comparisons],
        srm=(
            SampleRatio(chi2=srm.chi2, p_value=srm.p_value, mismatch=srm.mismatch)
            if srm is not None
            else None
        ),
        segments=[_segment(segment) for segment in result.segments],
        heterogeneity=[
            HeterogeneityTest(
                column=test.column,
                arm=test.arm,
                q=test.q,
                df=test.df,
                p_value=test.p_value,
                scale=test.scale,
            )
            for test in result.heterogeneity
        ],
        value_cap=(
            ValueCap(percentile=cap.percentile, cap=cap.cap, capped_units=cap.capped)
            if cap is not None
            else None
        ),
        by_entry_week=_entry_weeks(result.by_entry_week),
        competing=[
            CompetingOutcome(
                arm=outcome.arm,
                control=outcome.control,
                goal=_estimate(outcome.goal),
                goal_status=outcome.goal.status.value,
                churn=_estimate(outcome.churn),
                churn_status=outcome.churn.status.value,
                goal_incidence=dict(outcome.goal_incidence),
                churn_incidence=dict(outcome.churn_incidence),
            )
            for outcome in result.competing
        ],
        warnings=[*warnings, *result.warnings],
        matched=[matched_model(m) for m in matched] if matched else None,
        curves={
            name: _curve(arm.curve, options.horizon_days)
            for name, arm in result.arms.items()
            if arm.risk_table.times
        },
    )


def _arm(arm: measurement.ArmResult) -> Arm:
    return Arm(
        n=arm.n,
        matured=arm.matured,
        completed=arm.completed,
        completion_rate=arm.completion_rate,
        mean_value=arm.mean_value,
        median_time_to_goal=arm.median_time_to_goal,
        median_time_to_goal_ci=_interval(arm.curve.median_ci),
        km_completion_at_horizon=arm.km_completion_at_horizon,
        completion_at={f"{day:g}": share for day, share in arm.completion_at.items()},
        rmst=arm.rmst,
        conditional_mean_days=arm.conditional_mean_days,
        conditional_median_days=arm.conditional_median_days,
    )


def _curve(curve: KaplanMeierResult, horizon_days: float) -> SurvivalCurve:
    kept = [index for index, time in enumerate(curve.times) if time <= horizon_days]
    return SurvivalCurve(
        days=[curve.times[index] for index in kept],
        completed=[1.0 - curve.survival[index] for index in kept],
        completed_low=[1.0 - curve.ci_upper[index] for index in kept],
        completed_high=[1.0 - curve.ci_lower[index] for index in kept],
    )


def _comparison(comparison: measurement.Comparison) -> Comparison:
    time_to_goal = comparison.metric == measurement.TIME_TO_GOAL
    decisive = comparison.decisive
    adjusted = comparison.covariate_adjusted
    bayesian = comparison.bayesian
    two_part = comparison.two_part
    if comparison.adjusted is not None:
        decided_by = "holm_adjusted"
    elif comparison.sequential is not None and comparison.unadjusted is comparison.sequential:
        decided_by = "always_valid"
    else:
        decided_by = "fixed_horizon"
    return Comparison(
        arm=comparison.arm,
        control=comparison.control,
        metric=comparison.metric,
        status=decisive.status.value,
        message=decisive.message,
        absolute=None if time_to_goal else _estimate(comparison.absolute),
        relative=_optional(comparison.relative),
        sequential=_optional(comparison.sequential),
        cuped=comparison.cuped if comparison.metric == measurement.VALUE else None,
        running=comparison.running,
        family=comparison.family,
        p_value_holm=comparison.adjusted.p_value if comparison.adjusted is not None else None,
        bayesian=(
            Bayesian(
                probability_better=bayesian.probability_better,
                expected_loss_treatment=bayesian.expected_loss_treatment,
                expected_loss_control=bayesian.expected_loss_control,
                credible_interval=_interval(bayesian.credible_interval),
                prior=bayesian.prior,
            )
            if bayesian is not None
            else None
        ),
        two_part=(
            TwoPart(
                share=_estimate(two_part.share),
                mean_among_positive=_estimate(two_part.mean_among_positive),
                overall=_estimate(two_part.overall),
            )
            if two_part is not None
            else None
        ),
        covariate_adjusted=(
            CovariateAdjusted(
                estimate=adjusted.result.estimate,
                ci=_interval(adjusted.result.ci),
                p_value=adjusted.result.p_value,
                variance_ratio=adjusted.variance_ratio,
                covariates=[comparison.covariate_names[index] for index in adjusted.kept],
                message=adjusted.result.message,
                status=adjusted.result.status.value,
            )
            if adjusted is not None
            else None
        ),
        rmst_difference=_estimate(comparison.absolute) if time_to_goal else None,
        logrank=(
            LogRank(chi2=comparison.logrank.chi2, p_value=comparison.logrank.p_value)
            if comparison.logrank is not None
            else None
        ),
        decided_by=decided_by,
        decisive=_estimate(decisive),
    )


def _segment(segment: measurement.SegmentLift) -> Segment:
    control, arm = segment.control_stat, segment.arm_stat
    return Segment(
        column=segment.column,
        segment=segment.segment,
        arm=segment.arm,
        control=segment.control,
        n_control=control.n,
        n_arm=arm.n,
        rate_control=_rate(control.n, control.successes),
        rate_arm=_rate(arm.n, arm.successes),
        lift=_estimate(segment.lift),
        p_value_bh=segment.p_value_bh,
        p_value_holm=segment.p_value_holm,
        adjusted_ci=_interval(segment.adjusted_ci) if segment.adjusted_ci is not None else None,
        in_family=segment.in_family,
        selected=segment.selected,
        sequential=_optional(segment.sequential),
        small=segment.small,
    )


def _entry_weeks(weeks: measurement.EntryWeeks | None) -> EntryWeeks | None:
    if weeks is None:
        return None
    return EntryWeeks(
        arm=weeks.arm,
        weeks=[
            EntryWeek(
                week=week.week.date().isoformat(),
                n_control=week.control.n,
                n_arm=week.treated.n,
                rate_control=_rate(week.control.n, week.control.successes),
                rate_arm=_rate(week.treated.n, week.treated.successes),
                lift=_estimate(week.lift),
                status=week.lift.status.value,
            )
            for week in weeks.weeks
        ],
        trend=_optional(weeks.trend),
    )


def _estimate(result: ComparisonResult) -> Estimate:
    return Estimate(estimate=result.estimate, ci=_interval(result.ci), p_value=result.p_value)


def _optional(result: ComparisonResult | None) -> Estimate | None:
    return _estimate(result) if result is not None else None


def _interval(interval: Interval) -> tuple[float, float]:
    return (interval.lower, interval.upper)


def _rate(n: int, successes: int) -> float | None:
    return successes / n if n else None


# -- matched comparison ----------------------------------------------------------------------------


def matched_model(matched: matching.MatchedComparison) -> MatchedComparison:
    """A matched comparison (``matched[]`` of docs/measure-format.md)."""
    counts = matched.counts
    return MatchedComparison(
        estimand=matched.estimand,
        arm=matched.treated,
        control=matched.comparison,
        status=matched.status.value,
        covariates=[
            MatchedCovariate(
                name=covariate.name,
                cutpoints=list(covariate.cutpoints) if covariate.cutpoints is not None else None,
            )
            for covariate in matched.covariates
        ],
        completion=_estimate(matched.completion),
        naive_completion=_estimate(matched.naive_completion),
        treated_completion_rate=matched.treated_completion_rate,
        control_completion_rate=matched.comparison_completion_rate,
        value=_optional(matched.value),
        naive_value=_optional(matched.naive_value),
        counts=MatchCounts(
            treated_matched=counts.treated_matched,
            treated_pruned=counts.treated_pruned,
            control_matched=counts.control_matched,
            control_pruned=counts.control_pruned,
            strata=counts.strata,
            matched_strata=counts.matched_strata,
        ),
        balance=[
            BalanceRow(
                covariate=row.covariate,
                level=row.level,
                treated_before=row.treated_before,
                control_before=row.control_before,
                smd_before=row.smd_before,
                treated_after=row.treated_after,
                control_after=row.control_after,
                smd_after=row.smd_after,
            )
            for row in matched.balance
        ],
        warnings=list(matched.warnings),
        message=matched.completion.message,
    )


# -- revenue value ---------------------------------------------------------------------------------


def revenue_model(value: revenue_value.RevenueValue) -> RevenueValue:
    """A job's revenue value: retention, NRR and MRR change per arm at each horizon."""
    return RevenueValue(
        as_of=value.as_of.isoformat(),
        control=value.control,
        currency_note=value.currency_note,
        no_mrr_at_entry_note=value.no_mrr_at_entry_note,
        warnings=list(value.warnings),
        horizons=[
            RevenueHorizon(
                days=horizon.days,
                matured=horizon.matured,
                arms={name: _revenue_arm(arm) for name, arm in horizon.arms.items()},
                variants={name: _revenue_arm(arm) for name, arm in horizon.variants.items()},
                comparison=_revenue_comparison(horizon.comparison),
                variant_comparisons=[_revenue_comparison(c) for c in horizon.variant_comparisons],
                warnings=list(horizon.warnings),
            )
            for horizon in value.horizons
        ],
    )


def _revenue_arm(arm: revenue_value.RevenueArm) -> RevenueArm:
    return RevenueArm(
        enrolled=arm.enrolled,
        matured=arm.matured,
        paying_at_entry=arm.sums.paying,
        retained=arm.sums.retained,
        mrr_start_total=arm.mrr_start_total,
        mrr_end_total=arm.mrr_end_total,
        retention=arm.retention,
        nrr=arm.nrr,
        mean_mrr_change=arm.mean_change,
        mean_expansion=arm.mean_expansion,
        mean_contraction=arm.mean_contraction,
    )


def _revenue_comparison(comparison: revenue_value.RevenueComparison) -> RevenueComparison:
    return RevenueComparison(
        arm=comparison.arm,
        control=comparison.control,
        status=comparison.status.value,
        retention_difference=_revenue_result(comparison.retention),
        nrr_difference=_revenue_result(comparison.nrr),
        mrr_change_difference=_revenue_result(comparison.mrr_change),
        expansion_difference=_revenue_result(comparison.expansion),
        contraction_difference=_revenue_result(comparison.contraction),
        treated_accounts=comparison.treated_accounts,
        added_mrr=comparison.added_mrr,
        added_mrr_ci=_interval(comparison.added_mrr_ci),
        added_arr=comparison.added_arr,
        added_arr_ci=_interval(comparison.added_arr_ci),
    )


def _revenue_result(result: ComparisonResult) -> RevenueResult:
    return RevenueResult(
        estimate=result.estimate,
        ci=_interval(result.ci),
        se=result.se,
        p_value=result.p_value,
        status=result.status.value,
        message=result.message,
    )


# -- job report ------------------------------------------------------------------------------------


def job_report_model(
    report: analysis_report.JobReport, *, warnings: Sequence[str] | None = None
) -> JobReport:
    """The job report: counts, deliveries, versions, verdict, then its measurements.

    ``warnings`` replaces the report's own (a surface adds, say, data freshness to them).
    """
    job_measurement = measurement_model(report.measurement)
    revenue = revenue_model(report.revenue) if report.revenue is not None else None
    plan = report.plan
    outcome = report.value_outcome
    return JobReport(
        job_name=report.job_name,
        as_of=report.as_of.isoformat(),
        horizon_days=report.horizon_days,
        holdout_fraction=report.holdout_fraction,
        status=report.status.value,
        verdict=_verdict(report, revenue),
        plan=(
            LaunchPlan(
                units=plan.units, baseline=plan.baseline, relative_effect=plan.relative_effect
            )
            if plan is not None
            else None
        ),
        warnings=list(report.warnings if warnings is None else warnings),
        arms={name: _counts(summary) for name, summary in report.arms.items()},
        deliveries={
            arm: Deliveries(
                units=deliveries.units,
                units_reached=deliveries.units_reached,
                messages=dict(deliveries.by_status),
            )
            for arm, deliveries in report.deliveries.items()
        },
        versions=[
            VersionCount(version=version, enrollments=count) for version, count in report.versions
        ],
        variants={name: _counts(summary) for name, summary in report.variants.items()},
        srm=job_measurement.srm,
        measurement=job_measurement,
        matched=matched_model(report.matched) if report.matched is not None else None,
        revenue_value=revenue,
        variant_measurement=(
            measurement_model(report.variant_measurement)
            if report.variant_measurement is not None
            else None
        ),
        value_outcome=(
            ValueOutcome(event=outcome.event, covariate_days=outcome.covariate_days)
            if outcome is not None
            else None
        ),
    )


def _counts(summary: analysis_report.ArmSummary) -> ArmCounts:
    return ArmCounts(
        entered=summary.entered,
        completed=summary.completed,
        exited=summary.exited,
        exited_by_reason=dict(summary.exited_by_reason),
        active=summary.active,
    )


def _verdict(report: analysis_report.JobReport, revenue: RevenueValue | None) -> Verdict | None:
    verdict = report.verdict
    if verdict is None:
        return None
    return Verdict(
        decision=verdict.decision.value,
        words=verdict.words,
        summary=verdict.summary,
        reasons=list(verdict.reasons),
        guardrails=[
            Guardrail(name=g.name, state=g.state.value, detail=g.detail) for g in verdict.guardrails
        ],
        impact=impact_line(revenue),
    )

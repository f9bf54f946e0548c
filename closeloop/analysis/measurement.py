"""Measuring an intervention from its units: arms, comparisons, time to goal, value, segments.

One function, :func:`measure_units`, serves the job report (units are a job's enrollments) and
``closeloop measure`` (units come from a file), so both give the same numbers for the same units.

The units are an Ibis table with one row per unit: ``unit_id``, ``arm``, ``entered_at`` and
``goal_at`` (the first time the goal was reached at or after entry, or null), optionally ``value``
(a numeric outcome already summed over the horizon), a pre-entry ``covariate`` for CUPED, and any
pre-entry columns to segment by. Everything per unit is aggregated in the warehouse; Python only
sees counts, sums and Kaplan–Meier risk tables.

Estimands and rules (docs/methods.md):

- A unit *completes* when its goal falls in ``[entered_at, entered_at + horizon]``. The completion
  rate, the value and the segment lifts use *matured* units only (their whole horizon lies before
  ``as_of``), intention to treat: every unit counts in the arm it was assigned.
- Time to goal uses every unit: reaching the goal is the event, and a unit is censored at the
  horizon or at ``as_of``, whichever comes first. Times are counted in whole hours (rounded up).
- While some units have not matured, the job is *running*: the completion and value lifts and each
  segment's lift also carry an always-valid confidence sequence, and the status follows it, so
  looking every day is safe. Time to goal has no sequential version: read it once matured.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import ibis
import ibis.expr.types as ir
from scipy import stats as sps

from closeloop.errors import ConfigurationError
from closeloop.stats import (
    ComparisonResult,
    Interval,
    KaplanMeierResult,
    LogRankResult,
    ProportionStatistic,
    RegressionAdjustedStatistic,
    RiskTable,
    SampleMeanStatistic,
    SrmResult,
    Status,
    adjust_p_values,
    confidence_sequence,
    cuped_test,
    kaplan_meier,
    logrank_test,
    lower_is_better,
    proportion_test,
    restricted_mean,
    rmst_difference,
    srm_test,
    welch_test,
)

SMALL_SEGMENT = 50  # units per arm; a smaller segment is shown but flagged, not ranked
MINIMUM_UNITS = 20  # matured units per arm before a comparison is called at all
CHECKPOINTS = (7.0, 14.0, 30.0)
SECONDS_PER_DAY = 86_400.0
COMPLETION_RATE = "completion_rate"
VALUE = "value"
TIME_TO_GOAL = "time_to_goal"
NO_SEGMENT = "(none)"


@dataclass(frozen=True)
class MeasureOptions:
    """How to measure: the horizon, the control arm, the analysis time and the extras to compute.

    ``as_of`` None means every unit has matured (data from an intervention run elsewhere).
    ``weights`` is the configured split by arm for the sample-ratio check (None: no check).
    ``covariate`` names a pre-entry numeric column for CUPED on the value outcome.
    """

    horizon_days: float
    control: str
    as_of: datetime | None = None
    weights: Mapping[str, float] | None = None
    segment_by: tuple[str, ...] = ()
    value: bool = False
    covariate: str | None = None
    checkpoints: tuple[float, ...] = CHECKPOINTS
    alpha: float = 0.05
    pairwise: bool = True
    sequential_tuning: float | None = None  # N* of the confidence sequence (default: units seen)

    def __post_init__(self) -> None:
        if not self.horizon_days > 0:
            raise ValueError(f"the horizon must be above 0 days, got {self.horizon_days}")
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must be between 0 and 1, got {self.alpha}")


@dataclass(frozen=True)
class ArmResult:
    """One arm: sizes, completion within the horizon, value, and its time-to-goal curve."""

    arm: str
    n: int  # every unit assigned to the arm
    matured: int  # units whose whole horizon has passed
    completed: int  # matured units that reached the goal within the horizon
    reached_so_far: int  # units of any maturity that reached it within the horizon so far
    value: SampleMeanStatistic | None
    curve: KaplanMeierResult
    risk_table: RiskTable
    completion_at: dict[float, float]  # checkpoint (days, within the horizon) -> 1 - S(t)
    km_completion_at_horizon: float | None
    rmst: float | None  # restricted mean time to goal over the horizon, days
    rmst_se: float | None
    conditional_mean_days: float | None  # among units that reached the goal (conditional!)
    conditional_median_days: float | None

    @property
    def completion_rate(self) -> float | None:
        return self.completed / self.matured if self.matured else None

    @property
    def mean_value(self) -> float | None:
        return self.value.mean if self.value is not None and self.value.n else None

    @property
    def median_time_to_goal(self) -> float | None:
        return self.curve.median


@dataclass(frozen=True)
class Comparison:
    """One arm against another on one metric (arm minus control)."""

    arm: str
    control: str
    metric: str
    absolute: ComparisonResult
    relative: ComparisonResult | None = None
    sequential: ComparisonResult | None = None  # always-valid, while the job runs
    cuped: bool = False
    logrank: LogRankResult | None = None

    @property
    def decisive(self) -> ComparisonResult:
        """The result a status is read from: the confidence sequence while running."""
        return self.sequential if self.sequential is not None else self.absolute


@dataclass(frozen=True)
class SegmentLift:
    """An arm against the control within one segment (one value of one pre-entry column)."""

    column: str
    segment: str
    arm: str
    control: str
    control_stat: ProportionStatistic
    arm_stat: ProportionStatistic
    lift: ComparisonResult
    p_value_bh: float  # Benjamini–Hochberg, over every segment and arm of the column
    p_value_holm: float
    adjusted_ci: Interval  # false-coverage-rate adjusted (Benjamini–Yekutieli), pairs with BH
    small: bool
    # While the job runs: an always-valid sequence at the FCR-adjusted level, to read instead.
    sequential: ComparisonResult | None = None


@dataclass(frozen=True)
class Heterogeneity:
    """Cochran's Q: do the segment lifts of ``arm`` differ more than chance would explain?"""

    column: str
    arm: str
    q: float
    df: int
    p_value: float


@dataclass(frozen=True)
class Measurement:
    options: MeasureOptions
    arms: dict[str, ArmResult]
    comparisons: list[Comparison]
    srm: SrmResult | None
    segments: list[SegmentLift]
    heterogeneity: list[Heterogeneity]
    running: bool
    status: Status
    warnings: list[str] = field(default_factory=list)

    def comparison(self, arm: str, metric: str, control: str | None = None) -> Comparison | None:
        wanted = control or self.options.control
        for comparison in self.comparisons:
            if (comparison.arm, comparison.control, comparison.metric) == (arm, wanted, metric):
                return comparison
        return None

    @property
    def treated_arms(self) -> list[str]:
        return [arm for arm in self.arms if arm != self.options.control]


def prepare_units(units: ir.Table, options: MeasureOptions) -> ir.Table:
    """Per-unit facts, computed in the warehouse: matured, completed, hours to goal or censoring."""
    horizon_s = options.horizon_days * SECONDS_PER_DAY
    # Timestamps are compared as timestamps (epoch seconds drop fractions on some backends, so a
    # goal a split second after the horizon would count); only durations go through seconds.
    horizon_end = units.entered_at + ibis.interval(seconds=round(horizon_s))
    entered_s = units.entered_at.epoch_seconds()
    if options.as_of is None:
        observed_until = horizon_end
        matured = ibis.literal(True)
    else:
        as_of = ibis.timestamp(options.as_of)
        observed_until = ibis.ifelse(horizon_end <= as_of, horizon_end, as_of)
        matured = horizon_end <= as_of
    goal = units.goal_at
    completed = goal.notnull() & (goal >= units.entered_at) & (goal <= observed_until)
    goal_s = goal.epoch_seconds()
    end_s = ibis.ifelse(completed, goal_s, observed_until.epoch_seconds())
    extra = {}
    if options.value:
        extra["value"] = units.value.cast("float64").fill_null(0.0)
    if options.covariate is not None:
        extra["covariate"] = units[options.covariate].cast("float64").fill_null(0.0)
    for column in options.segment_by:
        extra[f"segment__{column}"] = units[column].cast("string").fill_null(NO_SEGMENT)
    return units.select(
        "arm",
        is_matured=matured,
        is_completed=completed,
        hours=((end_s - entered_s) / 3600.0).ceil().cast("int64"),
        days_to_goal=ibis.ifelse(completed, (goal_s - entered_s) / SECONDS_PER_DAY, ibis.null()),
        **extra,
    )


def measure_units(units: ir.Table, options: MeasureOptions) -> Measurement:
    """Measure ``units`` (see the module docstring for the columns) as ``options`` say."""
    facts = prepare_units(units, options)
    arms = _arms(facts, options)
    warnings: list[str] = []
    for expected in (options.control, *(options.weights or {})):
        if expected not in arms:
            warnings.append(f"no unit is in the {expected!r} arm yet")
            arms[expected] = _empty_arm(expected, options)
    arms = dict(sorted(arms.items(), key=lambda item: _arm_order(item[0], options.control)))
    running = any(arm.matured < arm.n for arm in arms.values())
    comparisons = _with_cuped(facts, options, _comparisons(arms, options, running))
    srm = _srm(arms, options)
    segments, heterogeneity = _segments(facts, arms, options, running)
    if srm is not None and srm.mismatch:
        warnings.append(
            f"sample ratio mismatch (chi2={srm.chi2:.1f}, p={srm.p_value:.2g}): the arms are not "
            "split as configured; check for units lost or added outside the randomization before "
            "trusting any lift"
        )
    immature = sum(arm.n - arm.matured for arm in arms.values())
    if immature:
        warnings.append(
            f"{immature} unit(s) have not had their full {options.horizon_days:g} days yet: they "
            "are in the time-to-goal curves but not in the completion and value lifts, and the "
            "intervals are always-valid confidence sequences until every unit has matured"
        )
    small = sorted({(s.column, s.segment) for s in segments if s.small})
    if small:
        listed = ", ".join(f"{column}={segment}" for column, segment in small)
        warnings.append(
            f"segments with fewer than {SMALL_SEGMENT} units in an arm are shown, not ranked: "
            f"{listed}"
        )
    return Measurement(
        options=options,
        arms=arms,
        comparisons=comparisons,
        srm=srm,
        segments=segments,
        heterogeneity=heterogeneity,
        running=running,
        status=_status(arms, comparisons, srm, options),
        warnings=warnings,
    )


# -- arms ------------------------------------------------------------------------------------------


def _arms(facts: ir.Table, options: MeasureOptions) -> dict[str, ArmResult]:
    matured = facts.is_matured
    metrics: dict[str, ir.Value] = {
        "n": facts.count(),
        "matured": matured.sum(),
        "completed": (matured & facts.is_completed).sum(),
        "reached": facts.is_completed.sum(),
        "mean_days": facts.days_to_goal.mean(),
        "median_days": facts.days_to_goal.median(),
    }
    if options.value:
        value = ibis.ifelse(matured, facts.value, 0.0)
        metrics["value_sum"] = value.sum()
        metrics["value_sum_squares"] = (value * value).sum()
    rows = facts.group_by("arm").aggregate(**metrics).to_pyarrow().to_pylist()
    risk_rows = (
        facts.group_by(["arm", "hours", "is_completed"])
        .aggregate(count=facts.count())
        .to_pyarrow()
        .to_pylist()
    )
    counts: dict[str, list[tuple[float, bool, int]]] = {}
    for row in risk_rows:
        counts.setdefault(row["arm"], []).append(
            (max(row["hours"], 0) / 24.0, bool(row["is_completed"]), int(row["count"]))
        )
    arms: dict[str, ArmResult] = {}
    for row in sorted(rows, key=lambda r: _arm_order(r["arm"], options.control)):
        arm = str(row["arm"])
        table = RiskTable.from_counts(counts.get(arm, []))
        curve = kaplan_meier(table, alpha=options.alpha)
        rmst = restricted_mean(table, options.horizon_days) if table.times else None
        matured_n = int(row["matured"] or 0)
        value = (
            SampleMeanStatistic(
                matured_n, float(row["value_sum"] or 0.0), float(row["value_sum_squares"] or 0.0)
            )
            if options.value
            else None
        )
        arms[arm] = ArmResult(
            arm=arm,
            n=int(row["n"]),
            matured=matured_n,
            completed=int(row["completed"] or 0),
            reached_so_far=int(row["reached"] or 0),
            value=value,
            curve=curve,
            risk_table=table,
            completion_at={
                float(t): 1.0 - curve.survival_at(t)
                for t in options.checkpoints
                if t <= options.horizon_days
            },
            km_completion_at_horizon=(
                1.0 - curve.survival_at(options.horizon_days) if table.times else None
            ),
            rmst=rmst[0] if rmst is not None else None,
            rmst_se=math.sqrt(rmst[1]) if rmst is not None and math.isfinite(rmst[1]) else None,
            conditional_mean_days=_finite(row["mean_days"]),
            conditional_median_days=_finite(row["median_days"]),
        )
    return arms


def _empty_arm(arm: str, options: MeasureOptions) -> ArmResult:
    table = RiskTable.from_counts([])
    return ArmResult(
        arm=arm,
        n=0,
        matured=0,
        completed=0,
        reached_so_far=0,
        value=SampleMeanStatistic(0, 0.0, 0.0) if options.value else None,
        curve=kaplan_meier(table),
        risk_table=table,
        completion_at={},
        km_completion_at_horizon=None,
        rmst=None,
        rmst_se=None,
        conditional_mean_days=None,
        conditional_median_days=None,
    )


def _arm_order(arm: str, control: str) -> tuple[int, str]:
    return (0 if arm == control else 1, arm)


# -- comparisons -----------------------------------------------------------------------------------


def _comparisons(
    arms: dict[str, ArmResult], options: MeasureOptions, running: bool
) -> list[Comparison]:
    treated = [arm for arm in arms if arm != options.control]
    pairs = [(arm, options.control) for arm in treated]
    if options.pairwise:
        pairs += [(b, a) for i, a in enumerate(treated) for b in treated[i + 1 :]]
    tuning = options.sequential_tuning or max(sum(a.n for a in arms.values()), 1)
    result: list[Comparison] = []
    for arm_name, control_name in pairs:
        arm, base = arms[arm_name], arms[control_name]
        result.append(_completion(arm, base, options, running, tuning))
        if options.value:
            result.append(_value(arm, base, options, running, tuning))
        result.append(_time_to_goal(arm, base, options))
    return result


def _proportion(arm: ArmResult) -> ProportionStatistic:
    return ProportionStatistic(n=arm.matured, successes=arm.completed)


def _completion(
    arm: ArmResult, base: ArmResult, options: MeasureOptions, running: bool, tuning: float
) -> Comparison:
    a, b = _proportion(arm), _proportion(base)
    alpha = options.alpha
    message = _too_few(arm, base, "matured")
    if message:
        return _not_called(arm, base, COMPLETION_RATE, alpha, message)
    sequential = confidence_sequence(b, a, alpha=alpha, tuning=tuning) if running else None
    return Comparison(
        arm.arm,
        base.arm,
        COMPLETION_RATE,
        proportion_test(b, a, difference="absolute", alpha=alpha),
        proportion_test(b, a, difference="relative", alpha=alpha),
        sequential=sequential,
    )


def _not_called(
    arm: ArmResult, base: ArmResult, metric: str, alpha: float, message: str
) -> Comparison:
    """A comparison with too little data: absolute and relative both insufficient, saying why."""
    return Comparison(
        arm.arm,
        base.arm,
        metric,
        ComparisonResult.insufficient("absolute", alpha, message),
        ComparisonResult.insufficient("relative", alpha, message),
    )


def _too_few(arm: ArmResult, base: ArmResult, counted: str) -> str:
    """Why a comparison is not called (fewer than MINIMUM_UNITS units in an arm), else ''.

    ``counted`` is ``matured`` (completion and value use matured units) or ``enrolled``.
    """
    sizes = (base.matured, arm.matured) if counted == "matured" else (base.n, arm.n)
    if min(sizes) >= MINIMUM_UNITS:
        return ""
    return (
        f"fewer than {MINIMUM_UNITS} {counted} units in an arm ({base.arm} {sizes[0]}, "
        f"{arm.arm} {sizes[1]}): too few to call"
    )


def _value(
    arm: ArmResult, base: ArmResult, options: MeasureOptions, running: bool, tuning: float
) -> Comparison:
    assert arm.value is not None and base.value is not None
    alpha = options.alpha
    problem = _too_few(arm, base, "matured")
    if problem:
        return _not_called(arm, base, VALUE, alpha, problem)
    return Comparison(
        arm.arm,
        base.arm,
        VALUE,
        welch_test(base.value, arm.value, difference="absolute", alpha=alpha),
        welch_test(base.value, arm.value, difference="relative", alpha=alpha),
        sequential=(
            confidence_sequence(base.value, arm.value, alpha=alpha, tuning=tuning)
            if running
            else None
        ),
    )


def _time_to_goal(arm: ArmResult, base: ArmResult, options: MeasureOptions) -> Comparison:
    problem = _too_few(arm, base, "enrolled")
    if problem:
        return Comparison(
            arm.arm,
            base.arm,
            TIME_TO_GOAL,
            ComparisonResult.insufficient("absolute", options.alpha, problem),
        )
    # A shorter restricted mean time to goal is the treatment helping: positive (see stats).
    difference = lower_is_better(
        rmst_difference(arm.risk_table, base.risk_table, options.horizon_days, alpha=options.alpha)
    )
    logrank = (
        logrank_test(arm.risk_table, base.risk_table)
        if arm.risk_table.times and base.risk_table.times
        else None
    )
    return Comparison(arm.arm, base.arm, TIME_TO_GOAL, difference, logrank=logrank)


def _with_cuped(
    facts: ir.Table, options: MeasureOptions, comparisons: list[Comparison]
) -> list[Comparison]:
    """Replace the value comparisons by CUPED ones using ``options.covariate`` (pre-entry)."""
    if options.covariate is None or not options.value:
        return comparisons
    matured = facts.filter(facts.is_matured)
    rows = (
        matured.group_by("arm")
        .aggregate(
            n=matured.count(),
            post_sum=matured.value.sum(),
            post_sum_squares=(matured.value * matured.value).sum(),
            pre_sum=matured.covariate.sum(),
            pre_sum_squares=(matured.covariate * matured.covariate).sum(),
            products=(matured.value * matured.covariate).sum(),
        )
        .to_pyarrow()
        .to_pylist()
    )
    stats = {
        row["arm"]: RegressionAdjustedStatistic(
            n=int(row["n"]),
            post_sum=float(row["post_sum"] or 0.0),
            post_sum_squares=float(row["post_sum_squares"] or 0.0),
            pre_sum=float(row["pre_sum"] or 0.0),
            pre_sum_squares=float(row["pre_sum_squares"] or 0.0),
            post_pre_sum_products=float(row["products"] or 0.0),
        )
        for row in rows
    }
    adjusted = []
    for comparison in comparisons:
        if comparison.metric != VALUE or comparison.control not in stats:
            adjusted.append(comparison)
            continue
        base, arm = stats[comparison.control], stats[comparison.arm]
        adjusted.append(
            Comparison(
                comparison.arm,
                comparison.control,
                VALUE,
                cuped_test(base, arm, difference="absolute", alpha=options.alpha),
                cuped_test(base, arm, difference="relative", alpha=options.alpha),
                cuped=True,
            )
        )
    return adjusted


# -- sample ratio, segments, status ----------------------------------------------------------------


def _srm(arms: dict[str, ArmResult], options: MeasureOptions) -> SrmResult | None:
    if not options.weights:
        return None
    names = sorted(set(options.weights) | set(arms))
    unknown = [name for name in arms if name not in options.weights]
    if unknown:
        raise ConfigurationError(
            f"arm(s) {', '.join(unknown)} have units but no weight; weights given for "
            f"{', '.join(sorted(options.weights))}"
        )
    return srm_test(
        [arms[name].n if name in arms else 0 for name in names],
        [options.weights.get(name, 0.0) for name in names],
    )


def _segments(
    facts: ir.Table, arms: dict[str, ArmResult], options: MeasureOptions, running: bool
) -> tuple[list[SegmentLift], list[Heterogeneity]]:
    segments: list[SegmentLift] = []
    heterogeneity: list[Heterogeneity] = []
    matured = facts.filter(facts.is_matured)
    tuning = options.sequential_tuning or max(sum(a.n for a in arms.values()), 1)
    for column in options.segment_by:
        key = f"segment__{column}"
        rows = (
            matured.group_by([key, "arm"])
            .aggregate(n=matured.count(), successes=matured.is_completed.sum())
            .to_pyarrow()
            .to_pylist()
        )
        cells: dict[str, dict[str, ProportionStatistic]] = {}
        for row in rows:
            cells.setdefault(str(row[key]), {})[str(row["arm"])] = ProportionStatistic(
                n=int(row["n"]), successes=int(row["successes"] or 0)
            )
        empty = ProportionStatistic(n=0, successes=0)
        raw: list[tuple[str, str, ProportionStatistic, ProportionStatistic, ComparisonResult]] = []
        for segment in sorted(cells):
            base = cells[segment].get(options.control, empty)
            for arm in arms:
                if arm == options.control:
                    continue
                treated = cells[segment].get(arm, empty)
                raw.append(
                    (
                        segment,
                        arm,
                        base,
                        treated,
                        proportion_test(base, treated, alpha=options.alpha),
                    )
                )
        p_values = [lift.p_value for *_, lift in raw]
        bh = adjust_p_values(p_values, method="benjamini_hochberg") if raw else ()
        holm = adjust_p_values(p_values, method="holm") if raw else ()
        tested = [p for p in p_values if not math.isnan(p)]
        discoveries = sum(1 for p in bh if not math.isnan(p) and p <= options.alpha)
        fcr_alpha = options.alpha * max(discoveries, 1) / max(len(tested), 1)
        for index, (segment, arm, base, treated, lift) in enumerate(raw):
            segments.append(
                SegmentLift(
                    column=column,
                    segment=segment,
                    arm=arm,
                    control=options.control,
                    control_stat=base,
                    arm_stat=treated,
                    lift=lift,
                    p_value_bh=bh[index],
                    p_value_holm=holm[index],
                    adjusted_ci=(
                        proportion_test(base, treated, alpha=fcr_alpha).ci
                        if math.isfinite(lift.se)
                        else Interval.undefined()
                    ),
                    small=min(base.n, treated.n) < SMALL_SEGMENT,
                    sequential=(
                        confidence_sequence(base, treated, alpha=fcr_alpha, tuning=tuning)
                        if running and math.isfinite(lift.se)
                        else None
                    ),
                )
            )
        for arm in arms:
            if arm == options.control:
                continue
            lifts = [
                lift
                for _, a, _, _, lift in raw
                if a == arm and math.isfinite(lift.se) and lift.se > 0
            ]
            if len(lifts) >= 2:
                heterogeneity.append(_cochran_q(column, arm, lifts))
    return segments, heterogeneity


def _cochran_q(column: str, arm: str, lifts: Sequence[ComparisonResult]) -> Heterogeneity:
    weights = [1.0 / lift.se**2 for lift in lifts]
    pooled = sum(w * lift.estimate for w, lift in zip(weights, lifts, strict=True)) / sum(weights)
    q = sum(w * (lift.estimate - pooled) ** 2 for w, lift in zip(weights, lifts, strict=True))
    df = len(lifts) - 1
    return Heterogeneity(column, arm, float(q), df, float(sps.chi2.sf(q, df)))


def _status(
    arms: dict[str, ArmResult],
    comparisons: list[Comparison],
    srm: SrmResult | None,
    options: MeasureOptions,
) -> Status:
    """The headline: the first treated arm's completion lift against the control."""
    if srm is not None and srm.mismatch:
        return Status.INSUFFICIENT_DATA
    for comparison in comparisons:
        if comparison.metric == COMPLETION_RATE and comparison.control == options.control:
            return comparison.decisive.status
    return Status.INSUFFICIENT_DATA


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None

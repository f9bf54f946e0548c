"""Time to goal, censoring-aware: Kaplan–Meier, log-rank, restricted mean time.

In closeloop the "event" is reaching the goal, so S(t) is the share of units that have *not yet*
reached it t days after entry, and the restricted mean up to tau is the mean time spent without the
goal within the horizon: a treatment that helps has a smaller one. Units still in progress are
censored at the analysis time, never dropped.

Everything works from a :class:`RiskTable` (per distinct time: at risk, events, censored), which a
warehouse can aggregate with one GROUP BY; raw durations never need to leave it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from closeloop.stats.normal import two_sided_p, two_sided_z
from closeloop.stats.results import ComparisonResult, Interval, status_of


@dataclass(frozen=True)
class RiskTable:
    times: tuple[float, ...]
    at_risk: tuple[int, ...]
    events: tuple[int, ...]
    censored: tuple[int, ...]

    @property
    def n(self) -> int:
        return self.at_risk[0] if self.at_risk else 0

    @classmethod
    def from_counts(cls, counts: Iterable[tuple[float, bool, int]]) -> RiskTable:
        """Build from ``(time, reached_goal, count)`` rows; repeated times are summed."""
        events: dict[float, int] = defaultdict(int)
        censored: dict[float, int] = defaultdict(int)
        for time, observed, count in counts:
            if count < 0 or time < 0 or math.isnan(time):
                raise ValueError(f"invalid risk-table row: time={time}, count={count}")
            if count:  # an empty GROUP BY cell is not a time at which anyone was observed
                (events if observed else censored)[float(time)] += int(count)
        times = sorted(set(events) | set(censored))
        at_risk, remaining = [], sum(events.values()) + sum(censored.values())
        for time in times:
            at_risk.append(remaining)
            remaining -= events[time] + censored[time]
        return cls(
            tuple(times),
            tuple(at_risk),
            tuple(events[t] for t in times),
            tuple(censored[t] for t in times),
        )

    @classmethod
    def from_durations(cls, durations: Sequence[float], observed: Sequence[bool]) -> RiskTable:
        if len(durations) != len(observed):
            raise ValueError("durations and observed must have the same length")
        return cls.from_counts(
            (float(d), bool(o), 1) for d, o in zip(durations, observed, strict=True)
        )


@dataclass(frozen=True)
class KaplanMeierResult:
    """The survival curve at each distinct time, with pointwise log-log confidence bands."""

    times: tuple[float, ...]
    survival: tuple[float, ...]
    ci_lower: tuple[float, ...]
    ci_upper: tuple[float, ...]
    median: float | None
    median_ci: Interval

    def survival_at(self, time: float) -> float:
        """S(time) as a right-continuous step function (1 before the first time)."""
        index = int(np.searchsorted(self.times, time, side="right")) - 1
        return 1.0 if index < 0 else self.survival[index]


def _greenwood_terms(table: RiskTable) -> np.ndarray:
    n = np.asarray(table.at_risk, dtype=float)
    d = np.asarray(table.events, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(d > 0, d / (n * (n - d)), 0.0)
    return np.asarray(terms)


def _survival(table: RiskTable) -> np.ndarray:
    n = np.asarray(table.at_risk, dtype=float)
    d = np.asarray(table.events, dtype=float)
    # A hand-built table may carry rows with nobody at risk; they leave the curve unchanged.
    hazard = np.divide(d, n, out=np.zeros_like(d), where=n > 0)
    return np.asarray(np.cumprod(1.0 - hazard))


def _first_time_at_or_below(times: Sequence[float], curve: Sequence[float], q: float) -> float:
    for time, value in zip(times, curve, strict=True):
        if value <= q:
            return time
    return math.inf


def kaplan_meier(table: RiskTable, *, alpha: float = 0.05) -> KaplanMeierResult:
    """Kaplan–Meier estimate with exponential-Greenwood (log-log) bands, as lifelines computes.

    The median is the first time S(t) <= 0.5; its interval is where the bands cross 0.5
    (Brookmeyer–Crowley style), ``inf`` when a band never gets there.
    """
    if not table.times:
        return KaplanMeierResult((), (), (), (), None, Interval.undefined())
    survival = _survival(table)
    cumulative = np.cumsum(_greenwood_terms(table))
    z = two_sided_z(alpha)
    lower, upper = [], []
    for s, v in zip(survival, cumulative, strict=True):
        if s >= 1.0:
            lower.append(1.0)
            upper.append(1.0)
        elif s <= 0.0 or not math.isfinite(v):
            lower.append(0.0)
            upper.append(float(s) if s > 0 else 0.0)
        else:
            log_s = math.log(s)
            spread = z * math.sqrt(v) / abs(log_s)
            centre = math.log(-log_s)
            lower.append(math.exp(-math.exp(centre + spread)))
            upper.append(math.exp(-math.exp(centre - spread)))
    times = table.times
    median = _first_time_at_or_below(times, list(survival), 0.5)
    return KaplanMeierResult(
        times=times,
        survival=tuple(float(s) for s in survival),
        ci_lower=tuple(lower),
        ci_upper=tuple(upper),
        median=median if math.isfinite(median) else None,
        median_ci=Interval(
            _first_time_at_or_below(times, lower, 0.5), _first_time_at_or_below(times, upper, 0.5)
        ),
    )


@dataclass(frozen=True)
class LogRankResult:
    chi2: float
    p_value: float
    df: int = 1


def logrank_test(a: RiskTable, b: RiskTable) -> LogRankResult:
    """Two-sample log-rank test (the Mantel–Cox statistic R's ``survdiff`` reports)."""
    times = sorted(set(a.times) | set(b.times))
    observed_minus_expected = 0.0
    variance = 0.0
    for table_a_risk, table_a_events, table_b_risk, table_b_events in zip(
        _aligned(a, times),
        _aligned_events(a, times),
        _aligned(b, times),
        _aligned_events(b, times),
        strict=True,
    ):
        n = table_a_risk + table_b_risk
        d = table_a_events + table_b_events
        if n < 1 or d == 0:
            continue
        observed_minus_expected += table_a_events - d * table_a_risk / n
        if n > 1:
            variance += d * (table_a_risk / n) * (1 - table_a_risk / n) * (n - d) / (n - 1)
    if variance <= 0:
        return LogRankResult(0.0, 1.0)
    chi2 = observed_minus_expected**2 / variance
    return LogRankResult(float(chi2), float(sps.chi2.sf(chi2, 1)))


def _aligned(table: RiskTable, times: Sequence[float]) -> list[int]:
    """Number at risk in ``table`` at each of ``times``."""
    result = []
    index = 0
    for time in times:
        while index < len(table.times) and table.times[index] < time:
            index += 1
        if index < len(table.times):
            result.append(table.at_risk[index])
        else:
            result.append(0)
    return result


def _aligned_events(table: RiskTable, times: Sequence[float]) -> list[int]:
    lookup = dict(zip(table.times, table.events, strict=True))
    return [lookup.get(time, 0) for time in times]


def restricted_mean(table: RiskTable, tau: float) -> tuple[float, float]:
    """Area under the Kaplan–Meier curve on [0, tau] and its Greenwood plug-in variance.

    Variance = sum over event times t_i <= tau of A_i^2 d_i / (n_i (n_i - d_i)), with A_i the area
    under S from t_i to tau (Klein & Moeschberger). Terms where everyone at risk had the event
    contribute nothing (the curve is 0 after them, so A_i = 0).
    """
    if tau <= 0:
        raise ValueError("tau must be positive")
    survival = _survival(table)
    edges = [0.0] + [t for t in table.times if t < tau] + [tau]
    levels = [1.0] + [float(s) for t, s in zip(table.times, survival, strict=True) if t < tau]
    areas = [(edges[i + 1] - edges[i]) * levels[i] for i in range(len(levels))]
    total = float(sum(areas))
    variance = 0.0
    # A_i: the area after the i-th time point (levels[i+1:] segments).
    tail = np.cumsum(areas[::-1])[::-1]
    for i, (time, n, d) in enumerate(zip(table.times, table.at_risk, table.events, strict=True)):
        if time > tau or d == 0:
            continue
        after = float(tail[i + 1]) if i + 1 < len(tail) else 0.0
        if after == 0.0:
            continue
        variance += after**2 * d / (n * (n - d)) if n > d else math.inf
    return total, variance


def rmst_difference(
    treatment: RiskTable, control: RiskTable, tau: float, *, alpha: float = 0.05
) -> ComparisonResult:
    """Treatment minus control restricted mean time without the goal, in the tables' time unit.

    Negative means treatment reached the goal sooner. Normal interval from the Greenwood variances.
    """
    if treatment.n < 2 or control.n < 2:
        return ComparisonResult.insufficient(
            "absolute", alpha, "each arm needs at least 2 units for a time-to-goal comparison"
        )
    mean_t, var_t = restricted_mean(treatment, tau)
    mean_c, var_c = restricted_mean(control, tau)
    se = math.sqrt(var_t + var_c)
    if not (se > 0 and math.isfinite(se)):
        return ComparisonResult.insufficient(
            "absolute",
            alpha,
            f"the restricted means have no variance up to {tau:g}: in both arms nobody reached the"
            " goal before it, or everyone at risk reached it at once",
        )
    estimate = mean_t - mean_c
    z = two_sided_z(alpha)
    ci = Interval(estimate - z * se, estimate + z * se)
    p_value = two_sided_p(abs(estimate) / se)
    return ComparisonResult("absolute", estimate, ci, se, p_value, math.inf, alpha, status_of(ci))


def completion_quantile(table: RiskTable, p: float) -> float:
    """The KM ``p``-quantile of time to reach the goal: the first time the share that has
    reached it, 1 - S(t), is at least ``p``; ``inf`` when the curve never gets that far (too many
    units are still in progress, censored, to tell).

    ``completion_quantile(table, 0.5)`` is the Kaplan–Meier median. A tolerance of 1e-9 keeps a
    product such as 3/4 * 2/3 = 1/2 from missing the level by a rounding error.
    """
    if not 0 < p < 1:
        raise ValueError(f"a quantile is strictly between 0 and 1, not {p}")
    if not table.times:
        return math.inf
    survival = _survival(table)
    for time, value in zip(table.times, survival, strict=True):
        if value <= 1 - p + 1e-9:
            return time
    return math.inf

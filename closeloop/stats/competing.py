"""Reaching the goal when churn can come first: cumulative incidence under competing risks.

In closeloop the event of interest is reaching the goal. An account that churns before reaching it
can never reach it, so churn is a *competing* event, not censoring: treating it as censoring
(1 − KM) answers "how many would have reached the goal had nobody churned" and overstates
completion. The cumulative incidence function (CIF) answers the question actually asked, "what
share of accounts had reached the goal by day t", the churned counting as not having reached it.

Estimator (Aalen–Johansen; Aalen & Johansen 1978, Kalbfleisch & Prentice 2002 §8.2), per distinct
time t_i with n_i at risk, d_ki events of cause k and d_i = d_1i + d_2i events of any cause::

    F_k(t) = Σ_{t_i <= t} S(t_{i-1}) · d_ki / n_i,      S = the all-cause Kaplan–Meier curve.

Variance: the **delta-method** (Greenwood-type) estimator of Collett (2015, §12.2.3, p. 411; also
Marubini & Valsecchi 1995), which is what lifelines' ``AalenJohansenFitter`` reports::

    Var F_k(t) = Σ_{t_i <= t} { [F_k(t) − F_k(t_i)]² d_i / (n_i (n_i − d_i))
                                + S(t_{i-1})² d_ki (n_i − d_ki) / n_i³
                                − 2 [F_k(t) − F_k(t_i)] S(t_{i-1}) d_ki / n_i² }

(a term with n_i = d_i is 0: nobody is left after it, so F_k(t) = F_k(t_i)). Pointwise bands use
the log(−log F) transform, as lifelines does, so they stay inside (0, 1). Ties are handled the usual
way (events before censorings at the same time; tied events of different causes need no order,
since the estimate telescopes to the same value), so no jittering is needed.

Everything works from a :class:`CompetingRiskTable`, which the warehouse aggregates from
``(time, cause, count)`` rows with one GROUP BY; raw durations never leave it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from closeloop.stats.normal import two_sided_p, two_sided_z
from closeloop.stats.results import ComparisonResult, Interval, status_of
from closeloop.stats.survival import RiskTable

FloatArray = npt.NDArray[np.float64]


class Cause(IntEnum):
    """How a unit's observation ended: the ``cause`` column of the warehouse's rows."""

    CENSORED = 0
    GOAL = 1
    COMPETING = 2  # churned (or otherwise left) before reaching the goal


@dataclass(frozen=True)
class CompetingRiskTable:
    """Per distinct time: units at risk, goal events, competing events and censorings."""

    times: tuple[float, ...]
    at_risk: tuple[int, ...]
    goal: tuple[int, ...]
    competing: tuple[int, ...]
    censored: tuple[int, ...]

    @property
    def n(self) -> int:
        return self.at_risk[0] if self.at_risk else 0

    def events(self, cause: int) -> tuple[int, ...]:
        """Events of ``cause`` (1 = goal, 2 = competing) at each time."""
        if cause == Cause.GOAL:
            return self.goal
        if cause == Cause.COMPETING:
            return self.competing
        raise ValueError(f"cause must be 1 (goal) or 2 (competing), got {cause!r}")

    def all_cause(self) -> RiskTable:
        """The table with both causes as the event: its Kaplan–Meier curve is the share of units
        that have neither reached the goal nor churned."""
        return RiskTable(
            self.times,
            self.at_risk,
            tuple(g + c for g, c in zip(self.goal, self.competing, strict=True)),
            self.censored,
        )

    @classmethod
    def from_counts(cls, rows: Iterable[tuple[float, int, int]]) -> CompetingRiskTable:
        """Build from ``(time, cause, count)`` rows, cause 0 = censored, 1 = goal, 2 = competing.

        Repeated ``(time, cause)`` pairs are summed, so partial aggregates can be passed as they
        come. ``SELECT time, cause, COUNT(*) … GROUP BY time, cause`` gives exactly these rows.
        """
        # Plain int keys: hashing and iterating the enum itself per row and time costs more than
        # the rest of the loop.
        causes = tuple(int(cause) for cause in Cause)
        counts: dict[int, dict[float, int]] = {cause: defaultdict(int) for cause in causes}
        for time, cause, count in rows:
            if count < 0 or time < 0 or math.isnan(time):
                raise ValueError(f"invalid competing-risk row: time={time}, count={count}")
            if cause not in counts:
                raise ValueError(
                    f"invalid competing-risk row: cause={cause!r} (0 = censored, 1 = goal,"
                    " 2 = competing)"
                )
            if count:  # an empty GROUP BY cell is not a time at which anyone was observed
                counts[int(cause)][float(time)] += int(count)
        times = sorted(set().union(*counts.values()))
        columns = {cause: tuple(counts[cause][t] for t in times) for cause in causes}
        ended = [sum(at_time) for at_time in zip(*columns.values(), strict=True)]
        at_risk, remaining = [], sum(ended)
        for count in ended:
            at_risk.append(remaining)
            remaining -= count
        return cls(
            tuple(times),
            tuple(at_risk),
            columns[Cause.GOAL],
            columns[Cause.COMPETING],
            columns[Cause.CENSORED],
        )

    @classmethod
    def from_durations(
        cls, durations: Sequence[float], causes: Sequence[int]
    ) -> CompetingRiskTable:
        """One row per unit: its time and how its observation ended (0, 1 or 2)."""
        if len(durations) != len(causes):
            raise ValueError("durations and causes must have the same length")
        return cls.from_counts(
            (float(d), int(c), 1) for d, c in zip(durations, causes, strict=True)
        )


@dataclass(frozen=True)
class CumulativeIncidence:
    """F_k at each distinct time of the table, its delta-method variance and log-log bands."""

    cause: int
    alpha: float
    times: tuple[float, ...]
    estimate: tuple[float, ...]
    variance: tuple[float, ...]
    ci_lower: tuple[float, ...]
    ci_upper: tuple[float, ...]

    def _index(self, time: float) -> int:
        return int(np.searchsorted(self.times, time, side="right")) - 1

    def at(self, time: float) -> tuple[float, float, float]:
        """``(estimate, lower, upper)`` at ``time``: a right-continuous step function, 0 before the
        first time, carried forward after the last one."""
        index = self._index(time)
        if index < 0:
            return 0.0, 0.0, 0.0
        return self.estimate[index], self.ci_lower[index], self.ci_upper[index]

    def variance_at(self, time: float) -> float:
        index = self._index(time)
        return 0.0 if index < 0 else self.variance[index]


def _log_log_band(estimate: float, variance: float, z: float) -> tuple[float, float]:
    if estimate <= 0.0:
        return 0.0, 0.0
    if estimate >= 1.0:
        return 1.0, 1.0
    log_f = math.log(estimate)
    spread = z * math.sqrt(max(variance, 0.0)) / (estimate * abs(log_f))
    centre = math.log(-log_f)
    return math.exp(-math.exp(centre + spread)), math.exp(-math.exp(centre - spread))


def _incidence(table: CompetingRiskTable, cause: int) -> tuple[FloatArray, FloatArray]:
    """F_k at each time of ``table`` and its delta-method variance (module docstring)."""
    n = np.asarray(table.at_risk, dtype=float)
    d_cause = np.asarray(table.events(cause), dtype=float)
    d_all = np.asarray(table.goal, dtype=float) + np.asarray(table.competing, dtype=float)
    # A hand-built table may carry rows with nobody at risk; they change nothing.
    at_risk = n > 0
    hazard_all = np.divide(d_all, n, out=np.zeros_like(n), where=at_risk)
    survival = np.cumprod(1.0 - hazard_all)
    survival_before = np.concatenate(([1.0], survival))[:-1]
    estimate = np.cumsum(
        survival_before * np.divide(d_cause, n, out=np.zeros_like(n), where=at_risk)
    )

    # Each sum over t_i <= t_j of a_i (F_j − F_i)² or c_i (F_j − F_i) is expanded into running
    # sums, so the whole curve costs O(times), not O(times²).
    greenwood = np.divide(d_all, n * (n - d_all), out=np.zeros_like(n), where=n > d_all)
    binomial = np.divide(
        survival_before**2 * d_cause * (n - d_cause), n**3, out=np.zeros_like(n), where=at_risk
    )
    cross = np.divide(survival_before * d_cause, n**2, out=np.zeros_like(n), where=at_risk)
    a0, a1, a2 = (np.cumsum(greenwood * estimate**p) for p in (0, 1, 2))
    c0, c1 = np.cumsum(cross), np.cumsum(cross * estimate)
    variance = (
        estimate**2 * a0 - 2 * estimate * a1 + a2 + np.cumsum(binomial) - 2 * (estimate * c0 - c1)
    )
    variance = np.maximum(variance, 0.0)  # rounding can leave -1e-18 where the variance is 0
    return estimate, variance


def incidence_at(table: CompetingRiskTable, cause: int, time: float) -> tuple[float, float]:
    """``(F_k(time), its variance)``: what :func:`cumulative_incidence` gives at ``time``
    (``.at(time)[0]`` and ``.variance_at(time)``), without computing its bands at every time.

    >>> table = CompetingRiskTable.from_counts([(1, 1, 1), (2, 2, 1), (3, 1, 1), (3, 0, 1)])
    >>> incidence_at(table, Cause.GOAL, 3)[0]
    0.5
    """
    estimate, variance = _incidence(table, cause)
    index = int(np.searchsorted(table.times, time, side="right")) - 1
    if index < 0:
        return 0.0, 0.0
    return float(estimate[index]), float(variance[index])


def cumulative_incidence(
    table: CompetingRiskTable, cause: int = Cause.GOAL, *, alpha: float = 0.05
) -> CumulativeIncidence:
    """Aalen–Johansen cumulative incidence of ``cause`` with its delta-method variance.

    >>> table = CompetingRiskTable.from_counts([(1, 1, 1), (2, 2, 1), (3, 1, 1), (3, 0, 1)])
    >>> cumulative_incidence(table, 1).at(3)[0]
    0.5
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    estimate, variance = _incidence(table, cause)
    z = two_sided_z(alpha)
    bands = [_log_log_band(float(f), float(v), z) for f, v in zip(estimate, variance, strict=True)]
    return CumulativeIncidence(
        cause=int(cause),
        alpha=alpha,
        times=table.times,
        estimate=tuple(float(f) for f in estimate),
        variance=tuple(float(v) for v in variance),
        ci_lower=tuple(lower for lower, _ in bands),
        ci_upper=tuple(upper for _, upper in bands),
    )


def _followed_to(table: CompetingRiskTable, time: float) -> bool:
    """Whether the CIF at ``time`` is estimable: someone was still observed at ``time``, or every
    unit's outcome was known before it (nobody censored at the last time)."""
    if not table.times:
        return False
    return table.times[-1] >= time or table.censored[-1] == 0


def incidence_difference(
    treatment_table: CompetingRiskTable,
    control_table: CompetingRiskTable,
    t: float,
    cause: int = Cause.GOAL,
    *,
    alpha: float = 0.05,
) -> ComparisonResult:
    """Treatment minus control cumulative incidence of ``cause`` by time ``t``, normal interval.

    The arms are independent, so the variance of the difference is the sum of the two
    delta-method variances. For the goal a positive difference means more accounts reached it;
    for churn (``cause=2``) it means more churned, so wrap the result in
    :func:`closeloop.stats.results.lower_is_better` before reading its status as "helped".
    """
    if t < 0 or math.isnan(t):
        raise ValueError(f"t must be a time >= 0, got {t}")
    if cause not in (Cause.GOAL, Cause.COMPETING):
        raise ValueError(f"cause must be 1 (goal) or 2 (competing), got {cause!r}")
    if treatment_table.n < 2 or control_table.n < 2:
        return ComparisonResult.insufficient(
            "absolute",
            alpha,
            "each arm needs at least 2 units for a cumulative-incidence comparison"
            f" (control {control_table.n}, treatment {treatment_table.n})",
        )
    for name, table in (("treatment", treatment_table), ("control", control_table)):
        if not _followed_to(table, t):
            return ComparisonResult.insufficient(
                "absolute",
                alpha,
                f"no {name} unit was followed up to {t:g} (the last was censored at"
                f" {table.times[-1]:g}): compare at an earlier time",
            )
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    treatment, treatment_variance = incidence_at(treatment_table, cause, t)
    control, control_variance = incidence_at(control_table, cause, t)
    estimate = treatment - control
    se = math.sqrt(treatment_variance + control_variance)
    if not (se > 0 and math.isfinite(se)):
        outcome = "reached the goal" if cause == Cause.GOAL else "churned"
        return ComparisonResult.insufficient(
            "absolute",
            alpha,
            f"the cumulative incidences at {t:g} have no variance: in both arms nobody {outcome}"
            " by then, or every unit's outcome was the same",
        )
    z = two_sided_z(alpha)
    ci = Interval(estimate - z * se, estimate + z * se)
    p_value = two_sided_p(abs(estimate) / se)
    return ComparisonResult("absolute", estimate, ci, se, p_value, math.inf, alpha, status_of(ci))

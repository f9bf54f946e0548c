"""Coarsened exact matching (Iacus, King & Porro 2012) from per-stratum sufficient statistics.

Without a randomized holdout, treated units are compared with untreated ones that look alike
before entry. Numeric covariates are coarsened into bins (Sturges' rule on the pooled values by
default, or given cutpoints), categorical ones are kept exact; a *stratum* is one combination of
coarsened values. Strata without at least one treated and one control unit are pruned. What is
estimated is the effect on the (matched) treated, ATT, and it is observational: it is unbiased only
if treatment depends on nothing but the covariates, as coarsened, that drive the outcome.

The warehouse aggregates each (stratum, arm) into :class:`ArmSums` (count, and per quantity the
count, sum and sum of squares); everything here works from those.

>>> keys = [("a",)] * 4 + [("b",)] * 3 + [("c",)]
>>> treated = [True, True, False, False, True, True, False, True]
>>> strata = stratify(keys, treated, {"y": [1, 1, 0, 1, 1, 0, 0, 0]})
>>> match_counts(strata)  # doctest: +NORMALIZE_WHITESPACE
MatchCounts(treated_matched=4, treated_pruned=1, control_matched=3, control_pruned=0,
            strata=3, matched_strata=2)
>>> round(att_test(strata, "y").estimate, 3)  # (1 - 0.5) / 2 + (0.5 - 0) / 2
0.5
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from closeloop.stats.results import ComparisonResult, Interval, status_of
from closeloop.stats.statistics import SampleMeanStatistic

MISSING_BIN = -1  # the bin of a missing numeric value: its own level, matched exactly
StratumKey = tuple[object, ...]


# -- coarsening ------------------------------------------------------------------------------------


def sturges_bins(n: int) -> int:
    """The number of equal-width bins Sturges' rule gives ``n`` values (as numpy counts them).

    >>> sturges_bins(1000)
    11
    """
    return max(1, math.ceil(math.log2(n) + 1.0)) if n > 0 else 1


def sturges_cutpoints(n: int, minimum: float, maximum: float) -> tuple[float, ...]:
    """Interior bin boundaries of Sturges' rule from a count and the range (what a warehouse gives).

    The same as ``numpy.histogram_bin_edges(values, bins="sturges")[1:-1]`` for ``n`` values
    spanning ``[minimum, maximum]``.

    >>> sturges_cutpoints(7, 0.0, 8.0)
    (2.0, 4.0, 6.0)
    """
    if n < 2 or not maximum > minimum:
        return ()
    edges = np.histogram_bin_edges(np.array([minimum, maximum]), bins=sturges_bins(n))
    return tuple(float(edge) for edge in edges[1:-1])


def cutpoints_of(values: npt.ArrayLike) -> tuple[float, ...]:
    """Sturges' interior boundaries of the (pooled, non-missing) ``values``.

    >>> cutpoints_of([0, 1, 2, 3, 4, 5, 6, 8])
    (2.0, 4.0, 6.0)
    """
    array = np.asarray(values, dtype=float)
    array = array[np.isfinite(array)]
    if array.size < 2:
        return ()
    return sturges_cutpoints(array.size, float(array.min()), float(array.max()))


@dataclass(frozen=True)
class Covariate:
    """A pre-entry covariate to match on.

    ``cutpoints`` None means categorical (matched exactly); otherwise a value's bin is the number
    of cutpoints at or below it (so ``()`` puts every value in one bin), and a missing value gets
    :data:`MISSING_BIN`.
    """

    name: str
    cutpoints: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.cutpoints is not None and list(self.cutpoints) != sorted(set(self.cutpoints)):
            raise ValueError(
                f"cutpoints of {self.name!r} must be strictly increasing, got {self.cutpoints}"
            )

    @property
    def categorical(self) -> bool:
        return self.cutpoints is None

    def coarsen(self, values: Sequence[object]) -> list[object]:
        """Coarsened values: bin numbers for a numeric covariate, the values for a categorical one.

        >>> Covariate("seats", (2.0, 5.0)).coarsen([1, 2, 4.9, 5, 9, None])
        [0, 1, 1, 2, 2, -1]
        """
        if self.cutpoints is None:
            return list(values)
        edges = np.asarray(self.cutpoints, dtype=float)
        result: list[object] = []
        for value in values:
            number = math.nan if value is None else float(value)  # type: ignore[arg-type]
            if math.isnan(number):
                result.append(MISSING_BIN)
            else:
                result.append(int(np.searchsorted(edges, number, side="right")))
        return result


# -- sufficient statistics -------------------------------------------------------------------------


@dataclass(frozen=True)
class ArmSums:
    """One arm of one stratum: its units, and per quantity (outcome or numeric covariate) the
    count of non-missing values, their sum and sum of squares."""

    n: int
    quantities: Mapping[str, SampleMeanStatistic] = field(default_factory=dict)

    def statistic(self, name: str) -> SampleMeanStatistic:
        return self.quantities.get(name, SampleMeanStatistic(0, 0.0, 0.0))

    def __add__(self, other: ArmSums) -> ArmSums:
        names = set(self.quantities) | set(other.quantities)
        return ArmSums(
            self.n + other.n,
            {name: _add(self.statistic(name), other.statistic(name)) for name in sorted(names)},
        )


EMPTY = ArmSums(0)


def _add(a: SampleMeanStatistic, b: SampleMeanStatistic) -> SampleMeanStatistic:
    return SampleMeanStatistic(a.n + b.n, a.sum + b.sum, a.sum_squares + b.sum_squares)


@dataclass(frozen=True)
class Stratum:
    """One combination of coarsened covariate values, with both arms' sums."""

    key: StratumKey
    treated: ArmSums
    control: ArmSums

    @property
    def matched(self) -> bool:
        return self.treated.n > 0 and self.control.n > 0


def stratify(
    keys: Sequence[StratumKey],
    treated: Sequence[bool],
    quantities: Mapping[str, Sequence[float | None]],
) -> list[Stratum]:
    """Strata from per-unit rows (small data, tests and examples; a warehouse aggregates instead).

    ``keys`` are the units' coarsened covariate values, ``treated`` their arm and ``quantities``
    per name one value per unit (None or NaN: missing).
    """
    if len(keys) != len(treated) or any(len(v) != len(keys) for v in quantities.values()):
        raise ValueError("keys, treated and every quantity need one entry per unit")
    cells: dict[tuple[StratumKey, bool], ArmSums] = {}
    for index, (key, is_treated) in enumerate(zip(keys, treated, strict=True)):
        sums = {}
        for name, values in quantities.items():
            value = values[index]
            if value is None or math.isnan(value):
                continue
            sums[name] = SampleMeanStatistic(1, float(value), float(value) ** 2)
        cell = (tuple(key), bool(is_treated))
        cells[cell] = cells.get(cell, EMPTY) + ArmSums(1, sums)
    return [
        Stratum(key, cells.get((key, True), EMPTY), cells.get((key, False), EMPTY))
        for key in sorted({key for key, _ in cells}, key=repr)
    ]


# -- matching --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MatchCounts:
    """Units kept (in a stratum with both arms) and pruned, per arm; strata seen and matched."""

    treated_matched: int
    treated_pruned: int
    control_matched: int
    control_pruned: int
    strata: int
    matched_strata: int

    @property
    def treated_pruned_share(self) -> float:
        total = self.treated_matched + self.treated_pruned
        return self.treated_pruned / total if total else math.nan


def match_counts(strata: Sequence[Stratum]) -> MatchCounts:
    matched = [s for s in strata if s.matched]
    unmatched = [s for s in strata if not s.matched]
    return MatchCounts(
        treated_matched=sum(s.treated.n for s in matched),
        treated_pruned=sum(s.treated.n for s in unmatched),
        control_matched=sum(s.control.n for s in matched),
        control_pruned=sum(s.control.n for s in unmatched),
        strata=len(strata),
        matched_strata=len(matched),
    )


def cem_weights(strata: Sequence[Stratum]) -> dict[StratumKey, float]:
    """The CEM weight of a control unit in each stratum (treated units weigh 1; pruned ones 0).

    ``(n_T,s / n_C,s) * (N_C / N_T)`` over matched units, so the control weights sum to the number
    of matched controls and reweight them to the treated's distribution across strata.

    >>> strata = stratify([(0,), (0,), (0,), (1,), (1,)], [True, False, False, True, False], {})
    >>> cem_weights(strata)
    {(0,): 0.75, (1,): 1.5}
    """
    counts = match_counts(strata)
    weights: dict[StratumKey, float] = {}
    for stratum in strata:
        if stratum.matched:
            weights[stratum.key] = (stratum.treated.n / stratum.control.n) * (
                counts.control_matched / counts.treated_matched
            )
        else:
            weights[stratum.key] = 0.0
    return weights


def att_test(strata: Sequence[Stratum], quantity: str, *, alpha: float = 0.05) -> ComparisonResult:
    """The effect on the matched treated of ``quantity`` (treated minus control), normal interval.

    ``ATT = Σ_s (n_T,s / N_T)(mean_T,s − mean_C,s)`` over matched strata, with variance
    ``Σ_s (n_T,s / N_T)² (var_T,s / n_T,s + var_C,s / n_C,s)``. An arm with a single unit in a
    stratum has no variance of its own there: it borrows the arm's pooled within-stratum variance
    (and the result's message says so). Units missing the quantity are left out of it.

    >>> strata = stratify([(0,)] * 4, [True, True, False, False], {"y": [1.0, 3.0, 0.0, 2.0]})
    >>> result = att_test(strata, "y")
    >>> result.estimate, round(result.se, 4)
    (1.0, 1.4142)
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    cells = [
        (s.treated.statistic(quantity), s.control.statistic(quantity))
        for s in strata
        if s.treated.statistic(quantity).n > 0 and s.control.statistic(quantity).n > 0
    ]
    if not cells:
        return ComparisonResult.insufficient(
            "absolute", alpha, "no stratum has both a treated and a control unit"
        )
    treated_total = sum(t.n for t, _ in cells)
    pooled_treated = _pooled_variance([t for t, _ in cells])
    pooled_control = _pooled_variance([c for _, c in cells])
    borrowed = 0
    estimate = variance = 0.0
    for treated, control in cells:
        share = treated.n / treated_total
        estimate += share * (treated.mean - control.mean)
        var_t, var_c = treated.variance, control.variance
        if treated.n < 2:
            var_t, borrowed = pooled_treated, borrowed + 1
        if control.n < 2:
            var_c, borrowed = pooled_control, borrowed + 1
        variance += share**2 * (var_t / treated.n + var_c / control.n)
    if not math.isfinite(variance):
        return ComparisonResult.insufficient(
            "absolute", alpha, "every matched stratum has a single unit in an arm: no variance"
        )
    se = math.sqrt(variance) if variance > 0 else 0.0
    if not se > 0:
        return ComparisonResult.insufficient(
            "absolute", alpha, "the outcome does not vary within the matched strata"
        )
    quantile = float(sps.norm.isf(alpha / 2))
    ci = Interval(estimate - quantile * se, estimate + quantile * se)
    p_value = float(2 * sps.norm.sf(abs(estimate) / se))
    message = (
        f"{borrowed} stratum arm(s) with a single unit used the arm's pooled within-stratum "
        "variance"
        if borrowed
        else ""
    )
    return ComparisonResult(
        "absolute", estimate, ci, se, p_value, math.inf, alpha, status_of(ci), message
    )


def _pooled_variance(statistics: Sequence[SampleMeanStatistic]) -> float:
    """Σ (n − 1) var / Σ (n − 1) over the cells with two or more units (NaN when there are none)."""
    usable = [s for s in statistics if s.n >= 2]
    degrees = sum(s.n - 1 for s in usable)
    if not degrees:
        return math.nan
    return max(sum((s.n - 1) * s.variance for s in usable) / degrees, 0.0)


# -- balance ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BalanceRow:
    """One covariate (numeric: its mean) or one level of a categorical one (its share), by arm,
    before matching (every unit) and after (matched units, control CEM-weighted).

    Both standardized mean differences divide by ``sqrt((var_T + var_C) / 2)`` of the units
    *before* matching, so they are on one scale; NaN when that is 0.
    """

    covariate: str
    level: str | None  # None for a numeric covariate
    treated_before: float
    control_before: float
    smd_before: float
    treated_after: float
    control_after: float
    smd_after: float


def balance_table(strata: Sequence[Stratum], covariates: Sequence[Covariate]) -> list[BalanceRow]:
    """Standardized mean differences before and after matching, for each covariate.

    ``covariates`` are in the order of the strata keys. A numeric covariate's mean uses the sums
    named after it in :class:`ArmSums` (non-missing values only); a categorical level's share is
    read from the keys.

    >>> keys = [("x", 0), ("x", 0), ("y", 0), ("y", 0), ("y", 0)]
    >>> strata = stratify(keys, [True, False, True, False, False], {"age": [1, 1, 3, 2, 4]})
    >>> rows = balance_table(strata, [Covariate("plan"), Covariate("age", ())])
    >>> [(row.level, round(row.smd_before, 3), round(row.smd_after, 3)) for row in rows]
    [('x', 0.343, 0.0), ('y', -0.343, 0.0), (None, -0.226, 0.0)]
    """
    rows: list[BalanceRow] = []
    for position, covariate in enumerate(covariates):
        if covariate.categorical:
            levels = sorted({s.key[position] for s in strata}, key=repr)
            for level in levels:
                rows.append(_level_row(strata, position, covariate.name, level))
        else:
            rows.append(_numeric_row(strata, covariate.name))
    return rows


def _smd(treated: float, control: float, var_treated: float, var_control: float) -> float:
    scale = math.sqrt(max((var_treated + var_control) / 2.0, 0.0))
    return (treated - control) / scale if scale > 0 else math.nan


def _level_row(strata: Sequence[Stratum], position: int, name: str, level: object) -> BalanceRow:
    def share(arm_n: Sequence[tuple[float, bool]]) -> float:
        total = sum(weight for weight, _ in arm_n)
        return sum(weight for weight, is_level in arm_n if is_level) / total if total else math.nan

    weights = cem_weights(strata)
    treated = [(float(s.treated.n), s.key[position] == level) for s in strata]
    control = [(float(s.control.n), s.key[position] == level) for s in strata]
    treated_after = [(float(s.treated.n), s.key[position] == level) for s in strata if s.matched]
    control_after = [
        (s.control.n * weights[s.key], s.key[position] == level) for s in strata if s.matched
    ]
    p_t, p_c = share(treated), share(control)
    a_t, a_c = share(treated_after), share(control_after)
    var_t, var_c = p_t * (1 - p_t), p_c * (1 - p_c)
    return BalanceRow(
        name,
        str(level),
        p_t,
        p_c,
        _smd(p_t, p_c, var_t, var_c),
        a_t,
        a_c,
        _smd(a_t, a_c, var_t, var_c),
    )


def _numeric_row(strata: Sequence[Stratum], name: str) -> BalanceRow:
    treated = _total([s.treated.statistic(name) for s in strata])
    control = _total([s.control.statistic(name) for s in strata])
    # After matching: the treated mean over matched strata, and the control's stratum means
    # weighted by the treated counts (what the CEM weights amount to).
    cells = [
        (s.treated.statistic(name), s.control.statistic(name))
        for s in strata
        if s.treated.statistic(name).n > 0 and s.control.statistic(name).n > 0
    ]
    matched_treated = _total([t for t, _ in cells])
    weight = sum(t.n for t, _ in cells)
    control_after = sum(t.n * c.mean for t, c in cells) / weight if weight else math.nan
    var_t, var_c = treated.variance, control.variance
    return BalanceRow(
        name,
        None,
        treated.mean,
        control.mean,
        _smd(treated.mean, control.mean, var_t, var_c),
        matched_treated.mean,
        control_after,
        _smd(matched_treated.mean, control_after, var_t, var_c),
    )


def _total(statistics: Sequence[SampleMeanStatistic]) -> SampleMeanStatistic:
    total = SampleMeanStatistic(0, 0.0, 0.0)
    for statistic in statistics:
        total = _add(total, statistic)
    return total

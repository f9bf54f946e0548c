"""Regression adjustment for pre-entry covariates (Lin 2013), from sums a warehouse can aggregate.

Lin (2013, "Agnostic notes on regression adjustments to experimental data: reexamining Freedman's
critique", *Ann. Appl. Stat.* 7, 295–318) regresses the outcome on the treatment indicator, the
covariates centred at their pooled mean and their interactions::

    y ~ T + (x − x̄) + T:(x − x̄)

The treatment coefficient is the difference of the two arms' regression lines evaluated at the
pooled covariate mean x̄, so each arm can be fitted on its own::

    μ̂_a = ȳ_a + β̂_a'(x̄ − x̄_a),   β̂_a = S_xx,a⁻¹ S_xy,a,   τ̂ = μ̂_treatment − μ̂_control

with S the within-arm centred cross-products. Both need only per-arm n, Σy, Σy², Σx, Σxxᵀ and Σxy
(:class:`MomentStatistic`, one ``GROUP BY arm``). With the interactions, adjustment cannot make the
estimate asymptotically less precise than the unadjusted difference in means, even with unequal
arms and a covariate that relates to the outcome differently in each arm (Freedman's critique
applies to the fit without them, and to a pooled CUPED slope).

**Variance.** For each arm, the OLS variance of its fitted line at x̄ with that arm's own residual
variance::

    Var μ̂_a = σ̂_a² (1/n_a + d_aᵀ S_xx,a⁻¹ d_a),   σ̂_a² = SSR_a / (n_a − k − 1),   d_a = x̄ − x̄_a

and Var τ̂ = Var μ̂_t + Var μ̂_c. Each arm has its own residual variance (heteroskedasticity
*between* arms is allowed for, hence "HC-style"); this is exactly the non-robust standard error of
each arm's separate OLS fit, and with no covariates it is Welch's s_t²/n_t + s_c²/n_c, which equals
HC2 of ``y ~ T``. A sandwich (HC0–HC3) of the pooled model would also allow the variance to change
*within* an arm with x, but needs Σ e²xxᵀ: fourth moments the GROUP BY does not carry. The leverage
term d_aᵀS⁻¹d_a (dropped by the asymptotic SSR_a/((n_a − k − 1) n_a)) is kept: at 20–40 units per
arm, chance imbalance in x̄_a makes it about 2% of the variance per covariate (40 vs 160). Reference
distribution: Student t with Welch–Satterthwaite degrees of freedom, arm a contributing n_a − k − 1.

**0/1 outcomes** (``binary=True``, a completion rate): with a 10% rate and 40 units an arm has
about 4 completions; its residual variance then moves with its mean and a Wald-type interval misses
on one side (95% intervals cover about 92.5–93.4%, Welch's and HC2's alike). The standard errors are
therefore computed as if each arm had one more completion and one more non-completion *at its own
covariate mean* (which leaves the slopes unchanged; the Agresti–Caffo 2000 device applied to the
variance only). The estimate stays Lin's; coverage rises to about 95% for 6–8% wider
intervals (tests/unit/stats/test_stats_adjustment.py).

**Covariates** are numeric. A categorical covariate becomes 0/1 dummies with one level dropped (the
reference level); a dummy for a level absent from an arm is constant there and is dropped (below).
Large offsets lose precision in Σx² − n x̄²: aggregate ``x − c`` for a rough centre c if a covariate
is far from 0 relative to its spread (the estimate does not depend on c).

**Singular covariates** (a constant, duplicated or collinear column in either arm; more covariates
than units) are never an error: columns are kept greedily in order while each adds variation not
explained by those kept, within both arms, and the result's message names the dropped ones. k is
then the number kept, and each arm needs at least k + 3 units (two residual degrees of freedom),
else the result is ``insufficient_data``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

from closeloop.stats.results import ComparisonResult, Interval, status_of

FloatArray = npt.NDArray[np.float64]

# A column is dropped when its variation left after regressing it on the kept columns (within an
# arm) is below this share of its raw second moment Σx²: ~7 of float64's 16 digits kept in reserve.
COLLINEARITY_TOLERANCE = 1e-9
RESIDUAL_DF_MINIMUM = 2  # units per arm must exceed covariates + 1 by this much


@dataclass(frozen=True)
class MomentStatistic:
    """One arm's sums: n, Σy, Σy², Σx (k), Σxxᵀ (k × k) and Σxy (k); additive across partitions."""

    n: int
    sum_y: float
    sum_yy: float
    sum_x: tuple[float, ...]
    sum_xx: tuple[tuple[float, ...], ...]
    sum_xy: tuple[float, ...]

    def __post_init__(self) -> None:
        k = len(self.sum_x)
        if len(self.sum_xy) != k or len(self.sum_xx) != k or any(len(r) != k for r in self.sum_xx):
            raise ValueError(
                f"sum_x, sum_xy and the rows of sum_xx must all have k = {k} entries"
                f" (sum_xy {len(self.sum_xy)}, sum_xx {[len(r) for r in self.sum_xx]})"
            )
        if self.n < 0:
            raise ValueError(f"n must be >= 0, got {self.n}")

    @property
    def k(self) -> int:
        return len(self.sum_x)

    def __add__(self, other: MomentStatistic) -> MomentStatistic:
        if self.k != other.k:
            raise ValueError(f"cannot add sums over {self.k} and {other.k} covariates")
        return MomentStatistic(
            self.n + other.n,
            self.sum_y + other.sum_y,
            self.sum_yy + other.sum_yy,
            tuple(a + b for a, b in zip(self.sum_x, other.sum_x, strict=True)),
            tuple(
                tuple(a + b for a, b in zip(row, other_row, strict=True))
                for row, other_row in zip(self.sum_xx, other.sum_xx, strict=True)
            ),
            tuple(a + b for a, b in zip(self.sum_xy, other.sum_xy, strict=True)),
        )

    @classmethod
    def from_arrays(cls, y: npt.ArrayLike, x: npt.ArrayLike) -> MomentStatistic:
        """Sums of an in-memory arm: ``y`` per unit, ``x`` one row of k covariates per unit."""
        outcome = np.asarray(y, dtype=float)
        covariates = np.asarray(x, dtype=float).reshape(len(outcome), -1)
        return cls(
            n=len(outcome),
            sum_y=float(outcome.sum()),
            sum_yy=float(outcome @ outcome),
            sum_x=tuple(float(v) for v in covariates.sum(axis=0)),
            sum_xx=tuple(tuple(float(v) for v in row) for row in covariates.T @ covariates),
            sum_xy=tuple(float(v) for v in covariates.T @ outcome),
        )


@dataclass(frozen=True)
class AdjustedComparison:
    """The adjusted difference, and how much the adjustment bought.

    ``variance_ratio`` is the adjusted se² over the unadjusted (Welch) se², both with the same
    plus-two device for a 0/1 outcome: 0.8 means the covariates did the work of 25% more units.
    ``kept`` and ``dropped`` are covariate positions.
    """

    result: ComparisonResult
    variance_ratio: float
    unadjusted_se: float
    kept: tuple[int, ...]
    dropped: tuple[int, ...]


@dataclass(frozen=True, eq=False)  # holds arrays, for which == is elementwise
class _CentredArm:
    n: int
    mean_y: float
    mean_x: FloatArray
    s_yy: float
    s_xx: FloatArray  # within-arm centred cross-products Σ(x − x̄_a)(x − x̄_a)ᵀ
    s_xy: FloatArray
    raw_xx_diagonal: FloatArray

    @classmethod
    def of(cls, arm: MomentStatistic) -> _CentredArm:
        n = arm.n
        mean_y = arm.sum_y / n
        mean_x = np.asarray(arm.sum_x, dtype=float).reshape(-1) / n
        sum_xx = np.asarray(arm.sum_xx, dtype=float).reshape(arm.k, arm.k)
        return cls(
            n=n,
            mean_y=mean_y,
            mean_x=mean_x,
            s_yy=arm.sum_yy - n * mean_y * mean_y,
            s_xx=sum_xx - n * np.outer(mean_x, mean_x),
            s_xy=np.asarray(arm.sum_xy, dtype=float).reshape(-1) - n * mean_x * mean_y,
            raw_xx_diagonal=np.diag(sum_xx).copy(),
        )

    def unexplained(self, column: int, kept: list[int]) -> float:
        """Variation of ``column`` left after regressing it on ``kept`` within this arm."""
        own = float(self.s_xx[column, column])
        if not kept:
            return own
        block = self.s_xx[np.ix_(kept, kept)]
        cross = self.s_xx[kept, column]
        return own - float(cross @ np.linalg.solve(block, cross))


def _select_columns(arms: Sequence[_CentredArm], k: int) -> tuple[list[int], list[int]]:
    kept: list[int] = []
    dropped: list[int] = []
    for column in range(k):
        if all(
            arm.unexplained(column, kept)
            > COLLINEARITY_TOLERANCE * max(float(arm.raw_xx_diagonal[column]), 1e-300)
            for arm in arms
        ):
            kept.append(column)
        else:
            dropped.append(column)
    return kept, dropped


def _welch_variance(arm: _CentredArm) -> float:
    return max(arm.s_yy, 0.0) / (arm.n - 1) / arm.n


@dataclass(frozen=True)
class _ArmFit:
    mean: float  # the arm's regression line at the pooled covariate mean
    variance: float
    residual_df: int


def _fit(arm: _CentredArm, kept: list[int], pooled_mean_x: FloatArray) -> _ArmFit:
    s_xx = arm.s_xx[np.ix_(kept, kept)]
    s_xy = arm.s_xy[kept]
    offset = (pooled_mean_x - arm.mean_x)[kept]
    slopes = np.linalg.solve(s_xx, s_xy) if kept else np.zeros(0)
    leverage = float(offset @ np.linalg.solve(s_xx, offset)) if kept else 0.0
    residual_df = arm.n - len(kept) - 1
    residual_variance = max(arm.s_yy - float(slopes @ s_xy), 0.0) / residual_df
    return _ArmFit(
        arm.mean_y + float(slopes @ offset), residual_variance * (1 / arm.n + leverage), residual_df
    )


def _plus_two(arm: MomentStatistic) -> MomentStatistic:
    """``arm`` with one completion and one non-completion added at its own covariate mean.

    Centred at the arm's mean, the two pseudo-units leave S_xx and S_xy, hence the slopes,
    unchanged; they only keep the residual variance away from 0 when an arm has few completions
    (Agresti & Caffo 2000 add the same two units to each arm of a difference of proportions).
    """
    mean_x = np.asarray(arm.sum_x, dtype=float) / arm.n
    return arm + MomentStatistic(
        n=2,
        sum_y=1.0,
        sum_yy=1.0,
        sum_x=tuple(float(v) for v in 2 * mean_x),
        sum_xx=tuple(tuple(float(v) for v in row) for row in 2 * np.outer(mean_x, mean_x)),
        sum_xy=tuple(float(v) for v in mean_x),
    )


def _check_binary(name: str, arm: MomentStatistic) -> None:
    scale = max(abs(arm.sum_y), 1.0)
    if not (-1e-9 <= arm.sum_y <= arm.n + 1e-9 and abs(arm.sum_yy - arm.sum_y) <= 1e-9 * scale):
        raise ValueError(
            f"binary=True but the {name} outcome is not 0/1 (sum_y={arm.sum_y},"
            f" sum_yy={arm.sum_yy}, n={arm.n}): a 0/1 outcome has sum_yy == sum_y"
        )


def _insufficient(
    alpha: float, message: str, kept: Sequence[int] = (), dropped: Sequence[int] = ()
) -> AdjustedComparison:
    return AdjustedComparison(
        ComparisonResult.insufficient("absolute", alpha, message),
        math.nan,
        math.nan,
        tuple(kept),
        tuple(dropped),
    )


def lin_adjusted_test(
    control: MomentStatistic,
    treatment: MomentStatistic,
    *,
    alpha: float = 0.05,
    binary: bool = False,
) -> AdjustedComparison:
    """Treatment minus control mean outcome, adjusted for the covariates by Lin's interacted OLS.

    ``binary=True`` declares a 0/1 outcome (a completion): the estimate is unchanged, and the
    standard errors (adjusted and unadjusted) are computed as if each arm had one more completion
    and one more non-completion at its covariate mean, which keeps the interval honest when an
    arm has only a handful of completions.

    >>> control = MomentStatistic.from_arrays([0, 1, 0, 1, 1], [[1], [3], [2], [5], [4]])
    >>> treatment = MomentStatistic.from_arrays([1, 1, 0, 1, 1], [[2], [3], [1], [4], [6]])
    >>> result = lin_adjusted_test(control, treatment, binary=True).result
    >>> round(result.estimate, 4), result.status.value  # unadjusted: 0.8 - 0.6 = 0.2
    (0.1551, 'inconclusive')
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    if control.k != treatment.k:
        raise ValueError(
            f"both arms must carry the same covariates (control {control.k}, treatment"
            f" {treatment.k})"
        )
    if binary:
        _check_binary("control", control)
        _check_binary("treatment", treatment)
    if control.n < 2 or treatment.n < 2:
        return _insufficient(
            alpha,
            f"each arm needs at least 2 units (control {control.n}, treatment {treatment.n})",
        )
    arms = (_CentredArm.of(control), _CentredArm.of(treatment))
    kept, dropped = _select_columns(arms, control.k)
    notes = []
    if dropped:
        notes.append(
            f"dropped covariate(s) {', '.join(map(str, dropped))}: constant or collinear with"
            " the others within an arm"
        )
    needed = len(kept) + 1 + RESIDUAL_DF_MINIMUM
    if control.n < needed or treatment.n < needed:
        notes.insert(
            0,
            f"each arm needs at least {needed} units to adjust for {len(kept)} covariate(s)"
            f" (control {control.n}, treatment {treatment.n})",
        )
        return _insufficient(alpha, "; ".join(notes), kept, dropped)

    pooled_mean_x = (control.n * arms[0].mean_x + treatment.n * arms[1].mean_x) / (
        control.n + treatment.n
    )
    fits = [_fit(arm, kept, pooled_mean_x) for arm in arms]
    estimate = fits[1].mean - fits[0].mean
    if binary:
        arms = (_CentredArm.of(_plus_two(control)), _CentredArm.of(_plus_two(treatment)))
        fits = [_fit(arm, kept, pooled_mean_x) for arm in arms]
    variance = fits[0].variance + fits[1].variance
    unadjusted_variance = _welch_variance(arms[0]) + _welch_variance(arms[1])
    se = math.sqrt(variance)
    if not (se > 0 and math.isfinite(se)):
        notes.insert(0, "the outcome has no residual variance in either arm after adjustment")
        return _insufficient(alpha, "; ".join(notes), kept, dropped)
    df = variance**2 / sum(fit.variance**2 / fit.residual_df for fit in fits)
    quantile = float(sps.t.isf(alpha / 2, df))
    ci = Interval(estimate - quantile * se, estimate + quantile * se)
    p_value = float(2 * sps.t.sf(abs(estimate) / se, df))
    result = ComparisonResult(
        "absolute", estimate, ci, se, p_value, df, alpha, status_of(ci), "; ".join(notes)
    )
    ratio = variance / unadjusted_variance if unadjusted_variance > 0 else math.nan
    return AdjustedComparison(
        result, ratio, math.sqrt(unadjusted_variance), tuple(kept), tuple(dropped)
    )

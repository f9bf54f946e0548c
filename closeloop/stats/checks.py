"""Sample ratio mismatch and multiple-testing adjustment."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as sps

SRM_THRESHOLD = 0.001

_METHODS = {
    "benjamini_hochberg": "fdr_bh",
    "holm": "holm",
    "bonferroni": "bonferroni",
}


@dataclass(frozen=True)
class SrmResult:
    chi2: float
    p_value: float
    mismatch: bool


def srm_test(
    observed: Sequence[int], weights: Sequence[float], *, threshold: float = SRM_THRESHOLD
) -> SrmResult:
    """Chi-square test that units split across arms as configured (mismatch when p < threshold).

    >>> srm_test([1000, 1200], [0.5, 0.5]).mismatch
    True
    """
    if len(observed) != len(weights) or len(observed) < 2:
        raise ValueError("srm_test needs one weight per arm and at least two arms")
    if any(w < 0 or not math.isfinite(w) for w in weights) or any(o < 0 for o in observed):
        raise ValueError(f"weights and counts must be finite and >= 0, got {weights}, {observed}")
    total = sum(observed)
    weight_sum = sum(weights)
    if total == 0 or weight_sum <= 0:
        return SrmResult(0.0, 1.0, False)
    expected = [total * w / weight_sum for w in weights]
    if any(o > 0 and e == 0 for o, e in zip(observed, expected, strict=True)):
        # Units in an arm configured to get none: as mismatched as a split can be.
        return SrmResult(math.inf, 0.0, True)
    chi2 = sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True) if e > 0)
    p_value = float(sps.chi2.sf(chi2, len(observed) - 1))
    return SrmResult(float(chi2), p_value, p_value < threshold)


def adjust_p_values(
    p_values: Sequence[float], method: str = "benjamini_hochberg"
) -> tuple[float, ...]:
    """Adjusted p-values in input order: ``benjamini_hochberg`` (FDR), ``holm``, ``bonferroni``.

    A NaN p-value (a comparison with insufficient data) stays NaN and does not count as a test;
    the others are adjusted among themselves, so one empty segment never blanks the rest.

    >>> adjust_p_values([0.01, 0.04, float("nan")], method="bonferroni")
    (0.02, 0.08, nan)
    """
    if method not in _METHODS:
        raise ValueError(f"unknown adjustment {method!r}; choose one of {sorted(_METHODS)}")
    tested = [i for i, p in enumerate(p_values) if not math.isnan(p)]
    adjusted = [math.nan] * len(p_values)
    if tested and method == "holm":
        # statsmodels' Holm calls gc.collect() on every call: 0.3 s in a process holding many
        # Ibis expressions, twice per job report. Its formula, step-down maxima capped at 1:
        order = sorted(tested, key=lambda i: p_values[i])
        running = 0.0
        for rank, i in enumerate(order):
            running = max(running, p_values[i] * (len(order) - rank))
            adjusted[i] = min(running, 1.0)
    elif tested:
        # Imported here: statsmodels loads pandas (and polars when installed), a second or so
        # that every command importing the statistics would pay.
        from statsmodels.stats.multitest import multipletests

        _, values, _, _ = multipletests([p_values[i] for i in tested], method=_METHODS[method])
        for i, value in zip(tested, values, strict=True):
            adjusted[i] = float(value)
    return tuple(adjusted)

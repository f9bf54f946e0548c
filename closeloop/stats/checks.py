"""Sample ratio mismatch and multiple-testing adjustment."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

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
    """Chi-square test that units split across arms as configured (mismatch when p < threshold)."""
    if len(observed) != len(weights) or len(observed) < 2:
        raise ValueError("srm_test needs one weight per arm and at least two arms")
    total = sum(observed)
    weight_sum = sum(weights)
    if total == 0 or weight_sum <= 0:
        return SrmResult(0.0, 1.0, False)
    expected = [total * w / weight_sum for w in weights]
    chi2 = sum((o - e) ** 2 / e for o, e in zip(observed, expected, strict=True) if e > 0)
    p_value = float(sps.chi2.sf(chi2, len(observed) - 1))
    return SrmResult(float(chi2), p_value, p_value < threshold)


def adjust_p_values(
    p_values: Sequence[float], method: str = "benjamini_hochberg"
) -> tuple[float, ...]:
    """Adjusted p-values in input order: ``benjamini_hochberg`` (FDR), ``holm``, ``bonferroni``."""
    if method not in _METHODS:
        raise ValueError(f"unknown adjustment {method!r}; choose one of {sorted(_METHODS)}")
    if not p_values:
        return ()
    _, adjusted, _, _ = multipletests(list(p_values), method=_METHODS[method])
    return tuple(float(p) for p in adjusted)

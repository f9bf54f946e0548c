"""The standard normal's two-sided quantile and tail, exactly as ``scipy.stats.norm`` gives them.

``scipy.stats.norm.isf`` and ``.sf`` check and broadcast their arguments on every call (tens of
microseconds each); a measurement refresh asks for them thousands of times. Both reduce to the
``scipy.special`` functions used here (``norm.isf(q)`` is ``-ndtri(q)``, ``norm.sf(x)`` is
``ndtr(-x)``), so the numbers are the same to the last bit (tests/unit/stats/test_normal.py).
"""

from __future__ import annotations

from functools import lru_cache

from scipy import special


@lru_cache(maxsize=64)
def two_sided_z(alpha: float) -> float:
    """The z with P(|Z| > z) = ``alpha``: ``scipy.stats.norm.isf(alpha / 2)``.

    >>> round(two_sided_z(0.05), 4)
    1.96
    """
    return float(-special.ndtri(alpha / 2))


def two_sided_p(statistic: float) -> float:
    """P(|Z| >= |statistic|): ``2 * scipy.stats.norm.sf(abs(statistic))``.

    >>> round(two_sided_p(1.959963984540054), 6)
    0.05
    """
    return float(2 * special.ndtr(-abs(statistic)))

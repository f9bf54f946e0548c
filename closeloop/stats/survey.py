"""Net Promoter Score with its sampling uncertainty."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from scipy import stats as sps

from closeloop.stats.results import Interval


@dataclass(frozen=True)
class NpsResult:
    score: float  # -100 .. 100
    promoters: int
    passives: int
    detractors: int
    se: float
    ci: Interval

    @property
    def n(self) -> int:
        return self.promoters + self.passives + self.detractors


def nps(promoters: int, passives: int, detractors: int, *, alpha: float = 0.05) -> NpsResult:
    """NPS = 100 (share 9–10 minus share 0–6); variance (pP + pD - (pP - pD)^2) / n."""
    n = promoters + passives + detractors
    if n == 0:
        return NpsResult(math.nan, 0, 0, 0, math.nan, Interval.undefined())
    p, d = promoters / n, detractors / n
    se = 100 * math.sqrt(max(p + d - (p - d) ** 2, 0.0) / n)
    z = float(sps.norm.isf(alpha / 2))
    score = 100 * (p - d)
    return NpsResult(
        score, promoters, passives, detractors, se, Interval(score - z * se, score + z * se)
    )


def nps_from_scores(scores: Iterable[int], *, alpha: float = 0.05) -> NpsResult:
    counts = [0, 0, 0]
    for score in scores:
        if not 0 <= score <= 10:
            raise ValueError(f"an NPS answer is 0–10, got {score}")
        counts[0 if score >= 9 else 1 if score >= 7 else 2] += 1
    return nps(*counts, alpha=alpha)

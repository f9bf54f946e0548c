"""Coverage of the voice-of-the-customer intervals at survey sample sizes (n = 20-50).

Estimand: the true NPS (p_promoter - p_detractor), CSAT share and CES mean of the population the
answers are drawn from. NPS and CSAT coverage is *exact*: every outcome of the multinomial
(binomial) is enumerated and weighted by its probability, so there is no Monte Carlo error.
CES coverage is simulated (20,000 samples per design, seeded): its Monte Carlo standard error
is about 0.0015, so the bound of 0.93 sits more than 10 standard errors under the nominal 0.95.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from closeloop.stats.voc import mean_estimate, nps_estimate, nps_interval, share_estimate, slope

# (p_promoter, p_detractor): typical, polarised, nearly all promoters, nearly all detractors.
NPS_TRUTHS = [
    (0.5, 0.2),
    (0.3, 0.3),
    (0.6, 0.1),
    (0.2, 0.5),
    (0.4, 0.4),
    (0.7, 0.05),
    (0.1, 0.1),
    (0.8, 0.1),
]


def _trinomial_coverage(n: int, truth: tuple[float, float], bounds: dict) -> float:
    promoter, detractor = truth
    covered = 0.0
    for (b, c), (lower, upper) in bounds.items():
        if lower <= promoter - detractor <= upper:
            covered += sps.multinomial.pmf(
                [b, c, n - b - c], n, [promoter, detractor, 1 - promoter - detractor]
            )
    return covered


def _outcomes(n: int) -> list[tuple[int, int]]:
    return [(b, c) for b in range(n + 1) for c in range(n + 1 - b)]


@pytest.mark.parametrize("n", [20, 30, 50])
def test_nps_score_interval_covers_at_least_94_percent_exactly(n: int) -> None:
    bounds = {(b, c): nps_interval(b, c, n) for b, c in _outcomes(n)}
    coverages = [_trinomial_coverage(n, truth, bounds) for truth in NPS_TRUTHS]
    # Measured: 0.947-0.965 at n = 20, 0.947-0.959 at 35, 0.948-0.957 at 50.
    assert min(coverages) >= 0.94, coverages
    assert 0.945 <= float(np.mean(coverages)) <= 0.965, coverages


def test_wald_interval_fails_the_same_check() -> None:
    """The check can fail: Wald's interval (estimate ± z·sd) on the same grid at n = 20."""
    n, z = 20, float(sps.norm.isf(0.025))
    bounds = {}
    for b, c in _outcomes(n):
        p, q = b / n, c / n
        sd = math.sqrt(max(p + q - (p - q) ** 2, 0.0) / n)
        bounds[(b, c)] = (p - q - z * sd, p - q + z * sd)
    coverages = [_trinomial_coverage(n, truth, bounds) for truth in NPS_TRUTHS]
    assert min(coverages) < 0.94


def test_nps_interval_at_the_edges_stays_inside_the_range() -> None:
    # All promoters: the estimate is +100 and the interval is not a point.
    everyone = nps_estimate(20, 0, 20)
    assert everyone.value == 100.0 and everyone.upper == 100.0
    assert everyone.lower is not None and 60 < everyone.lower < 100
    nobody = nps_estimate(0, 20, 20)
    assert nobody.value == -100.0 and nobody.lower == -100.0
    assert nobody.upper is not None and -100 < nobody.upper < -60
    passives = nps_estimate(0, 0, 20)
    assert passives.value == 0.0
    assert passives.lower is not None and passives.upper is not None
    assert -25 < passives.lower < 0 < passives.upper < 25
    assert nps_estimate(0, 0, 0).value is None
    with pytest.raises(ValueError, match="impossible counts"):
        nps_interval(15, 10, 20)


@pytest.mark.parametrize("n", [20, 50])
def test_csat_wilson_covers_at_least_93_percent_exactly(n: int) -> None:
    counts = np.arange(n + 1)
    coverages = []
    for truth in (0.5, 0.7, 0.85, 0.95):
        covered = 0.0
        for k in counts:
            estimate = share_estimate(int(k), n)
            assert estimate.lower is not None and estimate.upper is not None
            if estimate.lower <= 100 * truth <= estimate.upper:
                covered += sps.binom.pmf(k, n, truth)
        coverages.append(covered)
    # Wilson's known saw-tooth dips to ~0.93 near p = 0.95 at n = 20 and averages ~0.95.
    assert min(coverages) >= 0.92, coverages
    assert float(np.mean(coverages)) >= 0.935, coverages


@pytest.mark.parametrize("n", [20, 35, 50])
def test_ces_t_interval_covers_by_simulation(n: int) -> None:
    rng = np.random.default_rng(14)
    points = np.arange(1, 8)
    # Easy-skewed, symmetric and effort-skewed answers on a 1-7 scale.
    for weights in (
        [0.35, 0.3, 0.15, 0.1, 0.05, 0.03, 0.02],
        [1, 2, 3, 4, 3, 2, 1],
        [0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.3],
    ):
        probabilities = np.asarray(weights, dtype=float) / sum(weights)
        truth = float(points @ probabilities)
        samples = rng.choice(points, size=(20_000, n), p=probabilities).astype(float)
        covered = 0
        for sample in samples:
            estimate = mean_estimate(n, float(sample.sum()), float((sample**2).sum()), (1.0, 7.0))
            assert estimate.lower is not None and estimate.upper is not None
            covered += estimate.lower <= truth <= estimate.upper
        assert covered / len(samples) >= 0.93, (weights, covered / len(samples))


def test_ces_mean_from_sufficient_statistics_by_hand() -> None:
    # Scores 1, 2, 3: mean 2, sd 1, t(0.975, 2) = 4.3027 -> 2 ± 4.3027/sqrt(3) = 2 ± 2.484.
    estimate = mean_estimate(3, 6.0, 14.0, (1.0, 7.0))
    assert estimate.value == 2.0
    assert estimate.lower == 1.0  # clipped to the scale
    assert estimate.upper == pytest.approx(4.4842, abs=1e-4)
    # One answer: the interval is the whole scale.
    assert mean_estimate(1, 5.0, 25.0, (1.0, 7.0)) == type(estimate)(5.0, 1.0, 7.0)


def test_slope_by_hand() -> None:
    assert slope([1.0, 3.0, 5.0]) == pytest.approx(2.0)
    assert slope([None, 4.0, None, 0.0]) == pytest.approx(-2.0)
    assert slope([None, 1.0]) is None

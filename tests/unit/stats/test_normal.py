"""The normal helpers give scipy.stats.norm's numbers to the last bit (they replace its calls)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from closeloop.stats.normal import two_sided_p, two_sided_z

ALPHAS = [1e-300, 1e-12, 0.001, 0.0125, 0.025, 0.05, 0.1, 0.5, 0.999999, 1.0 - 1e-16]


@pytest.mark.parametrize("alpha", ALPHAS)
def test_two_sided_z_is_norm_isf(alpha: float) -> None:
    assert two_sided_z(alpha) == float(sps.norm.isf(alpha / 2))


def test_two_sided_p_is_twice_norm_sf() -> None:
    rng = np.random.default_rng(17)
    statistics = [
        *rng.normal(0, 3, 2_000),
        *rng.uniform(-40, 40, 2_000),
        0.0,
        -0.0,
        1e-300,
        38.5,
        -40.0,
        math.inf,
        -math.inf,
    ]
    for statistic in statistics:
        assert two_sided_p(float(statistic)) == float(2 * sps.norm.sf(abs(statistic)))
    assert math.isnan(two_sided_p(math.nan))
    assert math.isnan(float(2 * sps.norm.sf(abs(math.nan))))

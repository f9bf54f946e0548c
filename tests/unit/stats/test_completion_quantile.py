"""``completion_quantile``: the KM quantile of time to complete, against lifelines and by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from lifelines import KaplanMeierFitter
from lifelines.utils import qth_survival_time

from closeloop.stats.survival import RiskTable, completion_quantile, kaplan_meier


@pytest.mark.parametrize("seed", range(20))
def test_matches_lifelines_on_random_censored_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 400))
    # Whole days, as stage entries and objective completions often are: ties are the hard case.
    completion = np.ceil(rng.exponential(12.0, n))
    censoring = np.ceil(rng.exponential(25.0, n))
    durations = np.minimum(completion, censoring)
    observed = completion <= censoring
    table = RiskTable.from_durations(durations.tolist(), observed.tolist())
    fitter = KaplanMeierFitter().fit(durations, observed)
    for p in (0.1, 0.25, 0.5, 0.75, 0.9):
        expected = float(qth_survival_time(1 - p, fitter.survival_function_))
        assert completion_quantile(table, p) == expected, (seed, p)
    median = kaplan_meier(table).median
    assert completion_quantile(table, 0.5) == (median if median is not None else math.inf)


def test_hand_computed_levels_and_a_curve_that_stops_short() -> None:
    # 4 units: completed on days 1, 2, 3; one censored on day 5. S = 3/4, 2/4, 1/4, then flat.
    # The 1/2 level is met exactly on day 2 (a rounding error must not push it to day 3).
    table = RiskTable.from_durations([1, 2, 3, 5], [True, True, True, False])
    assert [completion_quantile(table, p) for p in (0.25, 0.5, 0.75)] == [1.0, 2.0, 3.0]
    assert completion_quantile(table, 0.8) == math.inf  # never more than 3/4 complete
    assert completion_quantile(RiskTable.from_durations([], []), 0.5) == math.inf
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        completion_quantile(table, 1.0)

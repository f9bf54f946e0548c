"""Holm's adjustment is computed without statsmodels (whose Holm calls gc.collect() on every
call); it must give statsmodels' numbers exactly, ties and values above 1 included."""

from __future__ import annotations

import gc
import random

from statsmodels.stats.multitest import multipletests

from closeloop.stats import adjust_p_values


def test_holm_equals_statsmodels_holm_on_random_families() -> None:
    generator = random.Random(17)
    gc.freeze()  # statsmodels' gc.collect() then skips everything already alive
    try:
        _compare(generator)
    finally:
        gc.unfreeze()


def _compare(generator: random.Random) -> None:
    for size in range(1, 16):
        for _ in range(6):
            p_values = [
                generator.choice([generator.random(), generator.random() ** 4, 0.05, 0.5, 1.0])
                for _ in range(size)
            ]
            expected = [float(value) for value in multipletests(p_values, method="holm")[1]]
            assert list(adjust_p_values(p_values, "holm")) == expected


def test_holm_leaves_untested_comparisons_out() -> None:
    adjusted = adjust_p_values([0.01, float("nan"), 0.04], "holm")
    assert adjusted[0] == 0.02 and adjusted[2] == 0.04
    assert adjusted[1] != adjusted[1]  # NaN stays NaN

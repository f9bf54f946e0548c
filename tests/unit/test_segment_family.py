"""Segments at small samples: one family at the minimum, Cochran's Q on two scales.

Q is simulated the way the report computes it: six segments with 20-60 holdout units and four
times as many treated, each segment's lift tested by ``proportion_test``, segments under the
minimum left out (``_SegmentCell.in_family``), then ``_cochran_q``. Seeded; 3,000 runs put the
Monte Carlo standard error near 0.4 points.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import ibis
import numpy as np
import pyarrow as pa

from closeloop.analysis.measurement import (
    MeasureOptions,
    _cochran_q,
    _SegmentCell,
    measure_units,
)
from closeloop.stats import ProportionStatistic, proportion_test

HOLDOUTS = (20, 28, 36, 44, 52, 60)
BASES = (0.10, 0.15, 0.20, 0.25, 0.30, 0.12)
RUNS = 3_000


def rejections(relative_lift: float, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    rejected = {"absolute": 0, "log_ratio": 0}
    tested = 0
    for _ in range(RUNS):
        cells = []
        for holdout, base in zip(HOLDOUTS, BASES, strict=True):
            control = ProportionStatistic(holdout, int(rng.binomial(holdout, base)))
            treated_n = 4 * holdout
            treated = ProportionStatistic(
                treated_n, int(rng.binomial(treated_n, min(base * relative_lift, 1.0)))
            )
            lift = proportion_test(control, treated)
            cell = _SegmentCell("segment", str(holdout), "treatment", control, treated, lift)
            if cell.in_family:
                cells.append(cell)
        if len(cells) >= 2:
            tested += 1
            for test in _cochran_q("segment", "treatment", cells):
                rejected[test.scale] += test.p_value < 0.05
    assert tested > RUNS * 0.95
    return {scale: count / tested for scale, count in rejected.items()}


def test_q_under_the_null_rejects_at_most_six_percent() -> None:
    rates = rejections(1.0, seed=3)
    assert rates["absolute"] <= 0.06, rates
    assert rates["log_ratio"] <= 0.06, rates


def test_a_constant_relative_lift_is_homogeneous_on_the_log_ratio_scale() -> None:
    """+50% everywhere on different baselines: absolute lifts differ, relative ones do not."""
    rates = rejections(1.5, seed=4)
    assert rates["log_ratio"] <= 0.06, rates
    assert rates["absolute"] > rates["log_ratio"], rates


def test_q_finds_a_segment_that_differs() -> None:
    rng = np.random.default_rng(5)
    found = 0
    for _ in range(500):
        cells = []
        for index, (holdout, base) in enumerate(zip(HOLDOUTS, BASES, strict=True)):
            lift = 0.3 if index == 5 else 0.0
            control = ProportionStatistic(holdout, int(rng.binomial(holdout, base)))
            treated = ProportionStatistic(4 * holdout, int(rng.binomial(4 * holdout, base + lift)))
            result = proportion_test(control, treated)
            cells.append(_SegmentCell("segment", str(index), "treatment", control, treated, result))
        found += _cochran_q("segment", "treatment", cells)[0].p_value < 0.05
    assert found / 500 > 0.5


def _units(rng: np.random.Generator) -> pa.Table:
    """Two segment columns; region 'tiny' is under the minimum (10 holdout units)."""
    rows = {"unit_id": [], "arm": [], "entered_at": [], "goal_at": [], "plan": [], "region": []}
    start = datetime(2026, 1, 5)
    for plan, region, holdout, base, lift in (
        ("pro", "eu", 60, 0.2, 0.25),
        ("pro", "us", 60, 0.2, 0.0),
        ("basic", "eu", 60, 0.2, 0.0),
        ("basic", "tiny", 10, 0.2, 0.0),
    ):
        for arm, count, rate in (
            ("holdout", holdout, base),
            ("treatment", 4 * holdout, base + lift),
        ):
            for _ in range(count):
                entered = start + timedelta(hours=int(rng.integers(0, 24 * 20)))
                rows["unit_id"].append(str(len(rows["unit_id"])))
                rows["arm"].append(arm)
                rows["entered_at"].append(entered)
                done = rng.random() < rate
                rows["goal_at"].append(entered + timedelta(days=2) if done else None)
                rows["plan"].append(plan)
                rows["region"].append(region)
    return pa.table(rows)


def test_one_family_across_columns_and_fcr_intervals_only_where_selected() -> None:
    units = _units(np.random.default_rng(8))
    options = MeasureOptions(horizon_days=14, control="holdout", segment_by=("plan", "region"))
    measurement = measure_units(ibis.memtable(units), options)
    by_key = {(s.column, s.segment): s for s in measurement.segments}
    tiny = by_key[("region", "tiny")]
    assert not tiny.in_family and np.isnan(tiny.p_value_bh) and tiny.adjusted_ci is None
    family = [s for s in measurement.segments if s.in_family]
    assert len(family) == 4  # plan: pro, basic; region: eu, us (tiny is out)
    for segment in measurement.segments:
        assert (segment.adjusted_ci is not None) == segment.selected
        if segment.selected:  # the FCR interval is wider than the marginal one
            assert segment.adjusted_ci.width >= segment.lift.ci.width  # type: ignore[union-attr]
    assert any(s.selected for s in family)
    # One family: BH over the four p-values of both columns together.
    from closeloop.stats import adjust_p_values

    expected = adjust_p_values([s.lift.p_value for s in family], "benjamini_hochberg")
    assert [s.p_value_bh for s in family] == list(expected)
    assert {h.scale for h in measurement.heterogeneity} == {"absolute", "log_ratio"}

from __future__ import annotations

import pytest

from closeloop.engine.assignment import (
    HOLDOUT,
    TREATMENT,
    assign_arm,
    assign_variant,
    bucket,
    enrollment_id,
)


def test_assignment_is_deterministic() -> None:
    first = [assign_arm("salt-a", f"acc-{i}", 0.2) for i in range(2000)]
    again = [assign_arm("salt-a", f"acc-{i}", 0.2) for i in range(2000)]
    assert first == again


def test_a_different_salt_reshuffles() -> None:
    a = [assign_arm("salt-a", f"acc-{i}", 0.5) for i in range(2000)]
    b = [assign_arm("salt-b", f"acc-{i}", 0.5) for i in range(2000)]
    agreement = sum(x == y for x, y in zip(a, b, strict=True)) / len(a)
    assert 0.45 < agreement < 0.55  # independent coin flips agree about half the time


@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.5])
def test_holdout_share_is_close_to_the_configured_fraction(fraction: float) -> None:
    n = 20_000
    share = sum(assign_arm("job-salt", f"acc-{i}", fraction) == HOLDOUT for i in range(n)) / n
    standard_error = (fraction * (1 - fraction) / n) ** 0.5
    assert abs(share - fraction) < 4 * standard_error


def test_buckets_are_uniform() -> None:
    values = sorted(bucket("s", str(i)) for i in range(10_000))
    # Kolmogorov–Smirnov distance to uniform; 1.63/sqrt(n) is the 1% critical value.
    distance = max(abs(v - (i + 1) / len(values)) for i, v in enumerate(values))
    assert distance < 1.63 / len(values) ** 0.5


def test_zero_holdout_assigns_everyone_to_treatment() -> None:
    assert {assign_arm("s", f"a{i}", 0.0) for i in range(500)} == {TREATMENT}


def test_enrollment_ids_are_stable_and_distinct() -> None:
    assert enrollment_id("job", "acc-1", "2024-01-01T00:00:00") == enrollment_id(
        "job", "acc-1", "2024-01-01T00:00:00"
    )
    assert enrollment_id("job", "acc-1", "2024-01-01T00:00:00") != enrollment_id(
        "job", "acc-2", "2024-01-01T00:00:00"
    )


def test_one_arm_variant_assignment_is_the_treatment_assignment() -> None:
    units = [f"acc-{i}" for i in range(2000)]
    assert [assign_variant("s", u, 0.2, [(TREATMENT, 1.0)]) for u in units] == [
        assign_arm("s", u, 0.2) for u in units
    ]


def test_variants_share_the_treated_range_by_weight() -> None:
    n = 20_000
    arms = [assign_variant("s", f"a{i}", 0.2, [("a", 1.0), ("b", 3.0)]) for i in range(n)]
    for arm, expected in ((HOLDOUT, 0.2), ("a", 0.2), ("b", 0.6)):
        standard_error = (expected * (1 - expected) / n) ** 0.5
        assert abs(arms.count(arm) / n - expected) < 4 * standard_error

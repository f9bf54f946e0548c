"""Thompson-sampling allocation: each variant's posterior probability of being best, floored.

Each variant's completion rate gets a Beta(1 + completions, 1 + non-completions) posterior (a
uniform prior). The share of new units a variant receives is its posterior probability of having
the highest rate, estimated by Monte Carlo with an explicit seed so the same counts and seed always
give the same shares, then floored so no variant starves and every variant keeps being measured.

>>> from closeloop.stats.statistics import ProportionStatistic
>>> result = thompson_allocation(
...     [ProportionStatistic(n=400, successes=40), ProportionStatistic(n=400, successes=80)], seed=7
... )
>>> result.shares[1] > 0.9
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from closeloop.stats.statistics import ProportionStatistic

MIN_VARIANT_SHARE = 0.05
DRAWS = 20_000


class AllocationCode(StrEnum):
    """Why the shares look the way they do."""

    POSTERIOR = "posterior"  # shares follow the data
    NO_DATA = "no_data"  # no variant has a matured unit: the prior splits equally


@dataclass(frozen=True)
class ThompsonAllocation:
    """Per variant, in the order given: the posterior probability of being best and the share.

    ``shares`` sum to 1 and are each at least ``minimum_share``.
    """

    probability_best: tuple[float, ...]
    shares: tuple[float, ...]
    minimum_share: float
    code: AllocationCode


def probability_best(
    arms: Sequence[ProportionStatistic], *, seed: int, draws: int = DRAWS
) -> tuple[float, ...]:
    """P(arm i has the highest completion rate) under independent Beta(1 + s, 1 + n - s) posteriors.

    >>> probability_best([ProportionStatistic(0, 0), ProportionStatistic(0, 0)], seed=1)[0]
    0.5
    """
    if not arms:
        raise ValueError("probability_best needs at least one arm")
    if draws < 1:
        raise ValueError(f"draws must be positive (got {draws})")
    for arm in arms:
        if not 0 <= arm.successes <= arm.n:
            raise ValueError(f"successes must be between 0 and n (got {arm.successes} of {arm.n})")
    if all(arm.n == 0 for arm in arms):
        # Identical priors: exactly equal by symmetry, no sampling noise.
        return tuple(1 / len(arms) for _ in arms)
    successes = np.array([arm.successes for arm in arms], dtype=float)
    failures = np.array([arm.n - arm.successes for arm in arms], dtype=float)
    generator = np.random.default_rng(seed)
    samples = generator.beta(1 + successes, 1 + failures, size=(draws, len(arms)))
    wins = np.bincount(samples.argmax(axis=1), minlength=len(arms))
    return tuple(float(count) / draws for count in wins)


def floor_shares(probabilities: Sequence[float], minimum: float) -> tuple[float, ...]:
    """Raise every share below ``minimum`` to it, taking the mass from the others pro rata.

    Shares above the floor keep their ratios to each other; the result sums to 1.

    >>> [round(share, 3) for share in floor_shares([0.98, 0.02, 0.0], 0.05)]
    [0.9, 0.05, 0.05]
    """
    count = len(probabilities)
    if count == 0:
        raise ValueError("floor_shares needs at least one share")
    if not 0 <= minimum <= 1 / count:
        raise ValueError(f"a floor of {minimum} cannot hold for {count} shares (at most 1/{count})")
    if any(p < 0 for p in probabilities) or sum(probabilities) <= 0:
        raise ValueError("shares must be non-negative with a positive total")
    floored: set[int] = set()
    while True:
        free = [i for i in range(count) if i not in floored]
        budget = 1 - minimum * len(floored)
        mass = sum(probabilities[i] for i in free)
        shares = {
            i: probabilities[i] / mass * budget if mass > 0 else budget / len(free) for i in free
        }
        below = {i for i, share in shares.items() if share < minimum}
        if not below:
            return tuple(minimum if i in floored else shares[i] for i in range(count))
        floored |= below


def thompson_allocation(
    arms: Sequence[ProportionStatistic],
    *,
    seed: int,
    minimum_share: float = MIN_VARIANT_SHARE,
    draws: int = DRAWS,
) -> ThompsonAllocation:
    """Shares of new units per arm: the posterior probability of being best, floored.

    With more arms than ``1 / minimum_share`` the floor becomes an equal split (``1 / len(arms)``).
    """
    if len(arms) < 2:
        raise ValueError("Thompson allocation chooses among at least two arms")
    minimum = min(minimum_share, 1 / len(arms))
    best = probability_best(arms, seed=seed, draws=draws)
    code = AllocationCode.NO_DATA if all(arm.n == 0 for arm in arms) else AllocationCode.POSTERIOR
    return ThompsonAllocation(best, floor_shares(best, minimum), minimum, code)

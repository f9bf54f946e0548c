"""The goal milestone's timing: a decaying hazard with frailty, its closed form and exact crossing.

An account t days after signup reaches the milestone with hazard

    h(t) = rate * exp(-t / tau)                 before its first delivery at s,
    h(t) = rate * (1 + effect) * exp(-t / tau)  after it,

where ``rate`` is its segment's base daily hazard times its frailty. The milestone happens when the
cumulative hazard H(t) first reaches the account's threshold E ~ Exp(1). H has a closed form,

    H(t) = rate * tau * (1 - exp(-t / tau))                       (t <= s)
    H(t) = H(s) + (1 + effect) * rate * tau * (exp(-s / tau) - exp(-t / tau))   (t > s),

bounded by ``rate * tau`` (times 1 + effect after a delivery), so some accounts never reach the
milestone. Inverting H gives the exact time; nothing is discretised. Because the treated and the
untreated time come from the same E and frailty, their difference is an exact counterfactual.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MICROSECONDS_PER_DAY = 86_400 * 1_000_000
NEVER = np.iinfo(np.int64).max
"""The timestamp (in microseconds) of a milestone that never happens."""

_LATEST_DAYS = 1e6  # ~2700 years: later crossings are "never", and microseconds never overflow


def milestone_days(
    threshold: FloatArray,
    rate: FloatArray,
    tenure_scale_days: float,
    treated_at: FloatArray | None = None,
    effect: FloatArray | None = None,
) -> FloatArray:
    """Days after signup at which H reaches ``threshold``; ``inf`` where it never does.

    ``treated_at`` holds the days after signup of each account's first delivery (``nan``: never
    delivered) and ``effect`` the relative change of the hazard from then on. An account whose
    untreated crossing comes no later than its delivery keeps that time exactly, and so does every
    account whose effect is exactly 0, which makes an A/A world's effects exactly zero.

    >>> days = milestone_days(np.array([0.5]), np.array([0.05]), 30.0)
    >>> round(float(days[0]), 3)
    12.164
    """
    tau = float(tenure_scale_days)
    capacity = rate * tau  # the untreated H(inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = threshold / capacity
        untreated = np.where(fraction < 1.0, -tau * np.log1p(-np.minimum(fraction, 1.0)), np.inf)
    if treated_at is None or effect is None:
        return _cap(untreated)
    changed = ~np.isnan(treated_at) & (effect != 0.0) & (untreated > treated_at)
    if not changed.any():
        return _cap(untreated)
    s = np.maximum(treated_at[changed], 0.0)
    decayed = np.exp(-s / tau)
    # What is left of the threshold at s, in units of the untreated capacity (positive here).
    remaining = fraction[changed] - (-np.expm1(-s / tau))
    level = decayed - remaining / (1.0 + effect[changed])
    with np.errstate(divide="ignore", invalid="ignore"):
        after = np.where(level > 0.0, -tau * np.log(level), np.inf)
    result = untreated.copy()
    result[changed] = np.maximum(after, treated_at[changed])  # rounding never moves it before s
    return _cap(result)


def _cap(days: FloatArray) -> FloatArray:
    return np.where(days <= _LATEST_DAYS, days, np.inf)


def milestone_microseconds(
    created_us: IntArray,
    threshold: FloatArray,
    rate: FloatArray,
    tenure_scale_days: float,
    treated_at_us: IntArray | None = None,
    effect: FloatArray | None = None,
) -> IntArray:
    """Absolute milestone times in whole microseconds (as the warehouse stores them), or NEVER.

    The simulator's events and the counterfactual truth both go through this function, so a
    treated run and the truth agree to the microsecond.
    """
    treated_days: FloatArray | None = None
    if treated_at_us is not None:
        treated_days = np.where(
            treated_at_us == NEVER,
            np.nan,
            (treated_at_us - created_us) / MICROSECONDS_PER_DAY,
        )
    days = milestone_days(threshold, rate, tenure_scale_days, treated_days, effect)
    finite = np.isfinite(days)
    offset = np.floor(np.where(finite, days, 0.0) * MICROSECONDS_PER_DAY).astype(np.int64)
    return np.where(finite, created_us + offset, NEVER).astype(np.int64)

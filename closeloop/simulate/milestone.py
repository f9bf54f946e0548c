"""The goal milestone's timing: a decaying hazard with frailty, raised by deliveries, inverted.

An account ``t`` days after signup reaches the milestone with hazard

    h(t) = rate * exp(-t / tau) * (1 + sum_k a_k * exp(-(t - s_k) / d_k) * [t > s_k])

where ``rate`` is its segment's base daily hazard times its frailty and each delivery ``k`` (at
``s_k`` days after signup, with effect ``a_k`` fading with time constant ``d_k``; ``d_k = inf``
never fades) adds a term. The milestone happens when the cumulative hazard H(t) first reaches the
account's threshold E ~ Exp(1). H has a closed form,

    H(t) = rate * [tau * (1 - exp(-t / tau))
                   + sum_k a_k * (exp(-s_k / tau) - exp(-t / tau - (t - s_k) / d_k)) / c_k]

with ``c_k = 1 / tau + 1 / d_k``. Without deliveries it inverts in closed form; with them the
crossing is found by bisection to far below a microsecond. H is bounded, so some accounts never
reach the milestone. Because the treated and the untreated time come from the same E and frailty,
their difference is an exact counterfactual.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MICROSECONDS_PER_DAY = 86_400 * 1_000_000
NEVER = np.iinfo(np.int64).max
"""The timestamp (in microseconds) of a milestone that never happens."""

_LATEST_DAYS = 1e6  # ~2700 years: later crossings are "never", and microseconds never overflow
_BISECTIONS = 80


@dataclass(frozen=True)
class Touches:
    """Deliveries that change the hazard: one row per account, one column per delivery.

    ``at_us`` holds absolute times in microseconds (``NEVER`` pads rows with fewer deliveries),
    ``effect`` each delivery's relative change of the hazard and ``decay_days`` how fast it fades
    (``inf``: never). Columns must be in time order within a row.
    """

    at_us: IntArray
    effect: FloatArray
    decay_days: FloatArray

    @classmethod
    def none(cls, rows: int) -> Touches:
        return cls(
            np.full((rows, 0), NEVER, dtype=np.int64),
            np.zeros((rows, 0)),
            np.full((rows, 0), np.inf),
        )

    @classmethod
    def single(cls, at_us: IntArray, effect: FloatArray, decay_days: float = np.inf) -> Touches:
        """One delivery per account (``NEVER``: none)."""
        return cls(
            np.asarray(at_us, dtype=np.int64)[:, None],
            np.asarray(effect, dtype=np.float64)[:, None],
            np.full((len(at_us), 1), decay_days),
        )

    def take(self, rows: IntArray) -> Touches:
        return Touches(self.at_us[rows], self.effect[rows], self.decay_days[rows])


def milestone_days(
    threshold: FloatArray,
    rate: FloatArray,
    tenure_scale_days: float,
    touch_days: FloatArray | None = None,
    effect: FloatArray | None = None,
    decay_days: FloatArray | None = None,
) -> FloatArray:
    """Days after signup at which H reaches ``threshold``; ``inf`` where it never does.

    ``touch_days`` (accounts x deliveries, ``nan`` for none) holds the days after signup of each
    delivery, ``effect`` and ``decay_days`` (same shape; ``inf`` or omitted: no fading) what it
    does. An account whose untreated crossing comes no later than its first delivery keeps that
    time exactly, and so does every account whose effects are all exactly 0, which makes an A/A
    world's effects exactly zero.

    >>> days = milestone_days(np.array([0.5]), np.array([0.05]), 30.0)
    >>> round(float(days[0]), 3)
    12.164
    """
    tau = float(tenure_scale_days)
    capacity = rate * tau  # the untreated H(inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = threshold / capacity
        untreated = np.where(fraction < 1.0, -tau * np.log1p(-np.minimum(fraction, 1.0)), np.inf)
    if touch_days is None or effect is None or touch_days.shape[1] == 0:
        return _cap(untreated)
    touch_days = np.atleast_2d(touch_days)
    effect = np.atleast_2d(effect)
    decay = np.full(touch_days.shape, np.inf) if decay_days is None else np.atleast_2d(decay_days)
    active = ~np.isnan(touch_days) & (effect != 0.0)
    first = np.where(active, touch_days, np.inf).min(axis=1)
    changed = active.any(axis=1) & (untreated > first)
    if not changed.any():
        return _cap(untreated)
    s = np.where(active[changed], np.maximum(touch_days[changed], 0.0), np.inf)
    a = np.where(active[changed], effect[changed], 0.0)
    inverse_decay = 1.0 / decay[changed]
    c = 1.0 / tau + inverse_decay
    target = fraction[changed] * tau  # H / rate at the crossing

    def scaled_h(t: FloatArray) -> FloatArray:
        """H(t) / rate for the changed accounts, summed delivery by delivery in column order."""
        total = tau * -np.expm1(-t / tau)
        for k in range(s.shape[1]):
            after = t > s[:, k]
            lag = np.where(after, t - s[:, k], 0.0)
            with np.errstate(invalid="ignore", over="ignore"):
                term = (np.exp(-s[:, k] / tau) - np.exp(-t / tau - lag * inverse_decay[:, k])) / c[
                    :, k
                ]
            total = total + np.where(after, a[:, k] * term, 0.0)
        return total

    low = first[changed]
    high = low + _LATEST_DAYS
    reachable = scaled_h(high) >= target
    for _ in range(_BISECTIONS):
        middle = (low + high) / 2.0
        below = scaled_h(middle) < target
        low = np.where(below, middle, low)
        high = np.where(below, high, middle)
    result = untreated.copy()
    result[changed] = np.where(reachable, high, np.inf)
    return _cap(result)


def _cap(days: FloatArray) -> FloatArray:
    return np.where(days <= _LATEST_DAYS, days, np.inf)


def milestone_microseconds(
    created_us: IntArray,
    threshold: FloatArray,
    rate: FloatArray,
    tenure_scale_days: float,
    touches: Touches | None = None,
) -> IntArray:
    """Absolute milestone times in whole microseconds (as the warehouse stores them), or NEVER.

    The simulator's events and the counterfactual truth both go through this function, so a
    treated run and the truth agree to the microsecond.
    """
    touch_days = effect = decay = None
    if touches is not None and touches.at_us.shape[1]:
        delivered = touches.at_us != NEVER
        touch_days = np.where(
            delivered, (touches.at_us - created_us[:, None]) / MICROSECONDS_PER_DAY, np.nan
        )
        effect, decay = touches.effect, touches.decay_days
    days = milestone_days(threshold, rate, tenure_scale_days, touch_days, effect, decay)
    finite = np.isfinite(days)
    offset = np.floor(np.where(finite, days, 0.0) * MICROSECONDS_PER_DAY).astype(np.int64)
    return np.where(finite, created_us + offset, NEVER).astype(np.int64)

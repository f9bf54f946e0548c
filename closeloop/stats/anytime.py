"""An exact anytime-valid test for two completion rates: look every day, at any sample size.

Randomization makes the test exact. Under the null (the job changes nobody's completion), a
unit's arm is a coin flip with the configured probability ``share`` (the treated arm's share of
the two arms) whatever its outcome. So among the units that completed, in the order they matured,
the arm labels are independent Bernoulli(``share``) draws, and so are they among the units that
did not. A treatment that helps enriches the completers in treated units.

The test bets against ``share`` on each stream with a beta mixture (the beta-binomial mixture
martingale; Robbins 1970, Howard et al. 2021 "Time-uniform, nonparametric, nonasymptotic
confidence sequences"): after ``k`` treated among ``m`` labels,

    E(k, m) = B(a + k, b + m - k) / B(a, b) / (share**k * (1 - share)**(m - k)),

with ``a = c * share`` and ``b = c * (1 - share)``, a prior centred on the null with
concentration ``c``. The product of the two streams' values is a nonnegative martingale with
expectation 1 under the null, so by Ville's inequality the chance that it *ever* reaches
``1 / alpha`` is at most ``alpha``: however often anybody looks, and at 20 units as at 20,000.
No normal approximation is involved; the only assumption is the randomization itself (which the
sample-ratio check watches).

The anytime-valid p-value after a path of looks is ``min(1, 1 / max E)`` over the path: once
small it stays small, so a result shown while the job runs stays decisive at maturity.

``concentration`` is chosen from the effect the job was planned to detect: the prior's standard
deviation on the completers' treated share equals the shift that effect would cause
(:func:`planned_concentration`). A mixture tuned that way is tightest near the planned effect;
any other choice is still valid, only less powerful.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.special import betaln

from closeloop.stats.frequentist import ABSOLUTE
from closeloop.stats.proportions import minimum_events_problem
from closeloop.stats.results import ComparisonResult, Status
from closeloop.stats.sequential import confidence_sequence
from closeloop.stats.statistics import ProportionStatistic

SEQUENTIAL_SHARE = 0.5  # of alpha, for the always-valid results of a job whose report is read early
DEFAULT_RELATIVE_EFFECT = 0.5  # the planned lift when a job has no plan: +50% completions
MINIMUM_CONCENTRATION = 2.0
MAXIMUM_CONCENTRATION = 1e6


@dataclass(frozen=True)
class LabelCounts:
    """Cumulative counts of matured units at one look, by arm and outcome."""

    control_completed: int
    control_not_completed: int
    treated_completed: int
    treated_not_completed: int


@dataclass(frozen=True)
class AnytimeTest:
    """The e-value at the latest look, its running maximum and the anytime-valid p-value."""

    e_value: float
    max_e_value: float
    p_value: float
    looks: int
    concentration: tuple[float, float]  # (completers, non-completers)


def log_e_value(
    treated: np.ndarray, total: np.ndarray, share: float, concentration: float
) -> np.ndarray:
    """log E for ``treated`` of ``total`` labels (elementwise): the beta mixture vs ``share``."""
    a, b = concentration * share, concentration * (1.0 - share)
    treated = np.asarray(treated, dtype=float)
    total = np.asarray(total, dtype=float)
    mixture = betaln(a + treated, b + total - treated) - betaln(a, b)
    null = treated * math.log(share) + (total - treated) * math.log1p(-share)
    return np.asarray(mixture - null)


def planned_concentration(share: float, shifted: float) -> float:
    """The concentration whose prior standard deviation around ``share`` is ``|shifted - share|``.

    A Beta(c * share, c * (1 - share)) prior has variance share * (1 - share) / (c + 1).
    """
    shift = abs(shifted - share)
    if shift <= 0:
        return MAXIMUM_CONCENTRATION
    concentration = share * (1 - share) / shift**2 - 1
    return min(max(concentration, MINIMUM_CONCENTRATION), MAXIMUM_CONCENTRATION)


def stream_concentrations(
    share: float, baseline_rate: float | None, relative_effect: float | None
) -> tuple[float, float]:
    """Concentrations for the completers' and non-completers' streams from a planned effect.

    A treatment multiplying the completion rate ``p`` by ``r`` moves the treated share among
    completers from ``share`` to ``share * r / (share * r + 1 - share)``, and among
    non-completers to ``share * (1 - r p) / (share * (1 - r p) + (1 - share) * (1 - p))``.
    Without a plan the effect is DEFAULT_RELATIVE_EFFECT on a 10% baseline.
    """
    p = baseline_rate if baseline_rate is not None and 0 < baseline_rate < 1 else 0.1
    r = 1.0 + (relative_effect if relative_effect is not None else DEFAULT_RELATIVE_EFFECT)
    r = min(max(r, 1e-6), (1 - 1e-9) / p)
    completers = share * r / (share * r + 1 - share)
    rest = share * (1 - r * p) / (share * (1 - r * p) + (1 - share) * (1 - p))
    return planned_concentration(share, completers), planned_concentration(share, rest)


def anytime_test(
    path: Sequence[LabelCounts],
    share: float,
    concentration: tuple[float, float],
) -> AnytimeTest:
    """The test over a path of looks (cumulative counts, in order); see the module docstring."""
    if not 0 < share < 1:
        raise ValueError(f"the treated share must be between 0 and 1, got {share}")
    if not path:
        return AnytimeTest(1.0, 1.0, 1.0, 0, concentration)
    counts = np.array(
        [
            (
                look.treated_completed,
                look.treated_completed + look.control_completed,
                look.treated_not_completed,
                look.treated_not_completed + look.control_not_completed,
            )
            for look in path
        ],
        dtype=float,
    )
    log_e = log_e_value(counts[:, 0], counts[:, 1], share, concentration[0]) + log_e_value(
        counts[:, 2], counts[:, 3], share, concentration[1]
    )
    latest, highest = float(log_e[-1]), float(np.max(log_e))
    return AnytimeTest(
        e_value=_exp(latest),
        max_e_value=_exp(highest),
        p_value=min(1.0, _exp(-highest)),
        looks=len(path),
        concentration=concentration,
    )


def _exp(value: float) -> float:
    return math.exp(min(value, 700.0))


def sequential_proportion_test(
    control: ProportionStatistic,
    treatment: ProportionStatistic,
    path: Sequence[LabelCounts],
    *,
    share: float,
    concentration: tuple[float, float],
    tuning: float,
    alpha: float = 0.05,
) -> ComparisonResult:
    """The completion lift to read while a job runs: called only when two things agree.

    The interval is the asymptotic confidence sequence (:func:`confidence_sequence`, tightest at
    ``tuning`` = N*, the planned units), the p-value is this module's exact anytime-valid one;
    the lift is positive or negative only when the interval excludes 0 *and* the p-value is
    below ``alpha``. The exact test bounds the false-positive rate; the interval says how big.
    """
    problem = minimum_events_problem(control, treatment) if control.n and treatment.n else ""
    if not control.n or not treatment.n or problem:
        return ComparisonResult.insufficient(ABSOLUTE, alpha, problem or "an arm has no units")
    interval = confidence_sequence(control, treatment, alpha=alpha, tuning=tuning)
    test = anytime_test(path, share, concentration)
    status = interval.status
    message = "always-valid: safe to look at any time"
    if status in (Status.POSITIVE, Status.NEGATIVE) and test.p_value > alpha:
        status = Status.INCONCLUSIVE
        message = "the interval excludes 0 but the exact anytime-valid test does not reject"
    return replace(interval, p_value=test.p_value, status=status, message=message)

"""Power for completion-rate lifts: what a job can detect, and how many units it needs."""

from __future__ import annotations

import math

from scipy import stats as sps


def minimum_detectable_effect(
    n_control: int,
    n_treatment: int,
    baseline_rate: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
) -> float:
    """Smallest absolute lift in a completion rate detectable with this power (two-sided)."""
    if n_control < 1 or n_treatment < 1 or not 0 < baseline_rate < 1:
        return math.nan
    z = float(sps.norm.isf(alpha / 2) + sps.norm.isf(1 - power))
    variance = baseline_rate * (1 - baseline_rate)
    return z * math.sqrt(variance / n_control + variance / n_treatment)


def required_sample_size(
    baseline_rate: float,
    effect: float,
    *,
    holdout_fraction: float = 0.2,
    alpha: float = 0.05,
    power: float = 0.8,
) -> int:
    """Total units (both arms) needed to detect an absolute ``effect`` on ``baseline_rate``."""
    if effect == 0 or not 0 < baseline_rate < 1 or not 0 < holdout_fraction < 1:
        raise ValueError("need 0 < baseline_rate < 1, 0 < holdout_fraction < 1 and effect != 0")
    z = float(sps.norm.isf(alpha / 2) + sps.norm.isf(1 - power))
    treated = min(max(baseline_rate + effect, 1e-9), 1 - 1e-9)
    per_unit = baseline_rate * (1 - baseline_rate) / holdout_fraction + treated * (1 - treated) / (
        1 - holdout_fraction
    )
    return math.ceil(z**2 * per_unit / effect**2)

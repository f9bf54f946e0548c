"""What a simulated company looks like: segments, rates, effects; and the named scenarios."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date
from typing import Any

from closeloop.errors import ConfigurationError


@dataclass(frozen=True)
class SegmentConfig:
    """One customer segment. Rates are per day; ``email_effect`` is relative (1.0 = +100%)."""

    name: str
    share: float
    milestone_hazard: float  # daily hazard of the goal milestone at signup, for frailty 1
    email_effect: float  # multiplies that hazard by (1 + effect) after the first delivery
    seats: tuple[int, int]  # inclusive range of people per account
    employees: tuple[int, int]
    plans: tuple[str, ...]
    arr_median: float
    arr_sigma: float  # of log ARR
    billing_months: int
    activity: float  # daily product events per active account, at frailty 1 and 10 seats


@dataclass(frozen=True)
class SimulationConfig:
    """A whole simulated company. Frozen; derive variants with ``dataclasses.replace``."""

    name: str = "default"
    seed: int = 7
    start: date = date(2024, 1, 1)
    days: int = 151
    n_accounts: int = 3000
    arrival_days: int = 120
    tenure_scale_days: float = 20.0  # hazards decay as exp(-tenure / scale): some accounts stall
    frailty_shape: float = 2.0  # gamma frailty (mean 1): engaged vs. sluggish accounts
    goal_event: str = "integration_connected"
    segments: tuple[SegmentConfig, ...] = ()

    def segment(self, name: str) -> SegmentConfig:
        for segment in self.segments:
            if segment.name == name:
                return segment
        raise KeyError(name)


DEFAULT_SEGMENTS = (
    SegmentConfig(
        name="enterprise",
        share=0.15,
        milestone_hazard=0.02,
        email_effect=1.0,
        seats=(20, 120),
        employees=(1000, 20000),
        plans=("enterprise",),
        arr_median=90_000,
        arr_sigma=0.5,
        billing_months=12,
        activity=6.0,
    ),
    SegmentConfig(
        name="mid_market",
        share=0.35,
        milestone_hazard=0.035,
        email_effect=0.6,
        seats=(5, 30),
        employees=(100, 1000),
        plans=("business", "pro"),
        arr_median=15_000,
        arr_sigma=0.6,
        billing_months=12,
        activity=4.0,
    ),
    SegmentConfig(
        name="self_serve",
        share=0.5,
        milestone_hazard=0.05,
        email_effect=0.2,
        seats=(1, 5),
        employees=(1, 100),
        plans=("starter", "pro"),
        arr_median=1_200,
        arr_sigma=0.7,
        billing_months=1,
        activity=2.0,
    ),
)


def _no_effect(config: SimulationConfig) -> SimulationConfig:
    segments = tuple(dataclasses.replace(s, email_effect=0.0) for s in config.segments)
    return dataclasses.replace(config, name="no_effect", segments=segments)


_BASE = SimulationConfig(segments=DEFAULT_SEGMENTS)
SCENARIOS: dict[str, SimulationConfig] = {
    "default": _BASE,
    "no_effect": _no_effect(_BASE),
}


def scenario(name: str, **overrides: Any) -> SimulationConfig:
    """A named scenario (``default``: email helps, most for enterprise; ``no_effect``: A/A)."""
    if name not in SCENARIOS:
        raise ConfigurationError(
            f"unknown scenario {name!r}; known scenarios: {', '.join(sorted(SCENARIOS))}"
        )
    fields = {f.name for f in dataclasses.fields(SimulationConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ConfigurationError(
            f"unknown simulation setting(s) {', '.join(unknown)}; "
            f"settings: {', '.join(sorted(fields))}"
        )
    config = dataclasses.replace(SCENARIOS[name], **overrides)
    _validate(config)
    return config


def _validate(config: SimulationConfig) -> None:
    problems = []
    if config.n_accounts < 1:
        problems.append("n_accounts must be at least 1")
    if not 1 <= config.arrival_days <= config.days:
        problems.append("arrival_days must be between 1 and days")
    if abs(sum(s.share for s in config.segments) - 1) > 1e-9:
        problems.append("segment shares must add up to 1")
    if config.tenure_scale_days <= 0 or config.frailty_shape <= 0:
        problems.append("tenure_scale_days and frailty_shape must be positive")
    for segment in config.segments:
        if segment.milestone_hazard < 0 or segment.email_effect < -1:
            problems.append(f"{segment.name}: hazard must be >= 0 and effect >= -1")
        if not 1 <= segment.seats[0] <= segment.seats[1]:
            problems.append(f"{segment.name}: seats must be a range starting at 1 or more")
    if problems:
        raise ConfigurationError("invalid simulation config: " + "; ".join(problems))

"""What a simulated company looks like: segments, product usage, the goal milestone, scenarios.

Every knob lives in a frozen dataclass so a configuration is a value: it can be compared, hashed,
changed with :func:`dataclasses.replace` and written into the ground truth. Named scenarios are
small functions returning a configuration; :func:`scenario` applies overrides and validates.

>>> config = scenario("default", n_accounts=500, seed=3)
>>> [segment.name for segment in config.segments]
['enterprise', 'mid_market', 'self_serve']
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from closeloop.errors import ConfigurationError

GOAL_EVENT = "integration_connected"
"""The goal milestone: the event the email is meant to bring forward (emitted at most once)."""

ALL_SEGMENTS = "all"
"""The segment name :meth:`CompanySimulator.true_effects` uses for the pooled effect."""


@dataclass(frozen=True)
class SegmentConfig:
    """One customer segment: its share of signups, firmographics and response to the email.

    ``base_daily_hazard`` is the goal milestone's hazard on the signup day for an account of average
    frailty; ``email_effect`` multiplies that hazard by ``1 + email_effect`` from the first delivery
    on (``1.0`` doubles it, ``0.0`` means the email does nothing, ``-0.2`` would backfire).
    """

    name: str
    share: float
    base_daily_hazard: float
    email_effect: float
    plan: str
    seats_min: int
    seats_max: int
    arr_median: float
    arr_sigma: float
    billing_period_months: int
    employees_min: int
    employees_max: int
    activity: float = 1.0  # multiplies every per-person product event rate
    onboarding_days: float = 7.0  # mean delay from signup until a teammate joins


@dataclass(frozen=True)
class ProductEventConfig:
    """A kind of everyday product event, emitted as a Poisson count per account and day.

    The expected count is ``daily_rate_per_person`` times the number of people who have joined the
    account, times the segment's ``activity``, the account's engagement, the tenure decay and the
    weekend factor. When ``property_values`` is set, each event carries one of them, drawn
    uniformly, as ``{"<property_name>": "<value>"}``.
    """

    name: str
    daily_rate_per_person: float
    property_name: str | None = None
    property_values: tuple[str, ...] = ()


DEFAULT_SEGMENTS: tuple[SegmentConfig, ...] = (
    SegmentConfig(
        name="enterprise",
        share=0.15,
        base_daily_hazard=0.02,
        email_effect=1.0,
        plan="enterprise",
        seats_min=20,
        seats_max=150,
        arr_median=150_000.0,
        arr_sigma=0.6,
        billing_period_months=12,
        employees_min=1_000,
        employees_max=50_000,
        activity=0.6,
        onboarding_days=21.0,
    ),
    SegmentConfig(
        name="mid_market",
        share=0.35,
        base_daily_hazard=0.035,
        email_effect=0.6,
        plan="growth",
        seats_min=5,
        seats_max=30,
        arr_median=30_000.0,
        arr_sigma=0.5,
        billing_period_months=12,
        employees_min=50,
        employees_max=1_000,
        activity=0.9,
        onboarding_days=10.0,
    ),
    SegmentConfig(
        name="self_serve",
        share=0.5,
        base_daily_hazard=0.05,
        email_effect=0.2,
        plan="starter",
        seats_min=1,
        seats_max=5,
        arr_median=3_000.0,
        arr_sigma=0.5,
        billing_period_months=1,
        employees_min=1,
        employees_max=50,
        activity=1.2,
        onboarding_days=5.0,
    ),
)

DEFAULT_PRODUCT_EVENTS: tuple[ProductEventConfig, ...] = (
    ProductEventConfig("login", 0.12),
    ProductEventConfig(
        "feature_used",
        0.06,
        property_name="feature",
        property_values=("dashboards", "alerts", "exports", "automations", "api"),
    ),
    ProductEventConfig("report_viewed", 0.02),
)

DEFAULT_OWNERS: tuple[str, ...] = (
    "Ana Ortiz",
    "Ben Okafor",
    "Chloe Martin",
    "Dev Patel",
    "Elena Rossi",
    "Farid Haddad",
)


@dataclass(frozen=True)
class SimulationConfig:
    """Everything a :class:`~closeloop.simulate.CompanySimulator` needs; same config, same company.

    Accounts sign up uniformly at random over the first ``arrival_days`` days from ``start`` and the
    simulation runs for ``days`` days. ``docs/simulator.md`` describes every field.
    """

    seed: int = 7
    start: date = date(2025, 1, 6)
    days: int = 151
    n_accounts: int = 3000
    arrival_days: int = 120
    segments: tuple[SegmentConfig, ...] = DEFAULT_SEGMENTS
    # The goal milestone's hazard decays as exp(-tenure / tenure_scale_days), so an account's total
    # hazard is bounded and some accounts never connect an integration (they get stuck).
    tenure_scale_days: float = 30.0
    frailty_shape: float = 2.0  # gamma frailty with mean 1; smaller shape, more heterogeneity
    engagement_sigma: float = 0.5
    engagement_frailty_link: float = 0.5
    product_events: tuple[ProductEventConfig, ...] = DEFAULT_PRODUCT_EVENTS
    weekend_activity: float = 0.3
    activity_floor: float = 0.5
    activity_decay_days: float = 90.0
    first_project_probability: float = 0.9
    first_project_mean_days: float = 2.0
    owners: tuple[str, ...] = DEFAULT_OWNERS
    name: str = "default"

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise ConfigurationError(
                f"invalid simulation config {self.name!r}:\n  - " + "\n  - ".join(problems)
            )

    def dates(self) -> list[date]:
        """Every simulated day, in the order :meth:`CompanySimulator.step` takes them."""
        return [self.start + timedelta(days=index) for index in range(self.days)]

    def segment(self, name: str) -> SegmentConfig:
        for segment in self.segments:
            if segment.name == name:
                return segment
        known = ", ".join(s.name for s in self.segments)
        raise ConfigurationError(f"unknown segment {name!r}; this config has: {known}")


def _problems(config: SimulationConfig) -> list[str]:
    """Every reason the config cannot work, so one error reports them all."""
    problems: list[str] = []
    if config.seed < 0:
        problems.append(f"seed must not be negative, got {config.seed}")
    if config.days < 1:
        problems.append(f"days must be at least 1, got {config.days}")
    if not 1 <= config.arrival_days <= max(config.days, 1):
        problems.append(f"arrival_days must be between 1 and days, got {config.arrival_days}")
    if config.n_accounts < 0:
        problems.append(f"n_accounts must not be negative, got {config.n_accounts}")
    if not config.segments:
        problems.append("segments must not be empty")
    names = [segment.name for segment in config.segments]
    if len(set(names)) != len(names):
        problems.append(f"segment names must be unique, got {names}")
    if ALL_SEGMENTS in names:
        problems.append(f"{ALL_SEGMENTS!r} is reserved for the pooled effect; rename that segment")
    shares = sum(segment.share for segment in config.segments)
    if config.segments and not math.isclose(shares, 1.0, abs_tol=1e-9):
        problems.append(f"segment shares must sum to 1, got {shares:g}")
    for segment in config.segments:
        problems.extend(f"segment {segment.name!r}: {p}" for p in _segment_problems(segment))
    positive = {
        "tenure_scale_days": config.tenure_scale_days,
        "frailty_shape": config.frailty_shape,
        "activity_decay_days": config.activity_decay_days,
        "first_project_mean_days": config.first_project_mean_days,
    }
    problems.extend(
        f"{name} must be a finite number above 0, got {value}"
        for name, value in positive.items()
        if not (math.isfinite(value) and value > 0)
    )
    if config.engagement_sigma < 0:
        problems.append(f"engagement_sigma must not be negative, got {config.engagement_sigma}")
    for name, value in {
        "weekend_activity": config.weekend_activity,
        "activity_floor": config.activity_floor,
        "first_project_probability": config.first_project_probability,
    }.items():
        if not 0.0 <= value <= 1.0:
            problems.append(f"{name} must be between 0 and 1, got {value}")
    for event in config.product_events:
        if event.daily_rate_per_person < 0:
            problems.append(f"product event {event.name!r}: daily_rate_per_person is negative")
        if event.property_values and not event.property_name:
            problems.append(f"product event {event.name!r}: property_values need a property_name")
    if not config.owners:
        problems.append("owners must name at least one CSM")
    return problems


def _segment_problems(segment: SegmentConfig) -> list[str]:
    problems: list[str] = []
    if not 0.0 <= segment.share <= 1.0:
        problems.append(f"share must be between 0 and 1, got {segment.share}")
    if not segment.base_daily_hazard >= 0.0:
        problems.append(f"base_daily_hazard must not be negative, got {segment.base_daily_hazard}")
    if not segment.email_effect > -1.0:
        problems.append(
            f"email_effect must be above -1 (a hazard ratio above 0), got {segment.email_effect}"
        )
    if not 1 <= segment.seats_min <= segment.seats_max:
        problems.append(
            f"seats need 1 <= seats_min <= seats_max, got {segment.seats_min}..{segment.seats_max}"
        )
    if not 1 <= segment.employees_min <= segment.employees_max:
        problems.append(
            "employees need 1 <= employees_min <= employees_max, "
            f"got {segment.employees_min}..{segment.employees_max}"
        )
    if segment.arr_median <= 0 or segment.arr_sigma < 0:
        problems.append("arr_median must be above 0 and arr_sigma not negative")
    if segment.billing_period_months < 1:
        problems.append(
            f"billing_period_months must be at least 1, got {segment.billing_period_months}"
        )
    if segment.activity < 0 or segment.onboarding_days <= 0:
        problems.append("activity must not be negative and onboarding_days must be above 0")
    return problems


@dataclass(frozen=True)
class Scenario:
    """A named starting point: what it shows, and how to build its configuration."""

    name: str
    description: str
    build: Callable[[], SimulationConfig] = field(repr=False)


def _default() -> SimulationConfig:
    return SimulationConfig()


def _no_effect() -> SimulationConfig:
    segments = tuple(dataclasses.replace(s, email_effect=0.0) for s in DEFAULT_SEGMENTS)
    return SimulationConfig(segments=segments, name="no_effect")


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "default",
            "Three segments; the email doubles the enterprise hazard (+100%), "
            "+60% for mid-market, +20% for self-serve.",
            _default,
        ),
        Scenario(
            "no_effect",
            "An A/A world: the same company, but the email changes nothing in any segment.",
            _no_effect,
        ),
    )
}


def scenario(name: str, **overrides: Any) -> SimulationConfig:
    """The configuration of scenario ``name`` with ``overrides`` applied to its fields.

    >>> scenario("no_effect", n_accounts=100).segment("enterprise").email_effect
    0.0
    """
    try:
        chosen = SCENARIOS[name]
    except KeyError:
        known = ", ".join(sorted(SCENARIOS))
        raise ConfigurationError(f"unknown scenario {name!r}; known scenarios: {known}") from None
    fields = {f.name for f in dataclasses.fields(SimulationConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ConfigurationError(
            f"unknown simulation setting(s) {', '.join(unknown)}; "
            f"settings are: {', '.join(sorted(fields))}"
        )
    return dataclasses.replace(chosen.build(), **overrides)

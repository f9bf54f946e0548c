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

RESPONSE_CHANNELS = ("email", "slack", "webhook", "*")
"""The channels a :class:`Response` can name (``*``: any)."""


@dataclass(frozen=True)
class PlanTier:
    """A plan a segment's accounts can be on: its share of the segment and its price level."""

    name: str
    share: float
    arr_multiplier: float = 1.0  # multiplies the segment's lognormal ARR draw


@dataclass(frozen=True)
class SegmentConfig:
    """One customer segment: signups, firmographics, goal hazard, revenue and CS coverage.

    ``base_daily_hazard`` is the goal milestone's hazard on the signup day for an account of average
    frailty. How deliveries change it is set by :attr:`SimulationConfig.responses`, per segment.
    Revenue rates are for a *typical* account (every adoption milestone but one, no early time to
    value, average support experience); :class:`SimulationConfig` says how those move them.
    """

    name: str
    share: float
    base_daily_hazard: float
    plans: tuple[PlanTier, ...]
    seats_min: int
    seats_max: int
    arr_median: float
    arr_sigma: float
    annual_share: float  # share of accounts billed annually; the others are billed monthly
    employees_min: int
    employees_max: int
    activity: float = 1.0  # multiplies every per-person product event rate
    onboarding_days: float = 7.0  # mean delay from signup until a teammate joins
    annual_churn: float = 0.15  # chance a typical account churns within a year
    expansions_per_year: float = 0.3  # expected expansions a year of a typical account
    annual_contraction: float = 0.05  # chance a typical account downgrades within a year
    csm_touches_per_month: float = 0.5  # routine CSM activities (emails, calls, meetings)
    qbr_every_days: int = 0  # a quarterly business review every this many days (0: none)
    support_tickets_per_month: float = 0.5  # per account, scaled by sqrt(people joined)
    nps_mean: float = 7.5  # mean NPS score (0-10) of a typical respondent


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


@dataclass(frozen=True)
class Response:
    """How one kind of delivery changes the goal milestone's hazard, per segment.

    A delivery at ``s`` multiplies the hazard from ``s`` on by ``1 + effect * exp(-(t - s) /
    decay_days)``; every delivery adds its own term, so a reminder adds to the first email.
    ``channel`` is ``email``, ``slack`` (the account's CSM reaches out, see
    :attr:`SimulationConfig.reach_out_probability`), ``webhook``, or ``*`` for any; ``variant`` a
    job variant's name or ``*``. The most specific matching response applies (a named variant beats
    ``*``, a named channel beats ``*``); segments missing from ``effects`` are unaffected.
    """

    effects: tuple[tuple[str, float], ...]  # (segment, relative change of the hazard)
    channel: str = "email"
    variant: str = "*"
    decay_days: float = math.inf

    def effect(self, segment: str) -> float:
        return dict(self.effects).get(segment, 0.0)


@dataclass(frozen=True)
class MilestoneConfig:
    """An onboarding milestone besides the goal: reached once, by the admin, at a random delay."""

    name: str
    probability: float  # share of accounts that ever reach it
    mean_days: float  # mean delay after signup for an account of engagement 1


DEFAULT_SEGMENTS: tuple[SegmentConfig, ...] = (
    SegmentConfig(
        name="enterprise",
        share=0.15,
        base_daily_hazard=0.02,
        plans=(PlanTier("enterprise", 0.7), PlanTier("enterprise_plus", 0.3, 1.6)),
        seats_min=20,
        seats_max=150,
        arr_median=150_000.0,
        arr_sigma=0.6,
        annual_share=1.0,
        employees_min=1_000,
        employees_max=50_000,
        activity=0.6,
        onboarding_days=21.0,
        annual_churn=0.08,
        expansions_per_year=0.8,
        annual_contraction=0.1,
        csm_touches_per_month=4.0,
        qbr_every_days=90,
        support_tickets_per_month=0.6,
        nps_mean=7.2,
    ),
    SegmentConfig(
        name="mid_market",
        share=0.35,
        base_daily_hazard=0.035,
        plans=(PlanTier("growth", 0.75), PlanTier("business", 0.25, 1.5)),
        seats_min=5,
        seats_max=30,
        arr_median=30_000.0,
        arr_sigma=0.5,
        annual_share=0.7,
        employees_min=50,
        employees_max=1_000,
        activity=0.9,
        onboarding_days=10.0,
        annual_churn=0.15,
        expansions_per_year=0.5,
        annual_contraction=0.06,
        csm_touches_per_month=1.0,
        qbr_every_days=180,
        support_tickets_per_month=0.5,
        nps_mean=7.6,
    ),
    SegmentConfig(
        name="self_serve",
        share=0.5,
        base_daily_hazard=0.05,
        plans=(PlanTier("starter", 0.8), PlanTier("pro", 0.2, 2.0)),
        seats_min=1,
        seats_max=5,
        arr_median=3_000.0,
        arr_sigma=0.5,
        annual_share=0.2,
        employees_min=1,
        employees_max=50,
        activity=1.2,
        onboarding_days=5.0,
        annual_churn=0.3,
        expansions_per_year=0.25,
        annual_contraction=0.03,
        csm_touches_per_month=0.05,
        qbr_every_days=0,
        support_tickets_per_month=0.3,
        nps_mean=7.8,
    ),
)

DEFAULT_RESPONSES: tuple[Response, ...] = (
    Response(effects=(("enterprise", 1.0), ("mid_market", 0.6), ("self_serve", 0.2))),
    Response(
        channel="slack",
        effects=(("enterprise", 1.5), ("mid_market", 1.0), ("self_serve", 0.5)),
        decay_days=14.0,
    ),
)

DEFAULT_MILESTONES: tuple[MilestoneConfig, ...] = (
    MilestoneConfig("first_project_created", 0.9, 2.0),
    MilestoneConfig("first_report_created", 0.7, 8.0),
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
    milestones: tuple[MilestoneConfig, ...] = DEFAULT_MILESTONES
    owners: tuple[str, ...] = DEFAULT_OWNERS
    # How deliveries change behaviour (per channel, variant and segment).
    responses: tuple[Response, ...] = DEFAULT_RESPONSES
    reach_out_probability: float = 0.8  # a Slack alert makes the CSM reach out (a call) ...
    reach_out_mean_days: float = 1.0  # ... after an exponential delay of this mean
    # Revenue: how adoption, time to value and support move churn, expansion and contraction.
    time_to_value_days: float = 30.0  # the goal reached this soon after signup is "early value"
    churn_adoption_slope: float = 0.35  # churn hazard x exp(-slope) per adoption milestone reached
    churn_early_value_ratio: float = 0.6  # churn hazard multiplier after early value
    churn_support_slope: float = 0.25  # churn hazard x exp(-slope * support experience)
    expansion_adoption_slope: float = 0.35  # expansion rate x exp(slope) per milestone reached
    expansion_mean_growth: float = 0.25  # mean relative MRR increase of one expansion
    contraction_max_cut: float = 0.4  # a contraction cuts MRR by a uniform share up to this
    reactivations_per_year: float = 0.1  # yearly rate at which churned accounts come back
    # Voice of customer.
    nps_first_days: int = 45  # the first NPS survey this many days after signup ...
    nps_interval_days: int = 90  # ... then one every this many days
    nps_invitees: int = 3  # people asked per survey (the earliest to join)
    nps_response_rate: float = 0.3
    nps_sigma: float = 2.0  # spread of individual NPS scores around the account's mean
    nps_adoption_slope: float = 0.5  # NPS points per adoption milestone reached
    nps_support_slope: float = 0.8  # NPS points per unit of support experience
    csat_response_rate: float = 0.35  # a CSAT (1-5) response after a support ticket
    ces_response_rate: float = 0.2  # a CES (1-7, lower is easier) response after a ticket
    # Trends and seasonality.
    satisfaction_trend_per_year: float = 0.0  # NPS/CSAT points gained per year of calendar time
    churn_trend_per_year: float = 0.0  # log change of churn (and minus of expansion) per year
    seasonality: float = 0.0  # amplitude of the yearly cycle in signups and product activity
    peak_day_of_year: int = 75  # the cycle's peak (mid-March by default)
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
        "reach_out_mean_days": config.reach_out_mean_days,
        "time_to_value_days": config.time_to_value_days,
        "nps_first_days": config.nps_first_days,
        "nps_interval_days": config.nps_interval_days,
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
        "reach_out_probability": config.reach_out_probability,
        "churn_early_value_ratio": config.churn_early_value_ratio,
        "contraction_max_cut": config.contraction_max_cut,
        "nps_response_rate": config.nps_response_rate,
        "csat_response_rate": config.csat_response_rate,
        "ces_response_rate": config.ces_response_rate,
        "seasonality": config.seasonality,
    }.items():
        if not 0.0 <= value <= 1.0:
            problems.append(f"{name} must be between 0 and 1, got {value}")
    for name, value in {
        "expansion_mean_growth": config.expansion_mean_growth,
        "reactivations_per_year": config.reactivations_per_year,
        "nps_sigma": config.nps_sigma,
        "nps_invitees": config.nps_invitees,
    }.items():
        if not (math.isfinite(value) and value >= 0):
            problems.append(f"{name} must be a finite number not below 0, got {value}")
    if not 1 <= config.peak_day_of_year <= 366:
        problems.append(
            f"peak_day_of_year must be between 1 and 366, got {config.peak_day_of_year}"
        )
    for milestone in config.milestones:
        if not 0.0 <= milestone.probability <= 1.0 or not milestone.mean_days > 0:
            problems.append(
                f"milestone {milestone.name!r}: probability must be between 0 and 1 "
                "and mean_days above 0"
            )
    segment_names = set(names)
    for response in config.responses:
        where = f"response ({response.channel}, {response.variant})"
        if response.channel not in RESPONSE_CHANNELS:
            problems.append(f"{where}: channel must be one of {', '.join(RESPONSE_CHANNELS)}")
        if not response.decay_days > 0:
            problems.append(f"{where}: decay_days must be above 0, got {response.decay_days}")
        for segment_name, effect in response.effects:
            if segment_name not in segment_names:
                problems.append(f"{where}: unknown segment {segment_name!r}")
            if not effect > -1.0:
                problems.append(
                    f"{where}: the effect on {segment_name!r} must be above -1 "
                    f"(a hazard ratio above 0), got {effect}"
                )
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
    for name, value in {
        "annual_share": segment.annual_share,
        "annual_churn": segment.annual_churn,
        "annual_contraction": segment.annual_contraction,
    }.items():
        if not 0.0 <= value <= 1.0:
            problems.append(f"{name} must be between 0 and 1, got {value}")
    if segment.annual_churn >= 1.0:
        problems.append("annual_churn must be below 1")
    for name, value in {
        "expansions_per_year": segment.expansions_per_year,
        "csm_touches_per_month": segment.csm_touches_per_month,
        "qbr_every_days": segment.qbr_every_days,
        "support_tickets_per_month": segment.support_tickets_per_month,
    }.items():
        if not value >= 0:
            problems.append(f"{name} must not be negative, got {value}")
    if not 0.0 <= segment.nps_mean <= 10.0:
        problems.append(f"nps_mean must be between 0 and 10, got {segment.nps_mean}")
    if not segment.plans:
        problems.append("plans must name at least one plan")
    elif not math.isclose(sum(plan.share for plan in segment.plans), 1.0, abs_tol=1e-9):
        problems.append("plan shares must sum to 1")
    if any(plan.arr_multiplier <= 0 for plan in segment.plans):
        problems.append("every plan's arr_multiplier must be above 0")
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
    return SimulationConfig(responses=(), name="no_effect")


HETEROGENEOUS_VARIANT = "video"
"""The variant name the ``heterogeneous`` scenario's video response applies to."""


def _heterogeneous() -> SimulationConfig:
    responses = (
        Response(
            effects=(("enterprise", 1.2), ("mid_market", 0.5), ("self_serve", 0.05)),
            decay_days=30.0,
        ),
        Response(
            variant=HETEROGENEOUS_VARIANT,
            effects=(("enterprise", 0.2), ("mid_market", 0.4), ("self_serve", 0.9)),
            decay_days=30.0,
        ),
        DEFAULT_RESPONSES[1],
    )
    return SimulationConfig(responses=responses, name="heterogeneous")


def _divergence() -> SimulationConfig:
    return SimulationConfig(
        days=540,
        arrival_days=450,
        satisfaction_trend_per_year=1.5,
        churn_trend_per_year=1.0,
        name="divergence",
    )


def _seasonal() -> SimulationConfig:
    return SimulationConfig(days=400, arrival_days=365, seasonality=0.4, name="seasonal")


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "default",
            "Three segments; an email raises the goal hazard by +100% (enterprise), +60% "
            "(mid-market), +20% (self-serve); a Slack alert's CSM call by more, fading in 14 days.",
            _default,
        ),
        Scenario(
            "no_effect",
            "An A/A world: the same company, but no delivery changes anything in any segment.",
            _no_effect,
        ),
        Scenario(
            "heterogeneous",
            "The email works for enterprise, barely for self-serve; a 'video' variant works for "
            "self-serve and little for enterprise. Effects fade over 30 days.",
            _heterogeneous,
        ),
        Scenario(
            "divergence",
            "Satisfaction rises over 18 months (NPS up 1.5 points a year) while churn climbs and "
            "expansion shrinks, so NRR falls: the trap of reading NPS alone.",
            _divergence,
        ),
        Scenario(
            "seasonal",
            "A yearly cycle (+/-40%) in signups and product activity, peaking in March, over 400 "
            "days.",
            _seasonal,
        ),
    )
}


def scenario(name: str, **overrides: Any) -> SimulationConfig:
    """The configuration of scenario ``name`` with ``overrides`` applied to its fields.

    >>> scenario("no_effect", n_accounts=100).responses
    ()
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

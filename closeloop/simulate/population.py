"""Who the customers are: every account and person, drawn once, up front, as numpy arrays.

Each concern draws from its own random stream (:class:`Stream`), so adding an attribute to one
concern never shifts the draws of another: the milestone thresholds of seed 7 stay the same when
firmographics grow a column. Strings are built only when a day's batch needs them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt
from scipy.special import ndtri

from closeloop.simulate import names
from closeloop.simulate.config import SimulationConfig
from closeloop.simulate.milestone import MICROSECONDS_PER_DAY, NEVER, FloatArray, IntArray

BoolArray = npt.NDArray[np.bool_]


class Stream(IntEnum):
    """One independent random stream per concern, all derived from the config's seed."""

    ARRIVALS = 0
    FIRMOGRAPHICS = 1
    MILESTONE = 2
    ENGAGEMENT = 3
    PEOPLE = 4
    ONBOARDING = 5
    ACTIVITY = 6  # one child stream per simulated day
    ACCOUNT_MIX = 7  # plan tier, billing period, support experience
    SUPPORT = 8  # tickets and their CSAT / CES: one child stream per simulated day
    CSM = 9  # routine CSM activities: one child stream per simulated day
    # Keyed draws (see keyed_uniform): decisions whose inputs a delivery can change.
    CHURN = 20
    EXPANSION = 21
    EXPANSION_SIZE = 22
    CONTRACTION = 23
    CONTRACTION_SIZE = 24
    REACTIVATION = 25
    NPS_RESPONSE = 26
    NPS_SCORE = 27
    REACH_OUT = 28
    REACH_OUT_DELAY = 29
    OPPORTUNITY = 30
    CHURN_REASON = 31
    COMMENT = 32


def generator(seed: int, stream: Stream, *key: int) -> np.random.Generator:
    """The numpy Generator of ``stream`` (and e.g. a day index) for ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(int(stream), *key)))


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


def _splitmix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    return z ^ (z >> np.uint64(31))


def keyed_uniform(seed: int, stream: Stream, *keys: npt.ArrayLike) -> FloatArray:
    """Uniforms in (0, 1) that depend only on the seed, the stream and the keys, elementwise.

    Decisions that a delivery can change (churn at a renewal, an NPS score that depends on
    adoption) draw through this instead of a sequential generator: the same account, renewal
    and seed always get the same number, whatever else happened, so a treated and an untreated
    run share their random numbers exactly (common random numbers).

    >>> a = keyed_uniform(7, Stream.CHURN, [1, 2, 3], 4)
    >>> bool(np.all(a == keyed_uniform(7, Stream.CHURN, [1, 2, 3], 4))), a.shape
    (True, (3,))
    """
    with np.errstate(over="ignore"):
        state = _splitmix(np.array([seed], dtype=np.uint64) ^ np.uint64(int(stream) << 32))
        for key in keys:
            state = _splitmix(state ^ np.asarray(key, dtype=np.int64).astype(np.uint64))
    return ((state >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


def keyed_normal(seed: int, stream: Stream, *keys: npt.ArrayLike) -> FloatArray:
    """Standard normal draws keyed like :func:`keyed_uniform`."""
    return np.asarray(ndtri(keyed_uniform(seed, stream, *keys)), dtype=np.float64)


@dataclass(frozen=True)
class People:
    """Everyone at every account, grouped by account and, within one, in order of joining."""

    account: IntArray  # index of the person's account
    local: IntArray  # 0 for the account's first admin, then 1, 2, ... in order of joining
    created_us: IntArray
    first_name: IntArray  # indexes into names.FIRST_NAMES / LAST_NAMES / PERSON_ROLES
    last_name: IntArray
    role: IntArray
    by_creation: IntArray  # person indexes sorted by created_us (ties by index)

    @property
    def size(self) -> int:
        return len(self.account)


@dataclass(frozen=True)
class Population:
    """Every account of a simulation, sorted by signup time (``acc_000000`` signed up first)."""

    created_us: IntArray  # microseconds since the Unix epoch, naive UTC
    segment: IntArray  # index into config.segments
    frailty: FloatArray  # gamma, mean 1: how readily the account reaches the goal milestone
    threshold: FloatArray  # Exp(1): the cumulative hazard at which it does
    engagement: FloatArray  # multiplies the account's product activity
    seats: IntArray
    employees: IntArray
    arr: FloatArray
    company_name: IntArray  # index into the name combinations, see company_name()
    industry: IntArray
    region: IntArray
    owner: IntArray
    lead_source: IntArray
    integration: IntArray  # which integration it connects when it reaches the goal
    milestone_us: IntArray  # (accounts, config.milestones): when each is reached, or NEVER
    first_person: IntArray  # index of the account's first person in ``people``
    people: People
    plan: IntArray  # index into the segment's plans
    annual: BoolArray  # billed annually (else monthly)
    support: FloatArray  # support experience, standard normal: higher is better

    @property
    def size(self) -> int:
        return len(self.created_us)


def draw_population(config: SimulationConfig) -> Population:
    """Every account and person of ``config``, deterministic in ``config.seed``."""
    n = config.n_accounts
    seed = config.seed
    segments = config.segments
    start_us = _epoch_us(config)

    arrivals = generator(seed, Stream.ARRIVALS)
    offsets = _arrival_offsets(config, np.sort(arrivals.uniform(0.0, config.arrival_days, n)))
    created_us = start_us + np.floor(offsets * MICROSECONDS_PER_DAY).astype(np.int64)
    shares = np.array([s.share for s in segments])
    segment = arrivals.choice(len(segments), size=n, p=shares / shares.sum()).astype(np.int64)

    milestone = generator(seed, Stream.MILESTONE)
    shape = config.frailty_shape
    frailty = milestone.gamma(shape, 1.0 / shape, n)
    threshold = milestone.exponential(1.0, n)

    engaged = generator(seed, Stream.ENGAGEMENT)
    sigma = config.engagement_sigma
    noise = engaged.lognormal(-(sigma**2) / 2.0, sigma, n) if sigma > 0 else np.ones(n)
    engagement = frailty**config.engagement_frailty_link * noise

    firm = generator(seed, Stream.FIRMOGRAPHICS)
    seats = firm.integers(
        _per_segment_int(segment, [s.seats_min for s in segments]),
        _per_segment_int(segment, [s.seats_max for s in segments]) + 1,
    )
    low = _per_segment_float(segment, [s.employees_min for s in segments])
    high = _per_segment_float(segment, [s.employees_max for s in segments])
    employees = np.round(low * (high / low) ** firm.random(n)).astype(np.int64)
    employees = np.maximum(employees, seats)
    arr_median = _per_segment_float(segment, [s.arr_median for s in segments])
    arr_sigma = _per_segment_float(segment, [s.arr_sigma for s in segments])
    arr = arr_median * np.exp(arr_sigma * firm.standard_normal(n))
    company = _company_names(firm, n)
    industry = firm.choice(len(names.INDUSTRIES), size=n, p=names.INDUSTRY_WEIGHTS)
    region = firm.choice(len(names.REGIONS), size=n, p=names.REGION_WEIGHTS)
    owner = firm.integers(0, len(config.owners), n)
    lead_source = firm.integers(0, len(names.LEAD_SOURCES), n)
    integration = firm.integers(0, len(names.INTEGRATIONS), n)

    mix = generator(seed, Stream.ACCOUNT_MIX)
    plan = np.zeros(n, dtype=np.int64)
    multiplier = np.ones(n)
    plan_draw = mix.random(n)
    for index, segment_config in enumerate(segments):
        members = segment == index
        shares = np.cumsum([tier.share for tier in segment_config.plans])
        tier = np.minimum(
            np.searchsorted(shares / shares[-1], plan_draw[members], side="right"),
            len(segment_config.plans) - 1,
        )
        plan[members] = tier
        multiplier[members] = np.array([t.arr_multiplier for t in segment_config.plans])[tier]
    arr = np.round(arr * multiplier, 2)
    annual = mix.random(n) < _per_segment_float(segment, [s.annual_share for s in segments])
    support = mix.standard_normal(n)

    onboarding = generator(seed, Stream.ONBOARDING)
    milestone_us = np.full((n, len(config.milestones)), NEVER, dtype=np.int64)
    for index, onboarding_milestone in enumerate(config.milestones):
        reached = onboarding.random(n) < onboarding_milestone.probability
        delay_days = onboarding.exponential(onboarding_milestone.mean_days, n) / engagement
        milestone_us[:, index] = np.where(
            reached,
            created_us + np.floor(delay_days * MICROSECONDS_PER_DAY).astype(np.int64),
            NEVER,
        )

    people = _draw_people(
        generator(seed, Stream.PEOPLE),
        created_us,
        seats,
        _per_segment_float(segment, [s.onboarding_days for s in segments]),
    )
    first_person = np.concatenate(([0], np.cumsum(seats)[:-1])).astype(np.int64)
    return Population(
        created_us=created_us,
        segment=segment,
        frailty=frailty,
        threshold=threshold,
        engagement=engagement,
        seats=seats.astype(np.int64),
        employees=employees,
        arr=arr,
        company_name=company,
        industry=industry.astype(np.int64),
        region=region.astype(np.int64),
        owner=owner.astype(np.int64),
        lead_source=lead_source.astype(np.int64),
        integration=integration.astype(np.int64),
        milestone_us=milestone_us,
        first_person=first_person,
        people=people,
        plan=plan,
        annual=annual,
        support=support,
    )


def seasonal_factor(config: SimulationConfig, day_of_year: FloatArray | float) -> FloatArray:
    """The yearly cycle's multiplier (mean 1) on a day of the year (1 = 1 January)."""
    phase = 2.0 * np.pi * (np.asarray(day_of_year, dtype=np.float64) - config.peak_day_of_year)
    return np.asarray(1.0 + config.seasonality * np.cos(phase / 365.25), dtype=np.float64)


def _arrival_offsets(config: SimulationConfig, uniform_offsets: FloatArray) -> FloatArray:
    """Signup offsets (days from start): uniform, or following the yearly cycle if seasonal.

    The sorted uniform draws are mapped through the inverse of the seasonal arrival CDF, so the
    draws (and everything keyed to signup order) stay put when seasonality is 0.
    """
    if config.seasonality == 0.0 or len(uniform_offsets) == 0:
        return uniform_offsets
    grid = np.linspace(0.0, config.arrival_days, config.arrival_days * 24 + 1)
    start_doy = config.start.timetuple().tm_yday
    density = seasonal_factor(config, start_doy + grid)
    cdf = np.concatenate(([0.0], np.cumsum((density[1:] + density[:-1]) / 2.0)))
    cdf *= config.arrival_days / cdf[-1]
    return np.asarray(np.interp(uniform_offsets, cdf, grid), dtype=np.float64)


def _epoch_us(config: SimulationConfig) -> int:
    return int(np.datetime64(config.start, "us").astype(np.int64))


def _per_segment_int(segment: IntArray, values: list[int]) -> IntArray:
    """A segment's integer setting for every account."""
    return np.array(values, dtype=np.int64)[segment]


def _per_segment_float(segment: IntArray, values: list[float]) -> FloatArray:
    """A segment's numeric setting for every account."""
    return np.array(values, dtype=np.float64)[segment]


_SUFFIX_COUNT = len(names.COMPANY_SUFFIXES)
_BASE_NAMES = len(names.COMPANY_FIRST_WORDS) * len(names.COMPANY_SECOND_WORDS)
COMPANY_NAME_COMBINATIONS = _BASE_NAMES * _SUFFIX_COUNT


def _company_names(rng: np.random.Generator, n: int) -> IntArray:
    """Distinct name combinations while they last, then the same ones again with a number."""
    weights = np.tile(np.array(names.COMPANY_SUFFIX_WEIGHTS), _BASE_NAMES)
    distinct = min(n, COMPANY_NAME_COMBINATIONS)
    chosen = rng.choice(
        COMPANY_NAME_COMBINATIONS, size=distinct, replace=False, p=weights / weights.sum()
    )
    repeats = np.arange(n) // COMPANY_NAME_COMBINATIONS
    return (chosen[np.arange(n) % max(distinct, 1)] + repeats * COMPANY_NAME_COMBINATIONS).astype(
        np.int64
    )


def _company_words(index: int) -> list[str]:
    repeat, combination = divmod(index, COMPANY_NAME_COMBINATIONS)
    base, suffix = divmod(combination, _SUFFIX_COUNT)
    first, second = divmod(base, len(names.COMPANY_SECOND_WORDS))
    words = [
        names.COMPANY_FIRST_WORDS[first],
        names.COMPANY_SECOND_WORDS[second],
        names.COMPANY_SUFFIXES[suffix],
    ]
    if repeat:
        words.append(str(repeat + 1))
    return [word for word in words if word]


def company_name(index: int) -> str:
    """The company name of a combination index from the population (``"Blue Labs Inc."``)."""
    return " ".join(_company_words(index))


def company_domain(index: int) -> str:
    """The company's domain, under the reserved ``.example`` TLD (``"bluelabsinc.example"``)."""
    return (
        "".join(_SLUGS.get(word) or names.slug(word) for word in _company_words(index)) + ".example"
    )


_SLUGS = {
    word: names.slug(word)
    for word in (*names.COMPANY_FIRST_WORDS, *names.COMPANY_SECOND_WORDS, *names.COMPANY_SUFFIXES)
}


PERSON_NAME_COMBINATIONS = len(names.FIRST_NAMES) * len(names.LAST_NAMES)
# Strides coprime with the number of names: start + j * stride visits distinct names for j < all.
_STRIDES = np.array(
    [k for k in range(1, PERSON_NAME_COMBINATIONS) if math.gcd(k, PERSON_NAME_COMBINATIONS) == 1]
)


def _draw_people(
    rng: np.random.Generator, created_us: IntArray, seats: IntArray, onboarding_days: FloatArray
) -> People:
    """``seats`` people per account: an admin at signup, the others joining over the next weeks."""
    total = int(seats.sum())
    account = np.repeat(np.arange(len(seats), dtype=np.int64), seats)
    first_of_account = np.concatenate(([0], np.cumsum(seats)[:-1])).astype(np.int64)
    local = np.arange(total, dtype=np.int64) - np.repeat(first_of_account, seats)
    lag_days = rng.exponential(1.0, total) * onboarding_days[account]
    lag_days[local == 0] = 0.0
    # Sort the lags within each account so a person's local index is their order of joining.
    lag_days = lag_days[np.lexsort((lag_days, account))]
    created = created_us[account] + np.floor(lag_days * MICROSECONDS_PER_DAY).astype(np.int64)
    start = rng.integers(0, PERSON_NAME_COMBINATIONS, len(seats))
    stride = _STRIDES[rng.integers(0, len(_STRIDES), len(seats))]
    name = (start[account] + local * stride[account]) % PERSON_NAME_COMBINATIONS
    role = rng.choice(len(names.PERSON_ROLES), size=total, p=names.PERSON_ROLE_WEIGHTS)
    role[local == 0] = 0  # every account has an admin with an email from its first minute
    return People(
        account=account,
        local=local,
        created_us=created,
        first_name=(name // len(names.LAST_NAMES)).astype(np.int64),
        last_name=(name % len(names.LAST_NAMES)).astype(np.int64),
        role=role.astype(np.int64),
        by_creation=np.argsort(created, kind="stable").astype(np.int64),
    )

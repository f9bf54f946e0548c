"""Revenue: subscription terms, renewals, churn, expansion, contraction, reactivation.

Every account has a monthly *review* on the anniversary of its signup (or of its reactivation):
``add_months(anchor, k)`` at midnight for k = 1, 2, ... A review is a *renewal* when ``k`` is a
multiple of the billing period (every review for monthly billing, every twelfth for annual).

- At a renewal the account may churn, with a probability that falls with adoption (milestones
  reached, the goal included), early time to value and support experience; otherwise it renews
  for another term, possibly expanded or contracted.
- At any other review of an annual account it may expand mid-term with an add-on that runs to the
  end of the current term.
- A churned account may come back (reactivation) and starts a new anchor.

Subscriptions are contract terms, append-only: each row is written when the term starts and
carries its end date; a churned account simply has no next term. Every decision that adoption can
change draws from :func:`~closeloop.simulate.population.keyed_uniform` keyed by (account, review
number), so a treated and an untreated run share their random numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pyarrow as pa

from closeloop.data.tables import CHURN_REASONS as CHURN_REASONS_TABLE
from closeloop.data.tables import OPPORTUNITIES, SUBSCRIPTIONS, TableSpec
from closeloop.simulate.config import SimulationConfig
from closeloop.simulate.milestone import MICROSECONDS_PER_DAY, NEVER, FloatArray, IntArray
from closeloop.simulate.population import BoolArray, Population, Stream, keyed_uniform

DAYS_PER_YEAR = 365.25
EXPANSION_LOOKBACK_DAYS = 45  # a CSM activity this recent makes an expansion CS-sourced/-influenced
RENEWAL_OPPORTUNITY_LEAD_DAYS = 90

CHURN_REASONS: tuple[tuple[str, bool], ...] = (
    ("low_adoption", True),
    ("poor_onboarding", True),
    ("support_experience", True),
    ("champion_left", True),
    ("budget_cuts", False),
    ("acquired", False),
    ("went_out_of_business", False),
    ("missing_features", False),
)
_REASON_NOTES = {
    "low_adoption": "Team never made it part of their weekly workflow.",
    "poor_onboarding": "Setup took too long; never connected their data.",
    "support_experience": "Frustrated with slow answers on open tickets.",
    "champion_left": "Our champion left the company; nobody picked it up.",
    "budget_cuts": "Tool budget cut across the department.",
    "acquired": "Acquired; the parent company standardised on another tool.",
    "went_out_of_business": "The company wound down.",
    "missing_features": "Needed a feature we do not have yet.",
}


def day_number(moment_us: IntArray) -> IntArray:
    """Days since 1970-01-01 of each timestamp (microseconds)."""
    return np.floor_divide(moment_us, MICROSECONDS_PER_DAY).astype(np.int64)


def add_months(days: IntArray, months: IntArray | int) -> IntArray:
    """Day numbers ``months`` calendar months after ``days``, clipped to the month's last day.

    >>> d = np.array([np.datetime64("2025-01-31", "D").astype(np.int64)])
    >>> str(np.datetime64(int(add_months(d, 1)[0]), "D"))
    '2025-02-28'
    """
    as_dates = days.astype("datetime64[D]")
    month_start = as_dates.astype("datetime64[M]")
    day_of_month = (as_dates - month_start.astype("datetime64[D]")).astype(np.int64)
    target = month_start + np.asarray(months, dtype=np.int64)
    last_day = ((target + 1).astype("datetime64[D]") - 1).astype(np.int64)
    first_day = target.astype("datetime64[D]").astype(np.int64)
    return np.asarray(np.minimum(first_day + day_of_month, last_day), dtype=np.int64)


def adoption_reference(config: SimulationConfig) -> float:
    """The adoption count of a *typical* account: every adoption milestone but one.

    The adoption milestones are the configured onboarding milestones, the goal and a teammate
    joining; a mature account of the default company has reached three of the four on average.
    """
    return float(len(config.milestones) + 1)


def adoption_count(
    population: Population,
    goal_us: IntArray,
    teammate_us: IntArray,
    rows: IntArray,
    at_us: IntArray,
) -> FloatArray:
    """How many adoption milestones each account had reached by ``at_us``.

    They are the configured onboarding milestones, the goal milestone and a teammate joining.
    """
    reached = (population.milestone_us[rows] <= at_us[:, None]).sum(axis=1)
    reached += goal_us[rows] <= at_us
    reached += teammate_us[rows] <= at_us
    return np.asarray(reached, dtype=np.float64)


def churn_probability(
    config: SimulationConfig,
    population: Population,
    rows: IntArray,
    adoption: FloatArray,
    early_value: BoolArray,
    at_us: IntArray,
    start_us: int,
) -> FloatArray:
    """The chance of churning at a renewal for each account (a term of its billing period)."""
    annual_churn = np.array([s.annual_churn for s in config.segments])[population.segment[rows]]
    annual = population.annual[rows]
    term = np.where(annual, annual_churn, -np.expm1(np.log1p(-annual_churn) / 12.0))
    years = (at_us - start_us) / MICROSECONDS_PER_DAY / DAYS_PER_YEAR
    risk = (
        np.exp(-config.churn_adoption_slope * (adoption - adoption_reference(config)))
        * np.where(early_value, config.churn_early_value_ratio, 1.0)
        * np.exp(-config.churn_support_slope * population.support[rows])
        * np.exp(config.churn_trend_per_year * years)
    )
    return np.asarray(-np.expm1(risk * np.log1p(-term)), dtype=np.float64)


def first_churn_before_goal_us(
    config: SimulationConfig,
    population: Population,
    teammate_us: IntArray,
    rows: IntArray,
    until_us: IntArray,
) -> IntArray:
    """When each account would churn while it has not reached the goal (NEVER: not by ``until``).

    An account that churns before reaching the goal never reaches it, so this time caps the goal
    in both worlds of the ground truth. It replays the reviews from signup up to ``until_us`` with
    the goal not reached, which is exactly what the live simulation decides at those reviews.
    """
    start_us = int(config.start.toordinal() - date(1970, 1, 1).toordinal()) * MICROSECONDS_PER_DAY
    created = population.created_us[rows]
    anchor = day_number(created)
    never_goal = np.full(population.size, NEVER, dtype=np.int64)
    period = np.where(population.annual[rows], 12, 1)
    churned = np.full(len(rows), NEVER, dtype=np.int64)
    k = 1
    while True:
        review_us = add_months(anchor, k) * MICROSECONDS_PER_DAY
        pending = (review_us <= until_us) & (churned == NEVER)
        if not pending.any():
            return churned
        renewal = pending & (k % period == 0)
        if renewal.any():
            chosen = rows[renewal]
            adoption = adoption_count(
                population, never_goal, teammate_us, chosen, review_us[renewal]
            )
            p = churn_probability(
                config,
                population,
                chosen,
                adoption,
                np.zeros(len(chosen), dtype=np.bool_),
                review_us[renewal],
                start_us,
            )
            draw = keyed_uniform(config.seed, Stream.CHURN, chosen, k)
            where = np.flatnonzero(renewal)[draw < p]
            churned[where] = review_us[where]
        k += 1


@dataclass
class RevenueRows:
    """Rows of one day: subscriptions, opportunities and churn reasons, as column lists."""

    subscriptions: dict[str, list[object]] = field(default_factory=lambda: _columns(SUBSCRIPTIONS))
    opportunities: dict[str, list[object]] = field(default_factory=lambda: _columns(OPPORTUNITIES))
    churn_reasons: dict[str, list[object]] = field(
        default_factory=lambda: _columns(CHURN_REASONS_TABLE)
    )


def _columns(spec: TableSpec) -> dict[str, list[object]]:
    return {name: [] for name in spec.column_names}


def _append(columns: dict[str, list[object]], **row: object) -> None:
    """Add one row; every column of the table must be given."""
    for name, values in columns.items():
        values.append(row[name])


class RevenueBook:
    """Every account's subscription state, advanced one day at a time."""

    def __init__(
        self,
        config: SimulationConfig,
        population: Population,
        account_ids: list[str],
        teammate_us: IntArray,
    ) -> None:
        self.config = config
        self.population = population
        self.account_ids = account_ids
        self.teammate_us = teammate_us
        n = population.size
        self.start_us = (
            int(config.start.toordinal() - date(1970, 1, 1).toordinal()) * MICROSECONDS_PER_DAY
        )
        segment = population.segment
        self.plan_names = [
            config.segments[int(segment[row])].plans[int(population.plan[row])].name
            for row in range(n)
        ]
        self.period = np.where(population.annual, 12, 1).astype(np.int64)
        self.mrr = np.round(population.arr / 12.0, 2)
        self.quantity = population.seats.astype(np.float64)
        self.active = np.zeros(n, dtype=np.bool_)
        self.signed_up = np.zeros(n, dtype=np.bool_)
        self.churned_us = np.full(n, NEVER, dtype=np.int64)
        self.anchor = day_number(population.created_us)
        self.k = np.zeros(n, dtype=np.int64)  # reviews since the anchor
        self.reviews = np.zeros(n, dtype=np.int64)  # reviews ever (the key of keyed draws)
        self.next_review = add_months(self.anchor, 1)
        self.term_end = add_months(self.anchor, self.period)
        self.terms = np.zeros(n, dtype=np.int64)  # subscription rows written
        self.opportunities = np.zeros(n, dtype=np.int64)
        self.churns = np.zeros(n, dtype=np.int64)
        self.reactivations = np.zeros(n, dtype=np.int64)

    # -- the day ------------------------------------------------------------------------------

    def step(
        self,
        day_index: int,
        signups: IntArray,
        goal_us: IntArray,
        last_csm_us: IntArray,
    ) -> RevenueRows:
        """Signups' first terms, reactivations, then every review due at today's midnight."""
        rows = RevenueRows()
        today = self.start_us // MICROSECONDS_PER_DAY + day_index
        midnight = today * MICROSECONDS_PER_DAY
        self.signed_up[signups] = True
        self.active[signups] = True
        for row in signups:
            self._term(rows, int(row), int(self.anchor[row]), "new")
            self._opportunity(
                rows,
                int(row),
                "new",
                self.mrr[row] * 12.0,
                self._new_source(int(row)),
                int(self.population.created_us[row]),
                int(self.population.created_us[row]),
            )
        self._reactivate(rows, today, midnight)
        due = np.flatnonzero(self.active & (self.next_review == today))
        if len(due):
            self._review(rows, due, today, midnight, goal_us, last_csm_us)
        return rows

    def _reactivate(self, rows: RevenueRows, today: int, midnight: int) -> None:
        churned = np.flatnonzero(self.signed_up & ~self.active)
        if not len(churned) or self.config.reactivations_per_year == 0:
            return
        daily = -np.expm1(-self.config.reactivations_per_year / DAYS_PER_YEAR)
        back = churned[keyed_uniform(self.config.seed, Stream.REACTIVATION, churned, today) < daily]
        for row in back:
            row = int(row)
            self.active[row] = True
            self.reactivations[row] += 1
            self.anchor[row] = today
            self.k[row] = 0
            self.next_review[row] = add_months(np.array([today]), 1)[0]
            self.term_end[row] = add_months(np.array([today]), int(self.period[row]))[0]
            self._term(rows, row, today, "reactivation")
            self._opportunity(
                rows,
                row,
                "new",
                self.mrr[row] * 12.0,
                "sales",
                midnight,
                midnight,
                {"reactivation": True},
            )

    def _review(
        self,
        rows: RevenueRows,
        due: IntArray,
        today: int,
        midnight: int,
        goal_us: IntArray,
        last_csm_us: IntArray,
    ) -> None:
        config, population = self.config, self.population
        self.k[due] += 1
        self.reviews[due] += 1
        k, number = self.k[due], self.reviews[due]
        at = np.full(len(due), midnight, dtype=np.int64)
        adoption = adoption_count(population, goal_us, self.teammate_us, due, at)
        reference = adoption_reference(config)
        early = (goal_us[due] <= at) & (
            goal_us[due] - population.created_us[due]
            <= config.time_to_value_days * MICROSECONDS_PER_DAY
        )
        renewal = k % self.period[due] == 0
        churn_p = churn_probability(config, population, due, adoption, early, at, self.start_us)
        churns = renewal & (keyed_uniform(config.seed, Stream.CHURN, due, number) < churn_p)
        years = (midnight - self.start_us) / MICROSECONDS_PER_DAY / DAYS_PER_YEAR
        yearly = np.array([s.expansions_per_year for s in config.segments])[population.segment[due]]
        expansion_rate = (
            yearly
            / 12.0
            * np.exp(config.expansion_adoption_slope * (adoption - reference))
            * np.exp(-config.churn_trend_per_year * years)
        )
        expands = ~churns & (
            keyed_uniform(config.seed, Stream.EXPANSION, due, number) < -np.expm1(-expansion_rate)
        )
        growth = -config.expansion_mean_growth * np.log(
            keyed_uniform(config.seed, Stream.EXPANSION_SIZE, due, number)
        )
        annual_contraction = np.array([s.annual_contraction for s in config.segments])[
            population.segment[due]
        ]
        term_contraction = np.where(
            self.period[due] == 12,
            annual_contraction,
            -np.expm1(np.log1p(-annual_contraction) / 12.0),
        )
        # Adoption protects against downgrades as it does against churn (same slope).
        contraction = term_contraction * np.exp(
            -config.churn_adoption_slope * (adoption - reference)
        )
        contracts = (
            renewal
            & ~churns
            & ~expands
            & (keyed_uniform(config.seed, Stream.CONTRACTION, due, number) < contraction)
        )
        cut = config.contraction_max_cut * keyed_uniform(
            config.seed, Stream.CONTRACTION_SIZE, due, number
        )
        for index, row in enumerate(due):
            row = int(row)
            if churns[index]:
                self._churn(
                    rows,
                    row,
                    midnight,
                    adoption[index] < reference,
                    annual=bool(renewal[index]) and self.period[row] == 12,
                )
                continue
            old_mrr = float(self.mrr[row])
            if expands[index]:
                self._expand(
                    rows,
                    row,
                    today,
                    midnight,
                    float(growth[index]),
                    bool(renewal[index]),
                    last_csm_us,
                )
            elif contracts[index]:
                self.mrr[row] = round(old_mrr * (1.0 - float(cut[index])), 2)
                self.quantity[row] = max(1.0, round(self.quantity[row] * (1.0 - float(cut[index]))))
            if renewal[index]:
                # Terms run anchor-to-anniversary, so a term clipped to 28 February is followed
                # by one that starts where it ends.
                self.term_end[row] = add_months(
                    np.array([self.anchor[row]]), int(self.k[row] + self.period[row])
                )[0]
                kind = (
                    "expansion"
                    if expands[index]
                    else "contraction"
                    if contracts[index]
                    else "renewal"
                )
                self._term(rows, row, today, kind)
                if self.period[row] == 12:
                    self._opportunity(
                        rows,
                        row,
                        "renewal",
                        self.mrr[row] * 12.0,
                        "cs_influenced",
                        max(
                            midnight - RENEWAL_OPPORTUNITY_LEAD_DAYS * MICROSECONDS_PER_DAY,
                            int(population.created_us[row]),
                        ),
                        midnight,
                    )
            self.next_review[row] = add_months(np.array([self.anchor[row]]), int(self.k[row]) + 1)[
                0
            ]
        self.next_review[due[churns]] = NEVER

    def _expand(
        self,
        rows: RevenueRows,
        row: int,
        today: int,
        midnight: int,
        growth: float,
        renewal: bool,
        last_csm_us: IntArray,
    ) -> None:
        old = float(self.mrr[row])
        added = round(old * growth, 2)
        if added <= 0:
            return
        self.mrr[row] = round(old + added, 2)
        self.quantity[row] = max(self.quantity[row] + 1, round(self.quantity[row] * (1 + growth)))
        if not renewal:  # mid-term: an add-on running to the end of the current term
            self._subscription(
                rows, row, today, added, None, {"movement": "expansion", "add_on": True}
            )
        draw = float(
            keyed_uniform(self.config.seed, Stream.OPPORTUNITY, [row], int(self.reviews[row]))[0]
        )
        recent = last_csm_us[row] != NEVER and midnight - last_csm_us[row] <= (
            EXPANSION_LOOKBACK_DAYS * MICROSECONDS_PER_DAY
        )
        if recent:
            source = "cs_sourced" if draw < 0.5 else "cs_influenced"
        else:
            source = "sales" if draw < 0.7 else "marketing"
        lead_days = 7 + int(draw * 1e6) % 38
        self._opportunity(
            rows,
            row,
            "expansion",
            added * 12.0,
            source,
            max(midnight - lead_days * MICROSECONDS_PER_DAY, int(self.population.created_us[row])),
            midnight,
        )

    def _churn(
        self, rows: RevenueRows, row: int, midnight: int, low_adoption: bool, *, annual: bool
    ) -> None:
        self.active[row] = False
        self.churned_us[row] = midnight
        self.churns[row] += 1
        weights = np.array([2.0, 1.0, 1.0, 0.8, 1.0, 0.4, 0.3, 0.8])
        if low_adoption:
            weights[:2] *= 3.0
        if self.population.support[row] < -0.5:
            weights[2] *= 4.0
        draw = float(
            keyed_uniform(self.config.seed, Stream.CHURN_REASON, [row], int(self.reviews[row]))[0]
        )
        reason, controllable = CHURN_REASONS[
            int(np.searchsorted(np.cumsum(weights) / weights.sum(), draw, side="right"))
        ]
        _append(
            rows.churn_reasons,
            churn_id=f"churn_{self.account_ids[row]}_{int(self.churns[row])}",
            account_id=self.account_ids[row],
            churned_at=midnight,
            reason=reason,
            controllable=controllable,
            notes=_REASON_NOTES[reason],
            properties=json.dumps({"lost_mrr": float(self.mrr[row])}),
        )
        if annual:
            self._opportunity(
                rows,
                row,
                "renewal",
                self.mrr[row] * 12.0,
                "cs_influenced",
                max(
                    midnight - RENEWAL_OPPORTUNITY_LEAD_DAYS * MICROSECONDS_PER_DAY,
                    int(self.population.created_us[row]),
                ),
                midnight,
                status="lost",
            )

    def _term(self, rows: RevenueRows, row: int, start_day: int, movement: str) -> None:
        """A new contract term at the account's current MRR and quantity."""
        self._subscription(
            rows,
            row,
            start_day,
            float(self.mrr[row]),
            int(self.quantity[row]),
            {"movement": movement},
        )

    def _subscription(
        self,
        rows: RevenueRows,
        row: int,
        start_day: int,
        mrr: float,
        quantity: int | None,
        properties: dict[str, object],
    ) -> None:
        """A subscription row from ``start_day`` to the end of the current term."""
        self.terms[row] += 1
        _append(
            rows.subscriptions,
            subscription_id=f"sub_{self.account_ids[row]}_{int(self.terms[row]):03d}",
            account_id=self.account_ids[row],
            plan=self.plan_names[row],
            start_date=_date(start_day),
            end_date=_date(int(self.term_end[row])),
            mrr=mrr,
            billing_period_months=int(self.period[row]),
            quantity=quantity,
            properties=json.dumps(properties),
        )

    def _opportunity(
        self,
        rows: RevenueRows,
        row: int,
        kind: str,
        amount: float,
        source: str,
        created_us: int,
        closed_us: int,
        properties: dict[str, object] | None = None,
        status: str = "won",
    ) -> None:
        self.opportunities[row] += 1
        _append(
            rows.opportunities,
            opportunity_id=f"opp_{self.account_ids[row]}_{int(self.opportunities[row]):03d}",
            account_id=self.account_ids[row],
            kind=kind,
            amount=round(float(amount), 2),
            source=source,
            created_at=created_us,
            closed_at=closed_us,
            status=status,
            properties=json.dumps(properties) if properties else None,
        )

    def _new_source(self, row: int) -> str:
        lead = int(self.population.lead_source[row])
        return ("marketing", "sales", "sales", "marketing")[lead]


def _date(day: int) -> date:
    return date.fromordinal(date(1970, 1, 1).toordinal() + day)


def as_table(columns: dict[str, list[object]], schema: pa.Schema) -> pa.Table:
    """Column lists to a table of ``schema`` (timestamps given as microseconds)."""
    arrays = []
    for schema_field in schema:
        values = columns[schema_field.name]
        if pa.types.is_timestamp(schema_field.type):
            arrays.append(pa.array(values, pa.int64()).cast(schema_field.type))
        else:
            arrays.append(pa.array(values, schema_field.type))
    return pa.Table.from_arrays(arrays, schema=schema)

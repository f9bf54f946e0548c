"""The outcomes pages: ``/outcomes`` (the index) and one page per outcome result the CLI has —
revenue (MRR movements, NRR, GRR, churn, expansion by source), adoption, voice of the customer,
the divergence alert, the team's scorecards and the churn review — each with its chart and
tables. Every page calls the service its API route calls, so ``PATH.json`` is the API's model
for the same parameters (``/outcomes/revenue.json?start=…&end=…&period=month`` is
``GET /api/outcomes/revenue?start=…&end=…&period=month``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from closeloop.present import format as fmt
from closeloop.present import journey_charts as charts
from closeloop.schemas.adoption import ActivitySummary, Adoption
from closeloop.schemas.churn_review import ChurnReview
from closeloop.schemas.overviews import OutcomePage, OutcomePages
from closeloop.schemas.revenue_outcomes import RevenueOutcomes, RevenuePeriod, RevenueRow
from closeloop.schemas.team import Share, TeamOutcomes
from closeloop.schemas.voc import Divergence, Voc
from closeloop.services import churn_review as churn_service
from closeloop.services import data as data_service
from closeloop.services import outcomes_adoption as adoption_service
from closeloop.services import outcomes_revenue as revenue_service
from closeloop.services import outcomes_team as team_service
from closeloop.services import outcomes_voc as voc_service
from closeloop.web.journey_common import account_link, now, query_day, query_time
from closeloop.web.pages import Badge, BadParameterError, Cell, Page, PageRequest, Table, Tone, page

DEFAULT_DAYS = 90  # the window a page shows without start and end


class VocPeriod(StrEnum):
    MONTH = "month"
    QUARTER = "quarter"


class AdoptionPeriod(StrEnum):
    MONTH = "month"


PAGES = OutcomePages(
    pages=[
        OutcomePage(
            name="Revenue",
            path="/outcomes/revenue",
            api="/api/outcomes/revenue",
            command="closeloop outcomes revenue",
            description="MRR movements, NRR, GRR, logo and revenue churn, ARPA, CLV and "
            "expansion by source, with the trend per month or quarter.",
        ),
        OutcomePage(
            name="Adoption",
            path="/outcomes/adoption",
            api="/api/outcomes/adoption",
            command="closeloop outcomes adoption",
            description="Active accounts and users, stickiness, feature adoption with "
            "intervals, engagement depth, usage drops and time to first value.",
        ),
        OutcomePage(
            name="Voice of the customer",
            path="/outcomes/voc",
            api="/api/outcomes/voc",
            command="closeloop outcomes voc",
            description="NPS, CSAT and CES with intervals, response rates, the trend, "
            "segments and the newest comments.",
        ),
        OutcomePage(
            name="Divergence",
            path="/outcomes/divergence",
            api="/api/outcomes/divergence",
            command="closeloop outcomes divergence",
            description="The alert when satisfaction rises while net revenue retention is "
            "flat or falling.",
        ),
        OutcomePage(
            name="Team",
            path="/outcomes/team",
            api="/api/outcomes/team",
            command="closeloop outcomes team",
            description="A scorecard per CSM on what CS can influence, activities and "
            "churn reasons.",
        ),
        OutcomePage(
            name="Churn review",
            path="/outcomes/churn-review",
            api="/api/churn/review",
            command="closeloop churn review",
            description="Every churn grouped by reason: controllability, the stage it "
            "stalled in, health on the way out, jobs and success plans.",
        ),
    ]
)


@page("/outcomes", template="outcomes_index.html.j2", nav="Outcomes", title="Outcomes")
def outcomes_index(request: PageRequest) -> Page:
    return Page(
        model=PAGES,
        tables={
            "pages": Table(
                columns=["outcome", "what it shows", "CLI", "API"],
                rows=[[p.name, p.description, p.command, p.api] for p in PAGES.pages],
            )
        },
        context={"pages": PAGES.pages},
    )


# -- shared pieces ---------------------------------------------------------------------------


def _window(request: PageRequest) -> tuple[date, date]:
    """``start`` and ``end`` (dates; end exclusive), default the last :data:`DEFAULT_DAYS`."""
    end = query_day(request, "end") or now(request).date() + timedelta(days=1)
    start = query_day(request, "start") or end - timedelta(days=DEFAULT_DAYS)
    if start >= end:
        raise BadParameterError(f"parameter 'start': {start} is not before the end {end}")
    return start, end


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time())


def _field(name: str, label: str, value: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "label": label, "value": value, **more}


def _window_fields(start: date, end: date) -> list[dict[str, Any]]:
    return [
        _field("start", "Start (inclusive)", str(start), placeholder="YYYY-MM-DD"),
        _field("end", "End (exclusive)", str(end), placeholder="YYYY-MM-DD"),
    ]


def _choice(name: str, label: str, value: str, options: Sequence[str]) -> dict[str, Any]:
    return _field(name, label, value, options=["", *options])


def _interval(low: float | None, high: float | None, *, percent: bool = False) -> str:
    if low is None or high is None:
        return fmt.MISSING
    if percent:
        return f"[{fmt.pct(low)}, {fmt.pct(high)}]"
    return f"[{low:.1f}, {high:.1f}]"


def _share(share: Share) -> str:
    return f"{fmt.pct(share.rate)} ({share.successes}/{share.n})"


def _money(value: float | None) -> str:
    return fmt.money(value, signed=False)


def _figure(value: str, label: str) -> dict[str, str]:
    return {"value": value, "label": label}


def _page(
    model: Any,
    *,
    title: str,
    lead: str,
    tables: dict[str, Table],
    fields: list[dict[str, Any]],
    figures: Sequence[dict[str, str]] = (),
    chart_specs: Sequence[tuple[str, dict[str, Any], str]] = (),
    warnings: Sequence[str] = (),
    api: str,
) -> Page:
    return Page(
        model=model,
        title=title,
        template="outcomes_page.html.j2",
        tables=tables,
        context={
            "lead": lead,
            "fields": fields,
            "figures": list(figures),
            "charts": list(chart_specs),
            "warnings": list(warnings),
            "api": api,
        },
    )


# -- revenue ---------------------------------------------------------------------------------


def _revenue_row(label: str, row: RevenueRow) -> list[Cell]:
    return [
        label,
        row.starting_accounts,
        row.new_accounts,
        row.churned_accounts,
        row.ending_accounts,
        _money(row.starting_mrr),
        fmt.money(row.new_mrr),
        fmt.money(row.expansion_mrr),
        fmt.money(-row.contraction_mrr),
        fmt.money(-row.churned_mrr),
        fmt.money(row.reactivation_mrr),
        _money(row.ending_mrr),
        fmt.pct(row.nrr),
        fmt.pct(row.grr),
        fmt.pct(row.customer_churn_rate),
        fmt.pct(row.gross_mrr_churn_rate),
        _money(row.arpa),
    ]


REVENUE_COLUMNS = [
    "period",
    "customers at start",
    "new",
    "churned",
    "at end",
    "MRR at start",
    "new MRR",
    "expansion",
    "contraction",
    "churned MRR",
    "reactivation",
    "MRR at end",
    "NRR",
    "GRR",
    "logo churn",
    "gross MRR churn",
    "ARPA",
]


def _row_label(row: RevenueRow) -> str:
    span = f"{row.period_start} – {row.period_end}"
    return f"{row.group}: {span}" if row.group else span


@page("/outcomes/revenue", template="outcomes_page.html.j2", title="Revenue outcomes")
def revenue_page(request: PageRequest) -> Page:
    start, end = _window(request)
    period = request.query_choice("period", RevenuePeriod)
    by = request.query_str("by")
    with request.workspace() as workspace:
        result: RevenueOutcomes = revenue_service.revenue(
            workspace, start, end, period=period, by=by
        )
    total = result.total
    sources = Table(
        columns=["source", "expansion MRR", "movements"],
        rows=[
            [s.source.replace("_", " "), fmt.money(s.expansion_mrr), s.movements]
            for s in total.expansion_by_source
        ],
    )
    trend = [
        {"period": str(row.period_start), "series": series, "value": value}
        for row in result.rows
        for series, value in (("NRR", row.nrr), ("GRR", row.grr))
        if value is not None and row.group is None
    ]
    specs = [
        (
            "sources",
            charts.bars(
                [
                    {"source": s.source.replace("_", " "), "mrr": s.expansion_mrr}
                    for s in total.expansion_by_source
                ],
                category="source",
                value="mrr",
                value_title="expansion MRR",
                colour="#1a7f37",
            ),
            "Expansion MRR by source",
        )
    ]
    if trend:
        specs.insert(
            0,
            (
                "retention",
                charts.trend(
                    trend, x="period", y="value", y_title="retention", series="series", percent=True
                ),
                "NRR and GRR per period",
            ),
        )
    return _page(
        result,
        title="Revenue outcomes",
        lead=f"MRR movements for [{result.start}, {result.end}), "
        f"method {result.policy.method.value}.",
        tables={
            "total": Table(columns=REVENUE_COLUMNS, rows=[_revenue_row("whole window", total)]),
            "periods": Table(
                columns=REVENUE_COLUMNS, rows=[_revenue_row(_row_label(r), r) for r in result.rows]
            ),
            "expansion_by_source": sources,
        },
        fields=[
            *_window_fields(start, end),
            _choice("period", "Trend per", period.value if period else "", ["month", "quarter"]),
            _field("by", "Group by (attribute)", by or ""),
        ],
        figures=[
            _figure(fmt.pct(total.nrr), "net revenue retention"),
            _figure(fmt.pct(total.grr), "gross revenue retention"),
            _figure(fmt.pct(total.customer_churn_rate), "logo churn"),
            _figure(fmt.pct(total.gross_mrr_churn_rate), "gross MRR churn"),
            _figure(fmt.money(total.expansion_mrr), "expansion MRR"),
        ],
        chart_specs=specs,
        api=f"/api/outcomes/revenue?start={start}&end={end}"
        + (f"&period={period.value}" if period else ""),
    )


# -- adoption --------------------------------------------------------------------------------


@page("/outcomes/adoption", template="outcomes_page.html.j2", title="Adoption")
def adoption_page(request: PageRequest) -> Page:
    start, end = _window(request)
    by = request.query_str("by")
    period = request.query_choice("period", AdoptionPeriod)
    value_event = request.query_str("value_event")
    with request.workspace() as workspace:
        result: Adoption = adoption_service.adoption(
            workspace,
            _midnight(start),
            _midnight(end),
            by=by,
            period=period.value if period else None,
            value_event=value_event,
        )
    overall = result.overall
    activity_columns = ["group", "active accounts", "active users", "mean DAU", "stickiness"]
    groups: list[tuple[str, ActivitySummary]] = [
        ("all", overall),
        *[(s.segment or "(no value)", s) for s in result.segments],
        *[(f"{p.period_start:%Y-%m}", p) for p in result.periods],
    ]
    activity_rows: list[list[Cell]] = [
        [
            label,
            group.active_accounts,
            group.active_users,
            fmt.num(group.mean_daily_active_users),
            fmt.pct(group.stickiness),
        ]
        for label, group in groups
    ]
    tables = {
        "activity": Table(columns=activity_columns, rows=activity_rows),
        "features": Table(
            columns=["feature", "adopted", "eligible", "rate", "95% interval (Wilson)"],
            rows=[
                [
                    f.feature,
                    f.adopted_accounts,
                    f.eligible_accounts,
                    fmt.pct(f.adoption_rate),
                    _interval(f.ci_lower, f.ci_upper, percent=True),
                ]
                for f in result.feature_adoption
            ],
        ),
        "depth": Table(
            columns=["key features used", "accounts"],
            rows=[[b.key_features_used, b.accounts] for b in result.engagement_depth.distribution],
        ),
        "usage_drops": Table(
            columns=["account", "earlier events", "recent events", "change"],
            rows=[
                [account_link(d.account_id), d.earlier_events, d.recent_events, fmt.pct(d.change)]
                for d in result.usage_drops.flagged
            ],
            caption="Usage drops",
        ),
    }
    if result.time_to_value is not None:
        tables["time_to_value"] = Table(
            columns=["signup cohort", "accounts", "reached value", "censored", "median days"],
            rows=[
                [c.cohort, c.accounts, c.reached_value, c.censored, fmt.num(c.median_days)]
                for c in result.time_to_value.cohorts
            ],
        )
    return _page(
        result,
        title="Adoption",
        lead=f"Activity in [{result.settings.start:%Y-%m-%d}, {result.settings.end:%Y-%m-%d}).",
        tables=tables,
        fields=[
            *_window_fields(start, end),
            _field("by", "Split by (accounts column)", by or ""),
            _choice("period", "Trend per", period.value if period else "", ["month"]),
            _field("value_event", "First-value event", value_event or ""),
        ],
        figures=[
            _figure(fmt.count(overall.active_accounts), "active accounts"),
            _figure(fmt.count(overall.active_users), "active users"),
            _figure(fmt.pct(overall.stickiness), "stickiness (DAU/MAU)"),
            _figure(fmt.num(result.engagement_depth.mean_key_features_used), "key features used"),
            _figure(fmt.count(len(result.usage_drops.flagged)), "usage drops flagged"),
        ],
        chart_specs=[
            (
                "features",
                charts.bars(
                    [
                        {"feature": f.feature, "rate": f.adoption_rate}
                        for f in result.feature_adoption
                        if f.adoption_rate is not None
                    ],
                    category="feature",
                    value="rate",
                    value_title="accounts that adopted it",
                    percent=True,
                ),
                "Feature adoption among active accounts",
            )
        ],
        api=f"/api/outcomes/adoption?start={start}T00:00:00&end={end}T00:00:00",
    )


# -- voice of the customer -------------------------------------------------------------------


@page("/outcomes/voc", template="outcomes_page.html.j2", title="Voice of the customer")
def voc_page(request: PageRequest) -> Page:
    start, end = _window(request)
    period = request.query_choice("period", VocPeriod, VocPeriod.MONTH) or VocPeriod.MONTH
    by = request.query_str("by")
    with request.workspace() as workspace:
        result: Voc = voc_service.voc(
            workspace, _midnight(start), _midnight(end), period=period.value, by=by
        )
    headline = Table(
        columns=["measure", "level", "value", "95% interval", "responses"],
        rows=[
            [
                "NPS",
                "respondents",
                fmt.num(result.nps.value),
                _interval(result.nps.lower, result.nps.upper),
                result.nps.responses,
            ],
            [
                "NPS",
                "accounts",
                fmt.num(result.account_level.nps.value),
                _interval(result.account_level.nps.lower, result.account_level.nps.upper),
                result.account_level.nps.responses,
            ],
            [
                "CSAT",
                "respondents",
                fmt.num(result.csat.value),
                _interval(result.csat.lower, result.csat.upper),
                result.csat.responses,
            ],
            [
                "CSAT",
                "accounts",
                fmt.num(result.account_level.csat.value),
                _interval(result.account_level.csat.lower, result.account_level.csat.upper),
                result.account_level.csat.responses,
            ],
            [
                "CES",
                "respondents",
                fmt.num(result.ces.value, 2),
                _interval(result.ces.lower, result.ces.upper),
                result.ces.responses,
            ],
        ],
    )

    def group_rows(groups: Sequence[Any]) -> list[list[Cell]]:
        return [
            [
                g.key,
                fmt.num(g.respondents.nps.value),
                g.respondents.nps.responses,
                fmt.num(g.respondents.csat.value),
                g.respondents.csat.responses,
                fmt.num(g.respondents.ces.value, 2),
            ]
            for g in groups
        ]

    group_columns = ["group", "NPS", "NPS answers", "CSAT %", "CSAT answers", "CES"]
    tables = {
        "headline": headline,
        "response_rates": Table(
            columns=[
                "survey",
                "accounts active",
                "answering",
                "rate",
                "people",
                "answering",
                "rate",
            ],
            rows=[
                [
                    r.kind.upper(),
                    r.accounts_active,
                    r.accounts_responding,
                    fmt.num(r.account_response_rate),
                    r.people,
                    r.people_responding,
                    fmt.num(r.people_response_rate),
                ]
                for r in result.response_rates
            ],
        ),
        "trend": Table(columns=group_columns, rows=group_rows(result.trend)),
        "segments": Table(columns=group_columns, rows=group_rows(result.segments)),
        "comments": Table(
            columns=["account", "survey", "score", "answered", "comment"],
            rows=[
                [
                    account_link(c.account_id),
                    c.kind.upper(),
                    f"{c.score:g}",
                    f"{c.responded_at:%Y-%m-%d}",
                    c.comment,
                ]
                for c in result.comments
            ],
            caption=f"Newest comments ({len(result.comments)} of {result.comments_total})",
        ),
    }
    trend = [
        {"period": g.key, "series": "NPS", "value": g.respondents.nps.value}
        for g in result.trend
        if g.respondents.nps.value is not None
    ]
    return _page(
        result,
        title="Voice of the customer",
        lead=f"Survey answers in [{result.start:%Y-%m-%d}, {result.end:%Y-%m-%d}).",
        tables=tables,
        fields=[
            *_window_fields(start, end),
            _choice("period", "Trend per", period.value, ["month", "quarter"]),
            _field("by", "Split by (attribute)", by or ""),
        ],
        figures=[
            _figure(fmt.num(result.nps.value), f"NPS ({result.nps.responses} answers)"),
            _figure(f"{fmt.num(result.csat.value)}%", f"CSAT ({result.csat.responses} answers)"),
            _figure(fmt.num(result.ces.value, 2), f"CES ({result.ces.responses} answers)"),
        ],
        chart_specs=(
            [("nps", charts.trend(trend, x="period", y="value", y_title="NPS"), "NPS per period")]
            if trend
            else []
        ),
        api=f"/api/outcomes/voc?start={start}T00:00:00&end={end}T00:00:00&period={period.value}",
    )


# -- divergence ------------------------------------------------------------------------------


@page("/outcomes/divergence", template="outcomes_page.html.j2", title="Divergence alert")
def divergence_page(request: PageRequest) -> Page:
    end = query_time(request, "end")
    periods = request.query_int("periods", voc_service.DEFAULT_PERIODS, minimum=2, maximum=120)
    assert periods is not None
    period = request.query_choice("period", VocPeriod, VocPeriod.MONTH) or VocPeriod.MONTH
    with request.workspace() as workspace:
        result: Divergence = voc_service.divergence(
            workspace,
            end or data_service.default_as_of(workspace),
            periods=periods,
            period=period.value,
        )
    rows = [
        {"period": p.key, "series": series, "value": value}
        for p in result.series
        for series, value in (("NPS", p.nps), ("CSAT %", p.csat), ("NRR %", p.nrr))
        if value is not None
    ]
    return _page(
        result,
        title="Divergence alert",
        lead=(
            "FIRED: satisfaction is rising while net revenue retention is flat or falling."
            if result.fired
            else "Not fired: satisfaction and net revenue retention do not diverge."
        )
        + f" Periods from {result.start:%Y-%m-%d} to {result.end:%Y-%m-%d}; NRR from "
        f"{result.nrr_source}.",
        tables={
            "rules": Table(
                columns=[
                    "rule",
                    "fired",
                    "satisfaction slope / year",
                    "z",
                    "NRR slope (pp/year)",
                    "why",
                ],
                rows=[
                    [
                        r.name.replace("_", " "),
                        Badge("fired", Tone.bad) if r.fired else Badge("no", Tone.good),
                        fmt.num(r.satisfaction_slope, 2),
                        fmt.num(r.satisfaction_slope_z, 2),
                        fmt.num(r.nrr_slope, 2),
                        r.explanation,
                    ]
                    for r in result.rules
                ],
            ),
            "series": Table(
                columns=[
                    "period",
                    "NPS",
                    "NPS answers",
                    "CSAT %",
                    "CSAT answers",
                    "NRR %",
                    "MRR at start",
                ],
                rows=[
                    [
                        p.key,
                        fmt.num(p.nps),
                        p.nps_responses,
                        fmt.num(p.csat),
                        p.csat_responses,
                        fmt.num(p.nrr),
                        _money(p.starting_mrr),
                    ]
                    for p in result.series
                ],
            ),
        },
        fields=[
            _field(
                "end", "Periods before", request.query_str("end") or "", placeholder="YYYY-MM-DD"
            ),
            _field("periods", "Periods", str(periods)),
            _choice("period", "Period", period.value, ["month", "quarter"]),
        ],
        figures=[
            _figure("fired" if result.fired else "not fired", "the alert"),
            _figure(fmt.num(result.nps_slope, 1), "NPS points / year"),
            _figure(fmt.num(result.csat_slope, 1), "CSAT pp / year"),
            _figure(fmt.num(result.nrr_slope, 1), "NRR pp / year"),
        ],
        chart_specs=[
            (
                "divergence",
                charts.trend(rows, x="period", y="value", y_title="value", series="series"),
                "NPS, CSAT and NRR per period",
            )
        ]
        if rows
        else [],
        api=f"/api/outcomes/divergence?periods={periods}&period={period.value}",
    )


# -- team ------------------------------------------------------------------------------------


@page("/outcomes/team", template="outcomes_page.html.j2", title="Team outcomes")
def team_page(request: PageRequest) -> Page:
    start, end = _window(request)
    with request.workspace() as workspace:
        result: TeamOutcomes = team_service.team_outcomes(
            workspace, _midnight(start), _midnight(end)
        )
    churn = result.churn
    return _page(
        result,
        title="Team outcomes",
        lead=f"Per CSM ({result.by}) for [{result.start:%Y-%m-%d}, {result.end:%Y-%m-%d}): "
        "what CS can influence, beside revenue.",
        tables={
            "scorecards": Table(
                columns=[
                    "CSM",
                    "accounts",
                    "activities / account",
                    "contacts engaged / account",
                    "sponsors",
                    "references",
                    "goals achieved",
                    "NPS",
                    "CSAT",
                    "controllable churns",
                    "treated completion",
                    "holdout completion",
                    "NRR",
                ],
                rows=[
                    [
                        s.csm,
                        s.accounts,
                        fmt.num(s.activities_per_account, 2),
                        fmt.num(s.contacts_engaged_per_account, 2),
                        fmt.pct(s.sponsor_share),
                        fmt.pct(s.reference_share),
                        s.goals_achieved,
                        fmt.num(s.nps),
                        _share(s.csat),
                        s.controllable_churns,
                        _share(s.treated_completion),
                        _share(s.holdout_completion),
                        fmt.pct(s.nrr),
                    ]
                    for s in result.scorecards
                ],
            ),
            "activities": Table(
                columns=["owner", "kind", "activities", "accounts touched", "per account"],
                rows=[
                    [
                        a.owner,
                        a.kind,
                        a.activities,
                        a.accounts_touched,
                        fmt.num(a.activities_per_account, 2),
                    ]
                    for a in result.activities
                ],
            ),
            "churn_reasons": Table(
                columns=["reason", "controllable", "churns", "MRR lost"],
                rows=[
                    [
                        r.reason,
                        "" if r.controllable is None else ("yes" if r.controllable else "no"),
                        r.churns,
                        _money(r.mrr_lost),
                    ]
                    for r in churn.reasons
                ],
            ),
        },
        fields=_window_fields(start, end),
        figures=[
            _figure(fmt.count(len(result.scorecards)), "CSMs"),
            _figure(fmt.count(churn.churns), "churns"),
            _figure(fmt.pct(churn.controllable_share.rate), "of churns controllable"),
            _figure(_money(churn.mrr_lost), "MRR lost"),
        ],
        chart_specs=[
            (
                "nrr",
                charts.bars(
                    [{"csm": s.csm, "nrr": s.nrr} for s in result.scorecards if s.nrr is not None],
                    category="csm",
                    value="nrr",
                    value_title="net revenue retention of the book",
                    percent=True,
                ),
                "NRR per CSM",
            )
        ],
        api=f"/api/outcomes/team?start={start}T00:00:00&end={end}T00:00:00",
    )


# -- churn review ----------------------------------------------------------------------------


@page("/outcomes/churn-review", template="outcomes_page.html.j2", title="Churn review")
def churn_review_page(request: PageRequest) -> Page:
    start, end = _window(request)
    lookback = request.query_int(
        "lookback", churn_service.DEFAULT_LOOKBACK_DAYS, minimum=1, maximum=3650
    )
    assert lookback is not None
    with request.workspace() as workspace:
        result: ChurnReview = churn_service.churn_review(
            workspace, _midnight(start), _midnight(end), lookback_days=lookback
        )
    return _page(
        result,
        title="Churn review",
        lead=f"Every churn in [{result.start:%Y-%m-%d}, {result.end:%Y-%m-%d}), by reason.",
        tables={
            "reasons": Table(
                columns=[
                    "reason",
                    "controllable",
                    "churns",
                    "MRR lost",
                    "never in a job",
                    "treated",
                    "with a plan",
                    "plan objectives met / due",
                    "stalled in",
                ],
                rows=[
                    [
                        g.reason,
                        "" if g.controllable is None else ("yes" if g.controllable else "no"),
                        g.churns,
                        _money(g.mrr_lost),
                        g.never_in_a_job,
                        g.treated,
                        g.with_plan,
                        f"{g.plan_objectives_met} / {g.plan_objectives_due}",
                        ", ".join(f"{s.stage} ({s.accounts})" for s in g.stalled),
                    ]
                    for g in result.groups
                ],
            ),
            "accounts": Table(
                columns=[
                    "account",
                    "name",
                    "owner",
                    "churned",
                    "reason",
                    "MRR lost",
                    "stalled in",
                    "health change",
                    "jobs",
                    "plans",
                ],
                rows=[
                    [
                        account_link(a.account_id),
                        a.name or "",
                        a.owner or "",
                        f"{a.churned_at:%Y-%m-%d}",
                        a.reason,
                        _money(a.mrr_lost),
                        a.stalled_stage.stage if a.stalled_stage else "",
                        fmt.num(a.health_change),
                        ", ".join(f"{j.job} ({j.arm})" for j in a.jobs),
                        len(a.plans),
                    ]
                    for g in result.groups
                    for a in g.accounts
                ],
            ),
        },
        fields=[
            *_window_fields(start, end),
            _field("lookback", "Health history (days)", str(lookback)),
        ],
        figures=[
            _figure(fmt.count(result.churns), "churns"),
            _figure(fmt.count(result.controllable_churns), "controllable"),
            _figure(_money(result.mrr_lost), "MRR lost"),
        ],
        chart_specs=[
            (
                "reasons",
                charts.bars(
                    [{"reason": g.reason, "churns": g.churns} for g in result.groups],
                    category="reason",
                    value="churns",
                    value_title="churns",
                    colour="#cf222e",
                ),
                "Churns per reason",
            )
        ]
        if result.groups
        else [],
        warnings=result.warnings,
        api=f"/api/churn/review?start={start}T00:00:00&end={end}T00:00:00&lookback={lookback}",
    )

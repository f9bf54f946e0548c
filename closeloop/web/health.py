"""The health pages: ``/health`` (every score over every account: bands, distribution, the
lowest-scoring accounts) and ``/health/backtest`` (``closeloop health backtest``: AUC with its
interval, top-decile lift and calibration, per score and segment).

JSON twins: ``/health.json`` is :class:`~closeloop.schemas.overviews.HealthOverview`;
``/health/backtest.json`` is ``GET /api/health-scores/backtest`` with the same ``at`` (default:
one horizon before now, so the outcomes have happened) and ``horizon_days``.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

from closeloop.present import format as fmt
from closeloop.present import journey_charts as charts
from closeloop.schemas.health import CalibrationRow, Discrimination, HealthBacktest
from closeloop.schemas.overviews import HealthOverview
from closeloop.services import health as service
from closeloop.services import overviews
from closeloop.web.journey_common import account_link, now, query_float, query_time
from closeloop.web.pages import Badge, Cell, Page, PageRequest, Table, Tone, page

BAND_TONE = {"healthy": Tone.good, "concerning": Tone.warn, "poor": Tone.bad}
STATUS_TONE = {"ok": Tone.good, "no_events": Tone.neutral, "no_non_events": Tone.neutral}


def _band(band: str | None) -> Badge | str:
    return Badge(band, BAND_TONE.get(band, Tone.neutral)) if band else "no score"


def _interval(low: float | None, high: float | None, *, percent: bool) -> str:
    if low is None or high is None:
        return fmt.MISSING
    if percent:
        return f"[{fmt.pct(low)}, {fmt.pct(high)}]"
    return f"[{low:.3f}, {high:.3f}]"


# -- /health ---------------------------------------------------------------------------------


def bands_table(overview: HealthOverview) -> Table:
    rows: list[list[Cell]] = []
    for score in overview.scores:
        for band, accounts in score.bands.items():
            share = accounts / score.scored if score.scored else None
            rows.append([score.score_name, _band(band), accounts, fmt.pct(share)])
        rows.append([score.score_name, "no score", score.accounts - score.scored, ""])
    return Table(columns=["score", "band", "accounts", "share of scored"], rows=rows)


def lowest_table(overview: HealthOverview) -> Table:
    return Table(
        columns=["score", "account", "segment", "score value", "band"],
        rows=[
            [
                score.score_name,
                account_link(account.account_id),
                account.segment or "",
                f"{account.score:.1f}",
                _band(account.band),
            ]
            for score in overview.scores
            for account in score.lowest
        ],
    )


@page("/health", template="health.html.j2", nav="Health", title="Health scores")
def health_page(request: PageRequest) -> Page:
    at = query_time(request, "at") or now(request)
    score = request.query_str("score")
    with request.workspace() as workspace:
        overview = overviews.health_overview(workspace, at, score=score)
        names = list(workspace.project.health_scores)
    return Page(
        model=overview,
        tables={"bands": bands_table(overview), "lowest": lowest_table(overview)},
        context={
            "overview": overview,
            "charts": [(s, charts.band_distribution(s)) for s in overview.scores],
            "names": names,
            "chosen_score": score or "",
            "at_text": request.query_str("at") or "",
        },
    )


# -- /health/backtest ------------------------------------------------------------------------


def _discrimination_row(score: str, segment: str, n: int, found: Discrimination) -> list[Cell]:
    return [
        score,
        segment,
        found.outcome,
        n,
        found.n,
        found.events,
        fmt.pct(found.rate),
        fmt.num(found.auc, 3),
        _interval(found.auc_low, found.auc_high, percent=False),
        fmt.num(found.top_decile_lift, 2),
        Badge(found.status.replace("_", " "), STATUS_TONE.get(found.status, Tone.warn)),
    ]


def discrimination_table(backtest: HealthBacktest) -> Table:
    return Table(
        columns=[
            "score",
            "segment",
            "outcome",
            "scored accounts",
            "compared",
            "events",
            "rate",
            "AUC",
            "AUC 95% interval",
            "top-decile lift",
            "status",
        ],
        rows=[
            _discrimination_row(score.score_name, group.segment, group.n, outcome)
            for score in backtest.scores
            for group in score.groups
            for outcome in (group.churn, group.contraction)
        ],
    )


def _calibration_rows(score: str, by: str, rows: list[CalibrationRow]) -> list[list[Cell]]:
    return [
        [
            score,
            by,
            row.group,
            row.n,
            f"{fmt.num(row.score_min)}–{fmt.num(row.score_max)}",
            fmt.pct(row.churn.rate),
            _interval(row.churn.low, row.churn.high, percent=True),
            fmt.pct(row.contraction.rate),
            _interval(row.contraction.low, row.contraction.high, percent=True),
        ]
        for row in rows
    ]


def calibration_table(backtest: HealthBacktest) -> Table:
    return Table(
        columns=[
            "score",
            "by",
            "group",
            "accounts",
            "score range",
            "churn",
            "churn 95% interval",
            "contraction",
            "contraction 95% interval",
        ],
        rows=[
            row
            for score in backtest.scores
            for row in (
                _calibration_rows(score.score_name, "band", score.by_band)
                + _calibration_rows(score.score_name, "decile", score.by_decile)
            )
        ],
    )


@page("/health/backtest", template="health_backtest.html.j2", title="Health score backtest")
def backtest_page(request: PageRequest) -> Page:
    horizon = query_float(
        request, "horizon_days", service.DEFAULT_HORIZON_DAYS, minimum=0, maximum=3650
    )
    at = query_time(request, "at") or (now(request) - timedelta(days=horizon)).replace(
        second=0, microsecond=0
    )
    score = request.query_str("score")
    with request.workspace() as workspace:
        backtest = service.backtest(workspace, at, horizon_days=horizon, score=score)
    api_query = urlencode(
        {"at": f"{backtest.at:%Y-%m-%dT%H:%M:%S}", "horizon_days": f"{horizon:g}"}
        | ({"score": score} if score else {})
    )
    return Page(
        model=backtest,
        tables={
            "discrimination": discrimination_table(backtest),
            "calibration": calibration_table(backtest),
        },
        context={
            "backtest": backtest,
            "charts": [
                (s, charts.calibration(s.by_decile, "score decile (d1 lowest)"))
                for s in backtest.scores
            ],
            "form": {
                "at": request.query_str("at") or f"{backtest.at:%Y-%m-%d}",
                "horizon_days": f"{horizon:g}",
                "score": score or "",
            },
            "api_url": f"/api/health-scores/backtest?{api_query}",
        },
    )

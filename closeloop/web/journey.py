"""The journey pages: ``/stages`` (every stage with its counts), ``/stages/{name}`` (the stage
view of ``closeloop stage NAME --accounts``: objectives, classes with a filter, the stage's
signals, before/after with ``since``), ``/signals`` with a "create a draft job" form
(``closeloop jobs create-from-signal``) and its POST ``/signals/job``.

JSON twins: ``/stages/{name}.json`` is ``GET /api/stages/{name}?accounts=true`` (the class
filter only narrows the HTML and CSV accounts table); ``/signals.json`` is ``GET /api/signals``.
"""

from __future__ import annotations

from urllib.parse import urlencode

from closeloop.present import format as fmt
from closeloop.present import journey_charts as charts
from closeloop.schemas.journey import AccountClass, Signal, SignalKind, Signals, StageView
from closeloop.schemas.tokens import GRANTS, Role
from closeloop.services import journey as service
from closeloop.services import overviews
from closeloop.web.journey_common import account_link, now, path_part, query_float, query_time
from closeloop.web.pages import (
    Badge,
    BadParameterError,
    Link,
    Page,
    PageRequest,
    Redirect,
    Table,
    Tone,
    page,
)

CLASS_TONE = {
    AccountClass.AHEAD: Tone.good,
    AccountClass.ON_TRACK: Tone.info,
    AccountClass.BEHIND: Tone.warn,
    AccountClass.STUCK: Tone.bad,
}
CLASS_LABEL = {
    AccountClass.AHEAD: "ahead",
    AccountClass.ON_TRACK: "on track",
    AccountClass.BEHIND: "behind",
    AccountClass.STUCK: "stuck",
}
MAX_WINDOW_DAYS = 3650.0


def _days(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f}"


def _money(value: float | None) -> str:
    return fmt.money(value, signed=False)


# -- /stages ---------------------------------------------------------------------------------


@page("/stages", template="stages.html.j2", nav="Stages", title="Stages")
def stages_page(request: PageRequest) -> Page:
    at = query_time(request, "at") or now(request)
    window = query_float(
        request, "window", service.DEFAULT_WINDOW_DAYS, minimum=0, maximum=MAX_WINDOW_DAYS
    )
    with request.workspace() as workspace:
        overview = overviews.stages_overview(workspace, at, window_days=window)
    suffix = f"?{urlencode({'at': request.query_str('at')})}" if request.query_str("at") else ""
    table = Table(
        columns=[
            "stage",
            "in stage",
            "entered",
            "completed",
            "left incomplete",
            "completion rate",
            f"entered (last {window:g} d)",
            f"completed (last {window:g} d)",
            f"left (last {window:g} d)",
        ],
        rows=[
            [
                Link(stage.name, f"/stages/{path_part(stage.name)}{suffix}"),
                stage.in_stage,
                stage.entered,
                stage.completed,
                stage.exited,
                fmt.pct(stage.completion_rate),
                stage.window.entered,
                stage.window.completed,
                stage.window.exited,
            ]
            for stage in overview.stages
        ],
    )
    return Page(
        model=overview,
        tables={"stages": table},
        context={"overview": overview, "at_text": request.query_str("at") or ""},
    )


# -- /stages/{name} --------------------------------------------------------------------------


def objectives_table(view: StageView) -> Table:
    return Table(
        columns=[
            "objective",
            "completed in stage",
            "entered",
            "rate",
            "median days",
            "p75 days",
            "censored",
            "after leaving",
            "due after (days)",
            "overdue after (days)",
        ],
        rows=[
            [
                objective.name,
                objective.count,
                objective.entered,
                fmt.pct(objective.completion_rate),
                _days(objective.median_days),
                _days(objective.p75_days),
                objective.censored,
                objective.completed_after_exit,
                _days(objective.behind_days) if objective.dated else "undated",
                _days(objective.stuck_days) if objective.dated else "undated",
            ]
            for objective in view.objectives
        ],
    )


def accounts_table(view: StageView, chosen: AccountClass | None) -> Table:
    accounts = [a for a in view.accounts or [] if chosen is None or a.account_class == chosen]
    accounts.sort(key=lambda a: (list(AccountClass).index(a.account_class), -a.days_in_stage))
    return Table(
        columns=[
            "account",
            "name",
            "owner",
            "ARR",
            "class",
            "days in stage",
            "days since progress",
            "done",
            "missing",
            "why",
        ],
        rows=[
            [
                account_link(a.account_id),
                a.name or "",
                a.owner or "",
                _money(a.arr),
                Badge(CLASS_LABEL[a.account_class], CLASS_TONE[a.account_class]),
                f"{a.days_in_stage:.1f}",
                f"{a.days_since_progress:.1f}",
                ", ".join(a.objectives_done),
                ", ".join(a.objectives_missing),
                a.reason,
            ]
            for a in accounts
        ],
        caption=(
            f"Accounts in the stage: {CLASS_LABEL[chosen]}" if chosen else "Accounts in the stage"
        ),
    )


def signal_accounts_table(signals: list[Signal]) -> Table:
    return Table(
        columns=["signal", "account", "name", "owner", "ARR", "detail"],
        rows=[
            [
                signal.id,
                account_link(account.account_id),
                account.name or "",
                account.owner or "",
                _money(account.arr),
                account.detail,
            ]
            for signal in signals
            for account in signal.accounts
        ],
    )


def _change(value: float | None, *, percent: bool) -> str:
    if value is None:
        return fmt.MISSING
    return fmt.pp(value) if percent else f"{value:+.1f}"


@page("/stages/{name}", template="stage.html.j2", title="Stage")
def stage_page(request: PageRequest, name: str) -> Page:
    at = query_time(request, "at") or now(request)
    since = query_time(request, "since")
    if since is not None and since >= at:
        raise BadParameterError(
            f"parameter 'since': {since:%Y-%m-%d %H:%M} is not before the view's time "
            f"{at:%Y-%m-%d %H:%M}"
        )
    window = query_float(
        request, "window", service.DEFAULT_WINDOW_DAYS, minimum=0, maximum=MAX_WINDOW_DAYS
    )
    chosen = request.query_choice("class", AccountClass)
    with request.workspace() as workspace:
        view = service.stage_view(
            workspace, name, at, window_days=window, since=since, accounts=True
        )
        found = service.signals(workspace, view.as_of, SignalKind.SLOW_COMPLETER)
    prefix = f"{SignalKind.SLOW_COMPLETER.value}:{view.name}:"
    stage_signals = [s for s in found.signals if s.id.startswith(prefix)]
    tables = {
        "objectives": objectives_table(view),
        "accounts": accounts_table(view, chosen),
        "signals": signal_accounts_table(stage_signals),
        "sequences": Table(
            columns=["completion order", "accounts"],
            rows=[[" → ".join(s.objectives) or "(none)", s.accounts] for s in view.sequences],
        ),
        "markers": Table(
            columns=["marker", "accounts in the stage"],
            rows=[[m.name, m.count] for m in view.markers],
        ),
    }
    if view.since is not None:
        tables["before_after"] = Table(
            columns=[
                "objective",
                "rate before",
                "rate now",
                "change",
                "median days before",
                "median days now",
                "change (days)",
            ],
            rows=[
                [
                    o.name,
                    fmt.pct(o.completion_rate_before),
                    fmt.pct(o.completion_rate_now),
                    _change(o.completion_rate_change, percent=True),
                    _days(o.median_days_before),
                    _days(o.median_days_now),
                    _change(o.median_days_change, percent=False),
                ]
                for o in view.since.objectives
            ],
        )
    counts = dict.fromkeys(AccountClass, 0)
    for account in view.accounts or []:
        counts[account.account_class] += 1
    base_query = {
        key: value
        for key, value in (
            ("at", request.query_str("at")),
            ("window", request.query_str("window")),
            ("since", request.query_str("since")),
        )
        if value
    }
    filters = [
        (
            CLASS_LABEL[klass],
            counts[klass],
            f"?{urlencode({**base_query, 'class': klass.value})}",
            klass == chosen,
            CLASS_TONE[klass].value,
        )
        for klass in AccountClass
    ]
    all_filter = (f"?{urlencode(base_query)}" if base_query else "?", chosen is None)
    return Page(
        model=view,
        tables=tables,
        title=f"Stage: {view.name}",
        context={
            "view": view,
            "filters": filters,
            "all_filter": all_filter,
            "in_stage": sum(counts.values()),
            "chosen": chosen,
            "stage_signals": stage_signals,
            "class_chart": charts.class_counts(view),
            "rate_chart": charts.objective_rates(view),
            "form": {
                "at": request.query_str("at") or "",
                "since": request.query_str("since") or "",
                "window": request.query_str("window") or "",
            },
        },
    )


# -- /signals --------------------------------------------------------------------------------


def signals_table(found: Signals) -> Table:
    return Table(
        columns=["signal", "kind", "accounts", "ARR at risk", "rule"],
        rows=[
            [
                signal.description or signal.id,
                signal.kind.value.replace("_", " "),
                signal.count,
                _money(signal.arr_at_risk),
                signal.rule,
            ]
            for signal in found.signals
        ],
    )


@page("/signals", template="signals.html.j2", nav="Signals", title="Signals")
def signals_page(request: PageRequest) -> Page:
    at = query_time(request, "at") or now(request)
    kind = request.query_choice("kind", SignalKind)
    with request.workspace() as workspace:
        found = service.signals(workspace, at, kind)
    return Page(
        model=found,
        tables={"signals": signals_table(found), "accounts": signal_accounts_table(found.signals)},
        context={
            "found": found,
            "can_edit": Role.editor in GRANTS[request.principal.role],
            "at_text": request.query_str("at") or "",
            "kinds": [k.value for k in SignalKind],
            "kind": kind.value if kind else "",
        },
    )


@page(
    "/signals/job",
    template="signals.html.j2",
    role=Role.editor,
    methods=("POST",),
    title="Draft a job from a signal",
)
def job_from_signal_page(request: PageRequest) -> Redirect:
    if request.form is None:
        raise BadParameterError("post the form of the signals page to draft a job")
    signal_id = request.query_str("signal")
    if signal_id is None:
        raise BadParameterError("parameter 'signal': say which signal to draft a job from")
    at = query_time(request, "at") or now(request)
    written = service.create_job_from_signal(
        request.server, signal_id, at, name=request.query_str("name"), actor=request.actor
    )
    return Redirect(f"/jobs/{path_part(written.job)}/edit")

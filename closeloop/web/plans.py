"""The success plan pages: ``/plans`` (every plan, the goals-achieved rate per CSM and segment),
``/plans/{id}`` (objectives, milestones, renegotiations, versions, the customer's links), the
editor's forms to share a plan (``POST /plans/{id}/links``) and revoke a link, and the customer's
read-only page ``/shared/plans/{token}`` (no login; :data:`PUBLIC_ROUTES`).

JSON twins: ``/plans.json`` is ``GET /api/plans``, ``/plans/{id}.json`` is
``GET /api/plans/{id}``; the customer's page has ``/shared/plans/{token}.json``
(:class:`~closeloop.schemas.plan_links.SharedPlan`).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from closeloop.present import format as fmt
from closeloop.present import journey_charts as charts
from closeloop.schemas.plan_links import PlanLinkList, SharedPlan
from closeloop.schemas.plans import AchievedGroup, GoalsAchieved, Objective, Plan, PlanList
from closeloop.schemas.tokens import GRANTS, Role
from closeloop.services import plan_links as link_service
from closeloop.services import plans as service
from closeloop.services.server import Server
from closeloop.web.journey_common import account_link, query_float, query_time
from closeloop.web.pages import (
    Badge,
    BadParameterError,
    Cell,
    Link,
    Page,
    PageRequest,
    Redirect,
    Table,
    Tone,
    page,
)

STATUS_TONE = {"met": Tone.good, "missed": Tone.bad, "open": Tone.info, "dropped": Tone.neutral}
LINK_TONE = {"active": Tone.good, "expired": Tone.neutral, "revoked": Tone.bad}
MAX_ID = 2**31 - 1
SHARE_DAYS = (7, 30, 90)


class Status(StrEnum):
    OPEN = "open"
    MET = "met"
    MISSED = "missed"
    DROPPED = "dropped"


def _day(moment: datetime | None) -> str:
    return "" if moment is None else f"{moment:%Y-%m-%d}"


def _when(moment: datetime | None) -> str:
    return "" if moment is None else f"{moment:%Y-%m-%d %H:%M} UTC"


def _value(value: float | None) -> str:
    return fmt.MISSING if value is None else f"{value:g}"


def _plan_id(text: str) -> int:
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_ID):
        raise BadParameterError(f"{text!r} is not a plan id (a whole number from 1)")
    return int(text)


# -- /plans ----------------------------------------------------------------------------------


def plans_table(listing: PlanList) -> Table:
    return Table(
        columns=[
            "plan",
            "account",
            "owner",
            "objectives",
            "open",
            "met",
            "missed",
            "dropped",
            "next target date",
            "version",
            "updated",
        ],
        rows=[
            [
                Link(f"{plan.id}: {plan.title}", f"/plans/{plan.id}"),
                account_link(plan.account_id),
                plan.owner or "",
                plan.objectives,
                plan.open,
                plan.met,
                plan.missed,
                plan.dropped,
                str(plan.next_target_date or ""),
                plan.version,
                _when(plan.updated_at),
            ]
            for plan in listing.plans
        ],
    )


def _achieved_row(group: AchievedGroup) -> list[Cell]:
    return [
        group.group,
        group.decided,
        group.met,
        group.missed,
        fmt.pct(group.rate),
        f"[{fmt.pct(group.lower)}, {fmt.pct(group.upper)}]",
    ]


def achieved_table(achieved: GoalsAchieved, label: str) -> Table:
    return Table(
        columns=[label, "decided", "met", "missed", "goals achieved", "95% interval (Wilson)"],
        rows=[_achieved_row(group) for group in [*achieved.groups, achieved.overall]],
    )


@page("/plans", template="plans.html.j2", nav="Plans", title="Success plans")
def plans_page(request: PageRequest) -> Page:
    at = query_time(request, "at")
    status = request.query_choice("status", Status)
    with request.workspace() as workspace:
        listing = service.list_plans(
            workspace,
            account_id=request.query_str("account"),
            owner=request.query_str("owner"),
            status=status.value if status else None,
            at=at,
        )
        by_csm = service.goals_achieved(workspace, at, by="csm")
        by_segment = service.goals_achieved(workspace, at, by="segment")
    rates = [
        {"csm": group.group, "rate": group.rate}
        for group in by_csm.groups
        if group.rate is not None
    ]
    return Page(
        model=listing,
        tables={
            "plans": plans_table(listing),
            "achieved_by_csm": achieved_table(by_csm, "CSM"),
            "achieved_by_segment": achieved_table(by_segment, "segment"),
        },
        context={
            "listing": listing,
            "by_csm": by_csm,
            "rate_chart": charts.bars(
                rates, category="csm", value="rate", value_title="goals achieved", percent=True
            ),
            "form": {
                "account": request.query_str("account") or "",
                "owner": request.query_str("owner") or "",
                "status": status.value if status else "",
                "at": request.query_str("at") or "",
            },
            "statuses": [s.value for s in Status],
        },
    )


# -- /plans/{id} -----------------------------------------------------------------------------


def objectives_table(plan: Plan) -> Table:
    def target(o: Objective) -> str:
        return f"{o.target:g} by {o.target_date}"

    return Table(
        columns=[
            "objective",
            "owner",
            "baseline",
            "target",
            "originally",
            "latest",
            "progress",
            "status",
            "measure",
        ],
        rows=[
            [
                f"{o.id}: {o.title}",
                o.owner or "",
                _value(o.baseline),
                target(o),
                (f"{o.original_target:g} by {o.original_target_date}" if o.renegotiations else ""),
                _value(o.latest_value),
                fmt.pct(o.progress, 0),
                Badge(o.status, STATUS_TONE[o.status]),
                o.measure,
            ]
            for o in plan.objectives
        ],
    )


def milestones_table(plan: Plan) -> Table:
    thresholds = (0.5, 0.8, 1.0)
    rows: list[list[Cell]] = []
    for o in plan.objectives:
        reached = {m.threshold: m for m in o.milestones}
        cells: list[Cell] = [o.title]
        for threshold in thresholds:
            milestone = reached.get(threshold)
            if milestone is None:
                cells.append("")
            else:
                cells.append(f"{milestone.value:g}: {_day(milestone.reached_at) or 'not yet'}")
        rows.append(cells)
    return Table(columns=["objective", "50%", "80%", "100% (target)"], rows=rows)


def renegotiations_table(plan: Plan) -> Table:
    return Table(
        columns=["objective", "was", "now", "reason", "agreed by", "recorded by", "recorded"],
        rows=[
            [
                o.title,
                f"{r.old_target:g} by {r.old_target_date}",
                f"{r.new_target:g} by {r.new_target_date}",
                r.reason,
                r.agreed_by,
                r.recorded_by,
                _when(r.recorded_at),
            ]
            for o in plan.objectives
            for r in o.renegotiations
        ],
    )


def versions_table(plan: Plan) -> Table:
    return Table(
        columns=["version", "at", "by", "change"],
        rows=[[v.version, _when(v.at), v.actor, v.change] for v in reversed(plan.versions)],
    )


def links_table(links: PlanLinkList) -> Table:
    return Table(
        columns=["link", "state", "created", "by", "expires", "last opened"],
        rows=[
            [
                link.id,
                Badge(link.state, LINK_TONE[link.state]),
                _when(link.created_at),
                link.created_by,
                _when(link.expires_at),
                _when(link.last_opened_at) or "never",
            ]
            for link in links.links
        ],
    )


@page("/plans/{plan_id}", template="plan.html.j2", title="Success plan")
def plan_page(request: PageRequest, plan_id: str) -> Page:
    number = _plan_id(plan_id)
    version = request.query_int("version", minimum=1, maximum=MAX_ID)
    at = query_time(request, "at")
    with request.workspace() as workspace:
        plan = service.show_plan(workspace, number, version=version, at=at)
    links = link_service.list_links(request.server.store, plan_id=number)
    return Page(
        model=plan,
        title=f"Plan {plan.id}: {plan.title}",
        tables={
            "objectives": objectives_table(plan),
            "milestones": milestones_table(plan),
            "renegotiations": renegotiations_table(plan),
            "versions": versions_table(plan),
            "links": links_table(links),
        },
        context={
            "plan": plan,
            "links": links.links,
            "can_edit": Role.editor in GRANTS[request.principal.role],
            "progress_chart": charts.objective_progress(plan.objectives),
            "share_days": SHARE_DAYS,
            "account": account_link(plan.account_id),
        },
    )


@page(
    "/plans/{plan_id}/links",
    template="plan_link.html.j2",
    role=Role.editor,
    methods=("POST",),
    title="Link for the customer",
)
def share_page(request: PageRequest, plan_id: str) -> Page:
    number = _plan_id(plan_id)
    days = query_float(
        request,
        "expires_days",
        link_service.DEFAULT_EXPIRES_DAYS,
        minimum=0,
        maximum=link_service.MAX_EXPIRES_DAYS,
    )
    created = link_service.share_plan(
        request.server.store,
        request.server.settings.secret,
        number,
        expires_days=days,
        actor=request.actor,
        base_url=str(request.request.base_url),
    )
    return Page(model=created, status_code=201, context={"link": created})


@page(
    "/plans/{plan_id}/links/{link_id}/revoke",
    template="plan_link.html.j2",
    role=Role.editor,
    methods=("POST",),
    title="Revoke a customer link",
)
def revoke_page(request: PageRequest, plan_id: str, link_id: str) -> Redirect:
    number = _plan_id(plan_id)
    if not (link_id.isascii() and link_id.isdigit() and 1 <= int(link_id) <= MAX_ID):
        raise BadParameterError(f"{link_id!r} is not a link id")
    link_service.revoke_link(
        request.server.store, int(link_id), actor=request.actor, plan_id=number
    )
    return Redirect(f"/plans/{number}#links")


# -- /shared/plans/{token}: the customer's page, without a login ---------------------------

SHARED_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
}
_STATUS = {"ok": 200, "expired": 410, "revoked": 410, "not_found": 404}


def _render_shared(result: SharedPlan, project: str) -> str:
    # The dashboard's template environment, imported late: app.py imports this package's
    # modules when it builds the routes.
    from closeloop.web.app import TEMPLATES

    context: dict[str, Any] = {"result": result, "project": project, "fmt": fmt}
    if result.plan is not None:
        context["objectives"] = [
            (o, max(0.0, min(1.0, o.progress or 0.0))) for o in result.plan.objectives
        ]
    return TEMPLATES.get_template("plan_shared.html.j2").render(context)


async def shared_plan(request: Request) -> Response:
    """The plan a customer's link opens, read-only: 200, or 410 (revoked, expired), or 404."""
    token = str(request.path_params["token"])
    as_json = token.endswith(".json") or (
        "application/json" in request.headers.get("accept", "")
        and "text/html" not in request.headers.get("accept", "")
    )
    token = token.removesuffix(".json")
    server: Server = request.app.state.server
    result = await run_in_threadpool(
        link_service.open_shared, server.store, server.settings.secret, token
    )
    status = _STATUS[result.status]
    if as_json:
        return JSONResponse(
            result.model_dump(mode="json"), status_code=status, headers=SHARED_HEADERS
        )
    html = await run_in_threadpool(_render_shared, result, server.project_name)
    return HTMLResponse(html, status_code=status, headers=SHARED_HEADERS)


PUBLIC_ROUTES: list[BaseRoute] = [
    Route(link_service.SHARED_PREFIX + "{token}", shared_plan, methods=["GET"]),
]

"""``/api/plans``: success plans, the models ``closeloop plans … --format json`` prints.

Writes name the version they were made against with ``If-Match: "N"`` (the ``ETag`` a plan is
served with) or a ``version`` field, and answer 409 with nothing written when the plan has
moved on since; without either the write applies to the latest version.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, Header, Path, Query, Request, Response

from closeloop.api.security import Editor, Viewer, served
from closeloop.errors import LocatedError
from closeloop.schemas.plan_links import (
    CreatedPlanLink,
    PlanLinkInfo,
    PlanLinkList,
    PlanLinkRequest,
)
from closeloop.schemas.plans import (
    GoalsAchieved,
    ObjectivesAdd,
    ObjectiveStatus,
    ObjectiveUpdate,
    Plan,
    PlanCreate,
    PlanList,
    RenegotiationRequest,
)
from closeloop.services import plan_links as link_service
from closeloop.services import plans as service

router = APIRouter(prefix="/api/plans", tags=["plans"])

_MAX_ID = 2**31 - 1
PlanId = Annotated[int, Path(ge=1, le=_MAX_ID, description="the plan's id")]
ObjectiveId = Annotated[int, Path(ge=1, le=_MAX_ID, description="the objective's id")]
IfMatch = Annotated[
    str | None,
    Header(description='the version the change was made against, e.g. "3" (the ETag)'),
]
At = Annotated[
    datetime | None, Query(description="statuses as of this time (ISO 8601; default: now)")
]


def _naive_utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def expected_version(if_match: str | None, version: int | None) -> int | None:
    """The version a write names: ``If-Match`` (``"3"``, ``W/"3"`` or ``3``) or the body's."""
    if if_match is None:
        return version
    text = if_match.strip().removeprefix("W/").strip('"')
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= _MAX_ID):
        raise LocatedError(
            f"If-Match {if_match!r} is not a plan version",
            hint='send the ETag the plan was served with, e.g. If-Match: "3"',
        )
    if version is not None and version != int(text):
        raise LocatedError(
            f"If-Match names version {text} and the body version {version}",
            hint="send one of them",
        )
    return int(text)


def _tagged(response: Response, plan: Plan) -> Plan:
    response.headers["ETag"] = f'"{plan.version}"'
    return plan


@router.get("", response_model=PlanList)
def list_plans(
    request: Request,
    _principal: Viewer,
    account: Annotated[str | None, Query(max_length=200, description="only this account")] = None,
    owner: Annotated[
        str | None, Query(max_length=200, description="plan owner or objective owner")
    ] = None,
    status: Annotated[
        ObjectiveStatus | None, Query(description="plans with an objective in this status")
    ] = None,
    at: At = None,
) -> PlanList:
    """Success plans with their objectives counted by status, as ``closeloop plans list``."""
    with served(request).workspace() as workspace:
        return service.list_plans(
            workspace, account_id=account, owner=owner, status=status, at=_naive_utc(at)
        )


@router.get("/achieved", response_model=GoalsAchieved)
def achieved(
    request: Request,
    _principal: Viewer,
    at: At = None,
    by: Annotated[str, Query(pattern="^(csm|segment)$", description="csm or segment")] = "csm",
) -> GoalsAchieved:
    """The goals-achieved rate with Wilson intervals, as ``closeloop plans achieved``."""
    with served(request).workspace() as workspace:
        return service.goals_achieved(workspace, _naive_utc(at), by=by)


@router.get("/{plan_id}", response_model=Plan)
def show_plan(
    request: Request,
    response: Response,
    _principal: Viewer,
    plan_id: PlanId,
    version: Annotated[
        int | None, Query(ge=1, le=_MAX_ID, description="the plan as this version left it")
    ] = None,
    at: At = None,
) -> Plan:
    """One plan, as ``closeloop plans show``; the ``ETag`` is its version."""
    with served(request).workspace() as workspace:
        plan = service.show_plan(workspace, plan_id, version=version, at=_naive_utc(at))
    return _tagged(response, plan)


@router.post("", response_model=Plan, status_code=201)
def create_plan(
    request: Request, response: Response, principal: Editor, body: Annotated[PlanCreate, Body()]
) -> Plan:
    """Create a plan (version 1) for an account, its measured baselines evaluated now."""
    with served(request).workspace(write=True) as workspace:
        plan = service.create_plan(workspace, body, actor=f"api:{principal.name}")
    return _tagged(response, plan)


@router.post("/{plan_id}/objectives", response_model=Plan)
def add_objectives(
    request: Request,
    response: Response,
    principal: Editor,
    plan_id: PlanId,
    body: Annotated[ObjectivesAdd, Body()],
    if_match: IfMatch = None,
) -> Plan:
    """Add objectives to a plan (a new version)."""
    with served(request).workspace(write=True) as workspace:
        plan = service.add_objectives(
            workspace,
            plan_id,
            body.objectives,
            expected_version=expected_version(if_match, body.version),
            actor=f"api:{principal.name}",
        )
    return _tagged(response, plan)


@router.patch("/{plan_id}/objectives/{objective_id}", response_model=Plan)
def update_objective(
    request: Request,
    response: Response,
    principal: Editor,
    plan_id: PlanId,
    objective_id: ObjectiveId,
    body: Annotated[ObjectiveUpdate, Body()],
    if_match: IfMatch = None,
) -> Plan:
    """Record a manual value, drop an objective, or change its owner or title."""
    version = expected_version(if_match, body.version)
    with served(request).workspace(write=True) as workspace:
        plan = service.update_objective(
            workspace,
            plan_id,
            objective_id,
            body.model_copy(update={"version": version}),
            actor=f"api:{principal.name}",
        )
    return _tagged(response, plan)


@router.post("/{plan_id}/objectives/{objective_id}/renegotiate", response_model=Plan)
def renegotiate(
    request: Request,
    response: Response,
    principal: Editor,
    plan_id: PlanId,
    objective_id: ObjectiveId,
    body: Annotated[RenegotiationRequest, Body()],
    if_match: IfMatch = None,
) -> Plan:
    """Agree a new target (and date) with the customer; the old one stays in the history."""
    version = expected_version(if_match, body.version)
    with served(request).workspace(write=True) as workspace:
        plan = service.renegotiate(
            workspace,
            plan_id,
            objective_id,
            body.model_copy(update={"version": version}),
            actor=f"api:{principal.name}",
        )
    return _tagged(response, plan)


# -- the customer's read-only links --------------------------------------------------------

LinkId = Annotated[int, Path(ge=1, le=_MAX_ID, description="the link's id")]


@router.post("/{plan_id}/links", response_model=CreatedPlanLink, status_code=201)
def share_plan(
    request: Request,
    principal: Editor,
    plan_id: PlanId,
    body: Annotated[PlanLinkRequest | None, Body()] = None,
) -> CreatedPlanLink:
    """Create the customer's read-only link to a plan, as ``closeloop plans share``: the
    ``url`` (on this server) is shown once; it expires and can be revoked."""
    server = served(request)
    return link_service.share_plan(
        server.store,
        server.settings.secret,
        plan_id,
        expires_days=(body or PlanLinkRequest()).expires_days,
        actor=f"api:{principal.name}",
        base_url=str(request.base_url),
    )


@router.get("/{plan_id}/links", response_model=PlanLinkList)
def plan_links(request: Request, _principal: Editor, plan_id: PlanId) -> PlanLinkList:
    """A plan's customer links, newest first, as ``closeloop plans links``."""
    return link_service.list_links(served(request).store, plan_id=plan_id)


@router.delete("/{plan_id}/links/{link_id}", response_model=PlanLinkInfo)
def revoke_link(
    request: Request, principal: Editor, plan_id: PlanId, link_id: LinkId
) -> PlanLinkInfo:
    """Revoke a customer link for good, as ``closeloop plans unshare`` (it then answers 410)."""
    return link_service.revoke_link(
        served(request).store, link_id, actor=f"api:{principal.name}", plan_id=plan_id
    )

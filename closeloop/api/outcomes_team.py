"""``GET /api/outcomes/team``: the model ``closeloop outcomes team --format json`` prints.

An unknown ``by`` attribute answers 404 naming the attributes there are; a date that does not
parse, or a start not before the end, answers 422 with the reason."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request

from closeloop.api.security import Viewer, served
from closeloop.schemas.team import TeamOutcomes
from closeloop.services import outcomes_team as service
from closeloop.services.definitions import naive_utc

router = APIRouter(prefix="/api/outcomes", tags=["outcomes"])


@router.get("/team", response_model=TeamOutcomes)
def team(
    request: Request,
    _principal: Viewer,
    start: Annotated[datetime, Query(description="window start (inclusive, ISO 8601)")],
    end: Annotated[datetime, Query(description="window end (exclusive, ISO 8601)")],
    by: Annotated[
        str, Query(description="the account attribute naming each account's CSM")
    ] = "owner",
    sponsor_attribute: Annotated[
        str, Query(description="account attribute or property flagging an executive sponsor")
    ] = "executive_sponsor",
    reference_attribute: Annotated[
        str, Query(description="account attribute or property flagging a reference")
    ] = "reference",
) -> TeamOutcomes:
    """Scorecards per CSM on what CS can influence beside revenue, activities, contacts,
    sponsors, references and churn reasons, as ``closeloop outcomes team``."""
    server = served(request)
    with server.workspace() as workspace:
        return service.team_outcomes(
            workspace,
            naive_utc(start),
            naive_utc(end),
            by=by,
            sponsor_attribute=sponsor_attribute,
            reference_attribute=reference_attribute,
        )

"""The account page (``/accounts/{id}``): one account seen from every source, one section each.

Every section is read by the service its own surface uses (accounts and their timeline, the
enrollments and outbox lists, ``closeloop health show``, success plans), so the page says what
those say. Surveys are the account's answers in ``survey_responses``, newest first. A health score
that cannot be computed (none defined, an account created after the time asked) is a section that
says why, never a failed page.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from closeloop.data.tables import SURVEY_RESPONSES
from closeloop.engine.statuses import OutboxStatus
from closeloop.errors import CloseloopError, redact
from closeloop.schemas.account_page import (
    AccountDeliveries,
    AccountHealthSection,
    AccountPage,
    AccountSurveys,
    SurveyResponse,
)
from closeloop.services import accounts, health, operations, plans
from closeloop.services.data import default_as_of
from closeloop.services.project import Workspace

SECTION_SIZE = 50
"""Items each list section of the page holds (the newest); its ``total`` counts them all."""


def account_page(workspace: Workspace, account_id: str, at: datetime | None = None) -> AccountPage:
    """Everything known about ``account_id`` as of ``at`` (now when None); NotFoundError for an
    unknown account."""
    moment = accounts.naive_utc(at) or default_as_of(workspace)
    account = accounts.get_account(workspace, account_id, at)
    timeline = accounts.account_timeline(workspace, account_id, until=at, limit=SECTION_SIZE)
    enrollments = operations.enrollments_page(workspace, account_id=account_id, limit=SECTION_SIZE)
    return AccountPage(
        account=account,
        as_of=moment,
        timeline=timeline,
        enrollments=enrollments,
        deliveries=_deliveries(workspace, account_id),
        surveys=_surveys(workspace, account_id),
        health=_health(workspace, account_id, moment),
        plans=plans.plans_for_account(workspace, account_id, at),
    )


def end_of(day: date) -> datetime:
    """The end of a day (``?at=2025-02-19`` means as of that whole day)."""
    return datetime.combine(day, time()) + timedelta(days=1) - timedelta(microseconds=1)


def _deliveries(workspace: Workspace, account_id: str) -> AccountDeliveries:
    newest = operations.outbox_list(workspace, account_id=account_id, limit=SECTION_SIZE)
    counts = {}
    for status in OutboxStatus.ALL:
        found = operations.outbox_list(workspace, account_id=account_id, status=status, limit=1)
        if found.total:
            counts[status] = found.total
    return AccountDeliveries(total=newest.total, counts=counts, messages=newest.messages)


def _surveys(workspace: Workspace, account_id: str) -> AccountSurveys:
    table = workspace.warehouse.table(SURVEY_RESPONSES.name)
    mine = table.filter(table.account_id == account_id)
    rows = (
        mine.order_by([mine.responded_at.desc(), mine.response_id.desc()])
        .limit(SECTION_SIZE)
        .to_pyarrow()
        .to_pylist()
    )
    return AccountSurveys(
        total=int(mine.count().execute()),
        responses=[
            SurveyResponse(
                response_id=str(row["response_id"]),
                person_id=row.get("person_id"),
                kind=str(row["kind"]),
                score=float(row["score"]),
                scale_min=float(row["scale_min"]),
                scale_max=float(row["scale_max"]),
                comment=row.get("comment"),
                responded_at=row["responded_at"],
            )
            for row in rows
        ],
    )


def _health(workspace: Workspace, account_id: str, at: datetime) -> AccountHealthSection:
    if not workspace.project.health_scores:
        return AccountHealthSection(unavailable="the project defines no health score (health.yaml)")
    try:
        return AccountHealthSection(report=health.account_health(workspace, account_id, at))
    except CloseloopError as problem:
        return AccountHealthSection(unavailable=redact(str(problem)))

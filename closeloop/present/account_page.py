"""View rows of the accounts list and the account page: each section's table, formatted once."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from closeloop.present.format import count, money, num, pct
from closeloop.schemas.account_page import AccountPage
from closeloop.schemas.resources import Account

Row = list[Any]
_INTERNAL_KEYS = frozenset({"event_id", "enrollment_id", "id"})  # ids a reader has no use for

ACCOUNT_COLUMNS = ["account", "name", "segment", "plan", "ARR", "renewal", "owner"]
ATTRIBUTE_COLUMNS = ["attribute", "value"]
TIMELINE_COLUMNS = ["when", "kind", "what", "person", "detail"]
ENROLLMENT_COLUMNS = ["job", "arm", "status", "goal reached", "entered", "ended", "exit reason"]
DELIVERY_COLUMNS = ["due", "job", "step", "channel", "status", "attempts", "sent", "last error"]
SURVEY_COLUMNS = ["answered", "kind", "score", "scale", "person", "comment"]
HEALTH_COLUMNS = ["measure", "value", "scaled", "weight", "contribution"]
OBJECTIVE_COLUMNS = [
    "plan",
    "objective",
    "status",
    "baseline",
    "target",
    "by",
    "latest",
    "progress",
]


def when(value: datetime | date | None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return value.isoformat()


def _value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return num(value, 2)
    if isinstance(value, datetime | date):
        return when(value)
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def account_row(account: Account) -> Row:
    """One line of the accounts list (the id is linked by the page)."""
    return [
        account.account_id,
        account.name or "",
        account.segment or "",
        account.plan or "",
        money(account.arr, signed=False) if account.arr is not None else "",
        when(account.renewal_date),
        account.owner or "",
    ]


def attribute_rows(account: Account) -> list[Row]:
    """Every attribute of the account with a value, canonical first, then imported extras."""
    data = account.model_dump(exclude={"properties", "extra"})
    rows = [[name, _value(value)] for name, value in data.items() if value is not None]
    for source in (account.properties or {}, account.extra):
        rows += [[name, _value(value)] for name, value in sorted(source.items())]
    return rows


def timeline_rows(page: AccountPage) -> list[Row]:
    rows = []
    for item in page.timeline.items:
        detail = ", ".join(
            f"{key}={_value(value)}"
            for key, value in item.detail.items()
            if value not in (None, {})
        )
        rows.append([when(item.at), item.kind.value, item.name, item.person_id or "", detail[:300]])
    return rows


def enrollment_rows(page: AccountPage) -> list[Row]:
    return [
        [
            enrollment.job,
            enrollment.arm,
            enrollment.status,
            "yes" if enrollment.completed_at is not None else "no",
            when(enrollment.entered_at),
            when(enrollment.completed_at or enrollment.exited_at),
            enrollment.exit_reason or "",
        ]
        for enrollment in page.enrollments.items
    ]


def delivery_rows(page: AccountPage) -> list[Row]:
    return [
        [
            when(message.due_at),
            message.job_name,
            message.step_index,
            message.channel,
            message.status,
            message.attempts,
            when(message.sent_at),
            message.last_error or "",
        ]
        for message in page.deliveries.messages
    ]


def survey_rows(page: AccountPage) -> list[Row]:
    return [
        [
            when(response.responded_at),
            response.kind.upper(),
            num(response.score, 0 if response.score.is_integer() else 1),
            f"{num(response.scale_min, 0)}–{num(response.scale_max, 0)}",
            response.person_id or "",
            response.comment or "",
        ]
        for response in page.surveys.responses
    ]


def health_rows(page: AccountPage) -> list[Row]:
    """Each score's measures: value, scaled value, weight and the points it contributes."""
    report = page.health.report
    rows: list[Row] = []
    for explained in report.scores if report is not None else []:
        for measure in explained.now.measures:
            rows.append(
                [
                    f"{explained.now.score_name}: {measure.name}",
                    "missing" if measure.missing else num(measure.value, 2),
                    num(measure.scaled, 0),
                    pct(measure.effective_weight, 0),
                    num(measure.contribution, 1),
                ]
            )
    return rows


def objective_rows(page: AccountPage) -> list[Row]:
    return [
        [
            plan.title,
            objective.title,
            objective.status,
            num(objective.baseline, 2),
            num(objective.target, 2),
            objective.target_date.isoformat(),
            num(objective.latest_value, 2),
            pct(objective.progress, 0),
        ]
        for plan in page.plans
        for objective in plan.objectives
    ]


def delivery_counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{status} {count(n)}" for status, n in sorted(counts.items()))

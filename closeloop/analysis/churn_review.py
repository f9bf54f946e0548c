"""The churn post-mortem's warehouse facts: every churn in a window with its account, where the
account stood in each stage when it churned, and the jobs it was enrolled in.

One query per stage and one for the enrollments, each restricted to the churned accounts; one row
per churned account (and stage, and enrollment) comes back. The service adds health, success plans
and the jobs' measured effects (``closeloop.services.churn_review``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import ibis
import ibis.expr.types as ir

from closeloop.analysis.team import churns_with_mrr_lost
from closeloop.data.tables import ENROLLMENTS
from closeloop.data.warehouse import Warehouse

DAY_SECONDS = 86400.0
StageState = Literal["completed", "in_stage", "exited_incomplete"]


@dataclass(frozen=True)
class Churn:
    """One row of ``churn_reasons`` in the window, with the account's attributes and the MRR it
    had the day before (the sum of its running subscriptions)."""

    churn_id: str
    account_id: str
    churned_at: datetime
    reason: str
    controllable: bool | None
    notes: str | None
    mrr_lost: float
    name: str | None
    owner: str | None
    segment: str | None


@dataclass(frozen=True)
class StagePosition:
    """Where one churned account stood in one stage when it churned.

    ``state`` is ``completed`` (every objective done by the churn), ``in_stage`` (still in it)
    or ``exited_incomplete`` (timed out before the churn); times after the churn are ignored.
    """

    stage: str
    entered_at: datetime
    state: StageState
    days_in_stage: float
    objectives_done: tuple[str, ...]
    objectives_missing: tuple[str, ...]

    @property
    def stalled(self) -> bool:
        return self.state != "completed"


@dataclass(frozen=True)
class Enrollment:
    """A churned account's enrollment in a job, entered before it churned."""

    account_id: str
    job_name: str
    job_version: int
    arm: str
    entered_at: datetime
    completed_at: datetime | None
    exited_at: datetime | None
    exit_reason: str | None


def churns(warehouse: Warehouse, start: datetime, end: datetime) -> list[Churn]:
    """Every churn with ``churned_at`` in ``[start, end)``, oldest first."""
    rows = churns_with_mrr_lost(
        warehouse, ibis.literal(start, type="timestamp"), ibis.literal(end, type="timestamp")
    )
    accounts = warehouse.table("accounts")
    wanted = {"name", "owner", "segment"}
    columns = {
        name: (accounts[name].cast("string") if name in accounts.columns else ibis.null("string"))
        for name in sorted(wanted)
    }
    accounts = accounts.select("account_id", **columns)
    joined = rows.left_join(accounts, rows.account_id == accounts.account_id).select(
        rows.churn_id,
        rows.account_id,
        rows.churned_at,
        rows.reason,
        rows.controllable,
        rows.notes,
        rows.mrr_lost,
        accounts.name,
        accounts.owner,
        accounts.segment,
    )
    found = [_churn(row) for row in _rows(joined.order_by(["churned_at", "churn_id"]))]
    return found


@dataclass(frozen=True)
class StageStatus:
    """A stage's name, its objectives' names in order and its per-account status table as of a
    time (``closeloop.data.compiler.stage_status``)."""

    name: str
    objectives: tuple[str, ...]
    status: ir.Table


def stage_positions(
    stages: Sequence[StageStatus], churned: Sequence[Churn]
) -> dict[str, list[StagePosition]]:
    """Per churned account, its position in every stage it had entered when it churned.

    The stages' status tables are as of one time (the review's end); every time after an
    account's churn is then ignored: an objective done after the churn counts as missing, an exit
    after it has not happened. Entry criteria are those holding at that time.
    """
    positions: dict[str, list[StagePosition]] = {churn.account_id: [] for churn in churned}
    if not churned:
        return positions
    churned_at = {churn.account_id: churn.churned_at for churn in churned}
    ids = sorted(churned_at)
    for stage in stages:
        status = stage.status
        status = status.filter(status.account_id.isin(ids) & status.entered_at.notnull())
        for row in _rows(status):
            moment = churned_at[row["account_id"]]
            position = _position(stage.name, stage.objectives, row, moment)
            if position is not None:
                positions[row["account_id"]].append(position)
    for found in positions.values():
        found.sort(key=lambda position: position.entered_at)
    return positions


def enrollments(warehouse: Warehouse, churned: Sequence[Churn]) -> dict[str, list[Enrollment]]:
    """Per churned account, its enrollments entered before it churned (published copy of the
    state store's; publish first), oldest first."""
    found: dict[str, list[Enrollment]] = {churn.account_id: [] for churn in churned}
    if not churned or not warehouse.has_table(ENROLLMENTS.name):
        return found
    churned_at = {churn.account_id: churn.churned_at for churn in churned}
    table = warehouse.table(ENROLLMENTS.name)
    table = table.filter(table.account_id.isin(sorted(churned_at))).order_by(
        ["account_id", "entered_at", "job_name"]
    )
    for row in _rows(table):
        if row["entered_at"] > churned_at[row["account_id"]]:
            continue
        found[row["account_id"]].append(
            Enrollment(
                account_id=row["account_id"],
                job_name=row["job_name"],
                job_version=int(row["job_version"]),
                arm=row["arm"],
                entered_at=row["entered_at"],
                completed_at=row["completed_at"],
                exited_at=row["exited_at"],
                exit_reason=row["exit_reason"],
            )
        )
    return found


def _position(
    stage: str, objectives: Sequence[str], row: dict[str, Any], churned_at: datetime
) -> StagePosition | None:
    entered_at: datetime = row["entered_at"]
    if entered_at > churned_at:
        return None

    def by_churn(moment: datetime | None) -> bool:
        return moment is not None and moment <= churned_at

    done = tuple(
        name for index, name in enumerate(objectives) if by_churn(row[f"objective_{index}"])
    )
    missing = tuple(name for name in objectives if name not in done)
    exited_at = row["exited_at"] if by_churn(row["exited_at"]) else None
    state: StageState
    if by_churn(row["completed_at"]) and (exited_at is None or row["completed_at"] <= exited_at):
        state = "completed"
    elif exited_at is not None:
        state = "exited_incomplete"
    else:
        state = "in_stage"
    until = exited_at if exited_at is not None else churned_at
    return StagePosition(
        stage=stage,
        entered_at=entered_at,
        state=state,
        days_in_stage=max(0.0, (until - entered_at).total_seconds() / DAY_SECONDS),
        objectives_done=done,
        objectives_missing=missing,
    )


def _churn(row: dict[str, Any]) -> Churn:
    controllable = row["controllable"]
    return Churn(
        churn_id=row["churn_id"],
        account_id=row["account_id"],
        churned_at=row["churned_at"],
        reason=row["reason"],
        controllable=None if controllable is None else bool(controllable),
        notes=row["notes"],
        mrr_lost=float(row["mrr_lost"]),
        name=row["name"],
        owner=row["owner"],
        segment=row["segment"],
    )


def _rows(table: ir.Table) -> list[dict[str, Any]]:
    """A small result's rows as dicts, SQL nulls as None."""
    rows: list[dict[str, Any]] = table.to_pyarrow().to_pylist()
    return rows

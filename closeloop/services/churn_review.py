"""``closeloop churn review``: the post-mortem of every churn in a window, grouped by reason
(docs/churn-review.md).

For each churned account: its reason and controllability, the stage it stalled in (the latest it
entered and had not completed when it churned) with the objectives done and missing, its health
snapshots over the look-back before the churn, every job it was enrolled in with that job's
measured effect (so "we ran a save play on it" can be read against "the save play works"), and its
success plans.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta

from closeloop.analysis import churn_review as facts
from closeloop.data.compiler import stage_status
from closeloop.engine.assignment import HOLDOUT
from closeloop.engine.publish import publish_enrollments
from closeloop.errors import LocatedError
from closeloop.schemas.churn_review import (
    ChurnedAccount,
    ChurnReview,
    JobExposure,
    ReasonGroup,
    StagePosition,
    StageStall,
)
from closeloop.schemas.health import HealthPoint
from closeloop.schemas.library import LibraryEntry
from closeloop.schemas.options import DEFAULT_LOOKBACK_DAYS as DEFAULT_LOOKBACK_DAYS
from closeloop.services import health as health_service
from closeloop.services import plans as plans_service
from closeloop.services.library import library_entries
from closeloop.services.project import Workspace


def churn_review(
    workspace: Workspace,
    start: datetime,
    end: datetime,
    *,
    lookback_days: int = DEFAULT_LOOKBACK_DAYS,
    publish: bool = True,
) -> ChurnReview:
    """Every churn with ``churned_at`` in ``[start, end)`` (naive UTC), grouped by reason.

    ``publish`` first copies the engine's enrollments into the warehouse. Each job an account was
    in is measured once, as the intervention library measures it.
    """
    if start >= end:
        raise LocatedError(
            f"the window is empty: start {start.isoformat()} is not before end {end.isoformat()}",
            hint="give --start before --end (start is included, end is not)",
        )
    if lookback_days < 1:
        raise LocatedError(
            f"--lookback must be at least 1 day, not {lookback_days}",
            hint="e.g. --lookback 180 (days of health history before each churn)",
        )
    warehouse = workspace.warehouse
    if publish:
        publish_enrollments(workspace.store, warehouse)
    churned = facts.churns(warehouse, start, end)
    stages = [
        facts.StageStatus(
            name=name,
            objectives=tuple(objective.definition.name for objective in stage.objectives),
            status=stage_status(stage, warehouse, end, workspace.project.catalog),
        )
        for name, stage in workspace.project.stages.items()
    ]
    positions = facts.stage_positions(stages, churned)
    enrolled = facts.enrollments(warehouse, churned)
    effects = _measured_jobs(workspace, {e.job_name for rows in enrolled.values() for e in rows})
    warnings = []
    if not stages:
        warnings.append("the project defines no stages: no account can be shown stalling")
    accounts = [
        _account(
            workspace,
            churn,
            positions[churn.account_id],
            enrolled[churn.account_id],
            effects,
            lookback_days,
        )
        for churn in churned
    ]
    groups = _groups(accounts)
    return ChurnReview(
        start=start,
        end=end,
        lookback_days=lookback_days,
        churns=len(accounts),
        mrr_lost=sum(account.mrr_lost for account in accounts),
        controllable_churns=sum(1 for account in accounts if account.controllable),
        groups=groups,
        warnings=warnings,
    )


def _measured_jobs(workspace: Workspace, names: set[str]) -> dict[str, LibraryEntry]:
    if not names:
        return {}
    return {entry.name: entry for entry in library_entries(workspace, names=names, publish=False)}


def _account(
    workspace: Workspace,
    churn: facts.Churn,
    positions: Sequence[facts.StagePosition],
    enrolled: Sequence[facts.Enrollment],
    effects: dict[str, LibraryEntry],
    lookback_days: int,
) -> ChurnedAccount:
    stages = [_stage(position) for position in positions]
    stalled = [stage for stage in stages if stage.state != "completed"]
    history = health_service.trajectory(
        workspace,
        churn.account_id,
        churn.churned_at - timedelta(days=lookback_days),
        churn.churned_at,
    )
    return ChurnedAccount(
        churn_id=churn.churn_id,
        account_id=churn.account_id,
        name=churn.name,
        owner=churn.owner,
        segment=churn.segment,
        churned_at=churn.churned_at,
        reason=churn.reason,
        controllable=churn.controllable,
        notes=churn.notes,
        mrr_lost=churn.mrr_lost,
        stalled_stage=stalled[-1] if stalled else None,
        stages=stages,
        health=history,
        health_change=_change(history),
        jobs=[_exposure(enrollment, effects.get(enrollment.job_name)) for enrollment in enrolled],
        plans=plans_service.plans_for_account(workspace, churn.account_id, churn.churned_at),
    )


def _change(history: Sequence[HealthPoint]) -> float | None:
    """The first score's last snapshot minus its first (null: fewer than two with a score)."""
    first = [p for p in history if p.score_name == history[0].score_name] if history else []
    scored = [p.score for p in first if p.score is not None]
    return scored[-1] - scored[0] if len(scored) >= 2 else None


def _stage(position: facts.StagePosition) -> StagePosition:
    return StagePosition(
        stage=position.stage,
        entered_at=position.entered_at,
        state=position.state,
        days_in_stage=position.days_in_stage,
        objectives_done=list(position.objectives_done),
        objectives_missing=list(position.objectives_missing),
    )


def _exposure(enrollment: facts.Enrollment, entry: LibraryEntry | None) -> JobExposure:
    return JobExposure(
        job=enrollment.job_name,
        job_version=enrollment.job_version,
        arm=enrollment.arm,
        entered_at=enrollment.entered_at,
        reached_goal_at=enrollment.completed_at,
        exited_at=enrollment.exited_at,
        exit_reason=enrollment.exit_reason,
        job_status=entry.status if entry is not None else "not_measured",
        effect=entry.effect if entry is not None else None,
    )


def _groups(accounts: Sequence[ChurnedAccount]) -> list[ReasonGroup]:
    keyed: dict[tuple[str, bool | None], list[ChurnedAccount]] = {}
    for account in accounts:
        keyed.setdefault((account.reason, account.controllable), []).append(account)
    groups = [
        _group(reason, controllable, members) for (reason, controllable), members in keyed.items()
    ]
    return sorted(groups, key=lambda g: (-g.churns, -g.mrr_lost, g.reason, str(g.controllable)))


def _group(reason: str, controllable: bool | None, members: list[ChurnedAccount]) -> ReasonGroup:
    stalls = Counter(m.stalled_stage.stage for m in members if m.stalled_stage is not None)
    objectives = [o for m in members for plan in m.plans for o in plan.objectives]
    return ReasonGroup(
        reason=reason,
        controllable=controllable,
        churns=len(members),
        mrr_lost=sum(m.mrr_lost for m in members),
        stalled=[
            StageStall(stage=s, accounts=n)
            for s, n in sorted(stalls.items(), key=lambda i: (-i[1], i[0]))
        ],
        never_in_a_job=sum(1 for m in members if not m.jobs),
        treated=sum(1 for m in members if any(job.arm != HOLDOUT for job in m.jobs)),
        with_plan=sum(1 for m in members if m.plans),
        plan_objectives_met=sum(1 for o in objectives if o.status == "met"),
        plan_objectives_due=sum(1 for o in objectives if o.status in ("met", "missed")),
        accounts=members,
    )

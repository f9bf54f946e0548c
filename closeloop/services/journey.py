"""The journey's use cases: the stage view, the signals, and a draft job from a signal.

``stage_view`` is ``closeloop stage`` and ``GET /api/stages/{name}``; ``signals`` is ``closeloop
signals`` and ``GET /api/signals``; ``create_job_from_signal`` is ``closeloop jobs
create-from-signal`` and ``POST /api/signals/{id}/job``. docs/stages.md explains every number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from closeloop.analysis.journey import (
    Classified,
    Entrant,
    FlaggedAccount,
    ObjectiveTimes,
    Quantiles,
    StageData,
    Thresholds,
    classify,
    completion_sequences,
    days_between,
    flagged_accounts,
    objective_times,
    quantiles,
    stage_data,
)
from closeloop.data.compiler import matching_accounts, stage_status
from closeloop.definitions.catalog import LoadedStage
from closeloop.definitions.expressions import (
    And,
    Expression,
    Membership,
    MembershipVerb,
    Or,
    parse_expression,
)
from closeloop.definitions.rules import threshold
from closeloop.errors import NotFoundError
from closeloop.schemas.definitions import StageCount
from closeloop.schemas.jobs import JobWritten
from closeloop.schemas.journey import (
    AccountClass,
    ClassThresholds,
    CompletionSequence,
    ObjectiveChange,
    ObjectiveView,
    Signal,
    SignalAccount,
    SignalKind,
    Signals,
    StageAccount,
    StageChange,
    StageView,
    WindowCounts,
)
from closeloop.services.data import freshness
from closeloop.services.definitions import naive_utc
from closeloop.services.job_editing import create_job
from closeloop.services.project import Workspace
from closeloop.services.server import Server
from closeloop.stats.survival import completion_quantile

DEFAULT_WINDOW_DAYS = 30.0
# A drafted job runs this long unless edited (the default job horizon).
DRAFT_DURATION_DAYS = 30
# Goals of drafted jobs for the signals that have no objective (docs/stages.md).
USAGE_DROP_GOAL = "usage_change_60d >= 0"
RENEWAL_RISK_GOAL = "last_seen_days < 7"


# -- the stage view ---------------------------------------------------------------------------


def thresholds_of(workspace: Workspace, stage: LoadedStage) -> Thresholds:
    """The stage's own ``classes:``, else the project's ``stage_classes:``."""
    chosen = stage.definition.classes or workspace.project.config.stage_classes
    return Thresholds(chosen.ahead, chosen.behind, chosen.stuck, chosen.stuck_days)


def _data(workspace: Workspace, stage: LoadedStage, as_of: datetime, window: float) -> StageData:
    status = stage_status(stage, workspace.warehouse, as_of, workspace.project.catalog)
    return stage_data(
        status, len(stage.objectives), len(stage.markers), workspace.warehouse, as_of, window
    )


def dated(expression: Expression) -> bool:
    """Whether the compiler can tell when ``expression`` first held (docs/expressions.md, time
    to goal): an event count ``>= k`` without window or filter, ``entered``/``completed`` a stage
    or job, and ``and``/``or`` of those. Anything else is dated T, which is no completion time."""
    if isinstance(expression, And | Or):
        return all(dated(part) for part in expression.parts)
    found = threshold(expression)
    if found is not None:
        return found[0].window_days is None and not found[0].filters and found[1] >= 1
    return isinstance(expression, Membership) and expression.verb in (
        MembershipVerb.ENTERED,
        MembershipVerb.COMPLETED,
    )


def _dated(stage: LoadedStage) -> list[bool]:
    return [dated(objective.completion) for objective in stage.objectives]


def _times(stage: LoadedStage, data: StageData, as_of: datetime) -> list[ObjectiveTimes]:
    return [
        objective_times(
            objective.name,
            index,
            data.entrants,
            as_of,
            data.counts.objectives_completed[index],
            dated=is_dated,
        )
        for index, (objective, is_dated) in enumerate(
            zip(stage.objectives, _dated(stage), strict=True)
        )
    ]


def _undated_warnings(stage: LoadedStage) -> list[str]:
    return [
        f"objective {objective.name!r} ({' '.join(objective.definition.completion.split())}) "
        "cannot be dated: when it first held is unknown, so it has no time to complete, no "
        "place in the order and is never due; to date it, complete it on an event count "
        '(count(event "x") >= 1) or a stage or job time'
        for objective, is_dated in zip(stage.objectives, _dated(stage), strict=True)
        if not is_dated
    ]


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _change(now: float | None, before: float | None) -> float | None:
    return now - before if now is not None and before is not None else None


def stage_view(
    workspace: Workspace,
    name: str,
    as_of: datetime,
    *,
    window_days: float = DEFAULT_WINDOW_DAYS,
    since: datetime | None = None,
    accounts: bool = False,
) -> StageView:
    """Stage ``name`` as of ``as_of`` (docs/stages.md): counts ever and over the window, per
    objective the completion rate and KM time to complete, the typical order, markers, with
    ``accounts`` every account in the stage and its class, with ``since`` the change since then.
    An unknown name raises :class:`~closeloop.errors.NotFoundError`."""
    if not window_days > 0:
        raise ValueError(f"the window must be positive, not {window_days:g} days")
    as_of = naive_utc(as_of)
    stage = workspace.project.stage(name)
    thresholds = thresholds_of(workspace, stage)
    data = _data(workspace, stage, as_of, window_days)
    times = _times(stage, data, as_of)
    cuts = [quantiles(found.risk_table, thresholds) for found in times]
    names = [objective.name for objective in stage.objectives]
    counts = data.counts
    change = None
    if since is not None:
        change = _stage_change(workspace, stage, naive_utc(since), counts.in_stage, times)
    return StageView(
        name=stage.name,
        as_of=as_of,
        in_stage=counts.in_stage,
        entered=counts.entered,
        completed=counts.completed,
        exited=counts.exited,
        window=WindowCounts(
            days=window_days,
            entered=counts.window_entered,
            completed=counts.window_completed,
            exited=counts.window_exited,
        ),
        objectives=[_objective(found, cut) for found, cut in zip(times, cuts, strict=True)],
        typical_order=_typical_order(times),
        sequences=[
            CompletionSequence(objectives=list(order), accounts=count)
            for order, count in completion_sequences(data.entrants, names, _dated(stage))
        ],
        markers=[
            StageCount(name=marker.name, count=counts.markers[index])
            for index, marker in enumerate(stage.markers)
        ],
        thresholds=ClassThresholds(
            ahead=thresholds.ahead,
            behind=thresholds.behind,
            stuck=thresholds.stuck,
            stuck_days=thresholds.stuck_days,
        ),
        accounts=(
            [
                _account(classify(entrant, names, cuts, thresholds, as_of, _dated(stage)))
                for entrant in data.entrants
                if entrant.in_stage
            ]
            if accounts
            else None
        ),
        since=change,
        warnings=[*_undated_warnings(stage), *freshness(workspace.warehouse, as_of).warnings],
    )


def _objective(found: ObjectiveTimes, cut: Quantiles) -> ObjectiveView:
    return ObjectiveView(
        name=found.name,
        count=found.completed,
        completed_after_exit=found.completed_after_exit,
        entered=found.entered,
        completion_rate=_rate(found.completed, found.entered),
        median_days=found.median_days,
        p75_days=found.p75_days,
        censored=found.censored,
        completer_median_days=found.completer_median_days,
        dated=found.dated,
        ahead_days=cut.ahead,
        behind_days=cut.behind,
        stuck_days=cut.stuck,
    )


def _typical_order(times: Sequence[ObjectiveTimes]) -> list[str]:
    """Objectives by median completion time among completers; never completed ones last."""
    ranked = sorted(
        enumerate(times),
        key=lambda item: (
            item[1].completer_median_days is None,
            item[1].completer_median_days or 0.0,
            item[0],
        ),
    )
    return [found.name for _, found in ranked]


def _account(found: Classified) -> StageAccount:
    entrant = found.entrant
    return StageAccount(
        account_id=entrant.account_id,
        name=entrant.name,
        owner=entrant.owner,
        arr=entrant.arr,
        days_in_stage=found.days_in_stage,
        objectives_done=list(found.done),
        objectives_missing=list(found.missing),
        days_since_progress=found.days_since_progress,
        **{"class": AccountClass(found.account_class.value)},
        reason=found.reason,
    )


def _stage_change(
    workspace: Workspace,
    stage: LoadedStage,
    since: datetime,
    in_stage_now: int,
    times_now: Sequence[ObjectiveTimes],
) -> StageChange:
    """The stage as of ``since`` beside now: in stage, completion rate and KM median."""
    before = _data(workspace, stage, since, DEFAULT_WINDOW_DAYS)
    times_before = _times(stage, before, since)
    objectives = []
    for then, now in zip(times_before, times_now, strict=True):
        rate_then, rate_now = _rate(then.completed, then.entered), _rate(now.completed, now.entered)
        objectives.append(
            ObjectiveChange(
                name=now.name,
                completion_rate_before=rate_then,
                completion_rate_now=rate_now,
                completion_rate_change=_change(rate_now, rate_then),
                median_days_before=then.median_days,
                median_days_now=now.median_days,
                median_days_change=_change(now.median_days, then.median_days),
            )
        )
    return StageChange(
        since=since,
        in_stage_before=before.counts.in_stage,
        in_stage_now=in_stage_now,
        in_stage_change=in_stage_now - before.counts.in_stage,
        objectives=objectives,
    )


# -- signals ----------------------------------------------------------------------------------


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def days_literal(days: float) -> str:
    """``days`` as the expression language writes it: whole days plainly, else 4 decimals (the
    rule and the flagged accounts both use the number as written)."""
    if float(days).is_integer():
        return str(int(days))
    return f"{days:.4f}".rstrip("0").rstrip(".")


def _parenthesised(expression: str) -> str:
    text = expression.strip()
    # A comment in the expression would swallow a closing parenthesis on its line.
    return f"({text}\n)" if "#" in text else f"({text})"


def slow_completer_rule(stage: LoadedStage, objective: int, days: str) -> str:
    """In the stage, missing the objective, and entered at least ``days`` days ago."""
    completion = _parenthesised(stage.objectives[objective].definition.completion)
    name = _quoted(stage.name)
    return (
        f"in stage {name} and not {completion} and not entered stage {name} within last {days} days"
    )


def signals(workspace: Workspace, as_of: datetime, kind: SignalKind | None = None) -> Signals:
    """Every signal as of ``as_of`` (or those of ``kind``), each with its rule and accounts."""
    as_of = naive_utc(as_of)
    found: list[Signal] = []
    if kind in (None, SignalKind.SLOW_COMPLETER):
        for stage in workspace.project.stages.values():
            found.extend(_slow_completers(workspace, stage, as_of))
    settings = workspace.project.config.signals
    if kind in (None, SignalKind.USAGE_DROP):
        rule = f"usage_change_60d < {settings.usage_drop.threshold:g}"
        found.append(
            _rule_signal(
                workspace,
                as_of,
                SignalKind.USAGE_DROP,
                rule,
                f"events over the last 60 days fell more than "
                f"{-settings.usage_drop.threshold:.0%} from the 60 days before",
            )
        )
    if kind in (None, SignalKind.RENEWAL_RISK):
        risk = settings.renewal_risk
        rule = f"renewal_date within next {risk.within_days} days and {_parenthesised(risk.risk)}"
        found.append(
            _rule_signal(
                workspace,
                as_of,
                SignalKind.RENEWAL_RISK,
                rule,
                f"renewal within {risk.within_days} days and at risk: {risk.risk.strip()}",
            )
        )
    return Signals(
        as_of=as_of,
        count=sum(1 for signal in found if signal.count),
        signals=found,
        warnings=list(freshness(workspace.warehouse, as_of).warnings),
    )


def _slow_completers(workspace: Workspace, stage: LoadedStage, as_of: datetime) -> list[Signal]:
    quantile = workspace.project.config.signals.slow_completer.quantile
    data = _data(workspace, stage, as_of, DEFAULT_WINDOW_DAYS)
    times = _times(stage, data, as_of)
    found = []
    for index, objective in enumerate(stage.objectives):
        cut = completion_quantile(times[index].risk_table, quantile)
        if not math.isfinite(cut):
            continue  # fewer than that share are known to complete it: nobody is late yet
        days = days_literal(cut)
        late = timedelta(days=float(days))
        flagged = [
            entrant
            for entrant in data.entrants
            if entrant.in_stage
            and entrant.objectives[index] is None
            and as_of - entrant.entered_at >= late
        ]
        found.append(
            _signal(
                f"{SignalKind.SLOW_COMPLETER.value}:{stage.name}:{objective.name}",
                SignalKind.SLOW_COMPLETER,
                slow_completer_rule(stage, index, days),
                f"in {stage.name!r} for at least {days} days without {objective.name!r} "
                f"({quantile:.0%} of entrants complete it by then)",
                [_entrant_account(entrant, as_of) for entrant in flagged],
            )
        )
    return found


def _entrant_account(entrant: Entrant, as_of: datetime) -> SignalAccount:
    return SignalAccount(
        account_id=entrant.account_id,
        name=entrant.name,
        owner=entrant.owner,
        arr=entrant.arr,
        detail=f"{days_between(entrant.entered_at, as_of):.1f} days in stage",
    )


def _rule_signal(
    workspace: Workspace, as_of: datetime, kind: SignalKind, rule: str, description: str
) -> Signal:
    expression = parse_expression(rule)
    units = matching_accounts(expression, workspace.warehouse, as_of, workspace.project.catalog)
    rows = flagged_accounts(units, workspace.warehouse, as_of)
    return _signal(
        kind.value, kind, rule, description, [_flagged(row, kind, as_of) for row in rows]
    )


def _flagged(row: FlaggedAccount, kind: SignalKind, as_of: datetime) -> SignalAccount:
    usage = (
        f"usage {row.usage_change_60d:+.0%} over 60 days"
        if row.usage_change_60d is not None
        else "usage change unknown"
    )
    seen = (
        f"last seen {row.last_seen_days:.0f} day{'' if round(row.last_seen_days) == 1 else 's'} ago"
        if row.last_seen_days is not None
        else "never seen"
    )
    detail = f"{usage}, {seen}"
    if kind == SignalKind.RENEWAL_RISK and row.renewal_date is not None:
        renewal = row.renewal_date
        day = renewal.date() if isinstance(renewal, datetime) else renewal
        detail = f"renews {day:%Y-%m-%d} (in {(day - as_of.date()).days} days), {detail}"
    return SignalAccount(
        account_id=row.account_id, name=row.name, owner=row.owner, arr=row.arr, detail=detail
    )


def _signal(
    signal_id: str, kind: SignalKind, rule: str, description: str, accounts: list[SignalAccount]
) -> Signal:
    return Signal(
        id=signal_id,
        kind=kind,
        rule=rule,
        description=description,
        count=len(accounts),
        arr_at_risk=sum(account.arr or 0.0 for account in accounts),
        accounts=accounts,
    )


# -- a draft job from a signal ----------------------------------------------------------------


def find_signal(workspace: Workspace, signal_id: str, as_of: datetime) -> Signal:
    """The signal ``signal_id`` as of ``as_of``; :class:`NotFoundError` names the ones there are."""
    kind = signal_id.split(":", 1)[0]
    chosen = SignalKind(kind) if kind in {k.value for k in SignalKind} else None
    found = signals(workspace, as_of, chosen).signals if chosen is not None else []
    for signal in found:
        if signal.id == signal_id:
            return signal
    known = [signal.id for signal in signals(workspace, as_of).signals]
    raise NotFoundError(
        f"no signal {signal_id!r} as of {as_of:%Y-%m-%d %H:%M}; there are: "
        + (", ".join(repr(name) for name in known) or "none")
    )


def _draft_name(signal: Signal) -> str:
    if signal.kind == SignalKind.SLOW_COMPLETER:
        _, stage, objective = signal.id.split(":", 2)
        return f"Slow completers - {stage} - {objective}"
    return "Usage drop" if signal.kind == SignalKind.USAGE_DROP else "Renewal risk"


def draft_goal(workspace: Workspace, signal: Signal) -> str:
    """The drafted job's goal: the objective's completion for a slow completer, else a return
    to usage (``usage_drop``) or recent activity (``renewal_risk``)."""
    if signal.kind == SignalKind.SLOW_COMPLETER:
        _, stage_name, objective_name = signal.id.split(":", 2)
        stage = workspace.project.stage(stage_name)
        for objective in stage.objectives:
            if objective.name == objective_name:
                return objective.definition.completion.strip()
    return USAGE_DROP_GOAL if signal.kind == SignalKind.USAGE_DROP else RENEWAL_RISK_GOAL


def create_job_from_signal(
    server: Server,
    signal_id: str,
    as_of: datetime,
    *,
    name: str | None = None,
    actor: str | None = None,
) -> JobWritten:
    """Write a draft job (not launched) whose audience is the signal's rule, through the job
    editor (validated like ``closeloop validate``, comments kept)."""
    as_of = naive_utc(as_of)
    with server.workspace() as workspace:
        signal = find_signal(workspace, signal_id, as_of)
        goal = draft_goal(workspace, signal)
    body = {
        "name": name or _draft_name(signal),
        "description": f"Drafted from signal {signal.id} as of {as_of:%Y-%m-%d}: "
        f"{signal.description}.",
        "audience": signal.rule,
        "goal": goal,
        "duration_days": DRAFT_DURATION_DAYS,
        "hypothesis": {
            "expected_effect": f"Accounts flagged by {signal.id} reach the goal more often "
            "with the job than in the holdout.",
            "primary_metric": "completion_rate",
        },
    }
    return create_job(server, body, actor=actor)

"""The board report as a use case: compose the three layers from the other commands' results.

Every number is the result of an existing service called once: revenue outcomes
(:func:`~closeloop.services.outcomes_revenue.revenue`), adoption, voice of the customer, signals,
each job's report (:func:`~closeloop.services.reports.job_report`, the same verdict and value
``closeloop report`` shows), the outbox and the success plans. A part the project's data cannot
answer (no subscriptions, no survey answers, no value event) is ``unavailable`` with the reason;
one failing part never sinks the report.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta

from closeloop.analysis.board import enrollments_entered
from closeloop.analysis.measurement import COMPLETION_RATE
from closeloop.engine.outbox import status_counts_due
from closeloop.engine.publish import publish_enrollments
from closeloop.engine.statuses import OutboxStatus
from closeloop.errors import CloseloopError, ConfigurationError
from closeloop.schemas.board import (
    Activity,
    AdoptionPart,
    BoardReport,
    Initiative,
    Initiatives,
    LeadingIndicators,
    Outcomes,
    RiskPart,
    RiskSignal,
    TimeToValuePart,
    TrendPeriod,
    VoicePart,
)
from closeloop.schemas.jobs import JobSummary
from closeloop.schemas.revenue import RevenueValue
from closeloop.services import outcomes_adoption, outcomes_revenue, outcomes_voc
from closeloop.services.data import freshness, newest_event
from closeloop.services.journey import signals
from closeloop.services.operations import list_jobs
from closeloop.services.plans import goals_achieved
from closeloop.services.project import Workspace
from closeloop.services.refresh import refresh_measurements
from closeloop.services.reports import HOLDOUT, TREATMENT, JobReport, job_report
from closeloop.services.results import job_report_model

TREND_MONTHS = 6
TREND_QUARTERS = 4
MAX_DAYS = 366
QUARTER_DAYS = 62  # a period longer than two months trends by quarter
TOP_FEATURES = 8
PARTS = (
    "outcomes",
    "adoption",
    "time to value",
    "voice of the customer",
    "risk",
    "initiatives",
    "activity",
)
"""The steps :func:`board_report` reports to its ``progress`` callback, in order."""

Progress = Callable[[str], None]


def default_period(workspace: Workspace, today: date | None = None) -> tuple[date, date]:
    """The last full calendar month before the data ends (the newest event, or today when the
    data runs past it or there are no events)."""
    today = today or datetime.now(UTC).date()
    newest = newest_event(workspace.warehouse)
    data_end = min(today, newest.date()) if newest is not None else today
    end = data_end.replace(day=1)
    return previous_month(end), end


def previous_month(first: date) -> date:
    """The first day of the month before ``first`` (itself a first day)."""
    return (first - timedelta(days=1)).replace(day=1)


def check_period(start: date, end: date) -> None:
    if end <= start:
        raise ConfigurationError(
            f"--end ({end.isoformat()}) must be after --start ({start.isoformat()}): "
            "the report covers [start, end)"
        )
    if start.year < 1900:
        raise ConfigurationError(f"--start {start.isoformat()} is before 1900")
    if end.year > 9998:
        raise ConfigurationError(f"--end {end.isoformat()} is after 9998")
    if (end - start).days > MAX_DAYS:
        raise ConfigurationError(
            f"[{start.isoformat()}, {end.isoformat()}) is {(end - start).days} days: a board "
            f"report covers at most {MAX_DAYS} days (a year); the trend shows the periods before"
        )


def _moment(day: date) -> datetime:
    return datetime.combine(day, time())


def trend_window(start: date, end: date) -> tuple[TrendPeriod, date]:
    """How the trend is cut (month, or quarter for a period over two months) and where it
    starts: the calendar month (quarter) holding ``start``, then back over the preceding ones."""
    if (end - start).days > QUARTER_DAYS:
        first = start.replace(month=3 * ((start.month - 1) // 3) + 1, day=1)
        for _ in range(TREND_QUARTERS - 1):
            first = previous_month(previous_month(previous_month(first)))
        return "quarter", first
    first = start.replace(day=1)
    for _ in range(TREND_MONTHS - 1):
        first = previous_month(first)
    return "month", first


def board_report(
    workspace: Workspace,
    start: date,
    end: date,
    *,
    value_event: str | None = None,
    progress: Progress | None = None,
) -> BoardReport:
    """The board report for ``[start, end)``: outcomes, leading indicators, initiatives, activity.

    ``value_event`` (default: ``board_report.value_event`` in closeloop.yaml) marks first value
    for time to value. ``progress`` is called with each part's name before it is computed.
    """
    check_period(start, end)
    config = workspace.project.config.board_report
    value_event = value_event or (config.value_event if config is not None else None)
    step = progress or (lambda _name: None)
    begin, finish = _moment(start), _moment(end)
    step("outcomes")
    outcomes = _outcomes(workspace, start, end)
    step("adoption")
    adoption = _adoption(workspace, begin, finish)
    step("time to value")
    time_to_value = _time_to_value(workspace, begin, finish, value_event)
    step("voice of the customer")
    voice = _voice(workspace, begin, finish)
    step("risk")
    risk = _risk(workspace, finish)
    step("initiatives")
    jobs = [job for job in list_jobs(workspace) if job.launched_at is not None]
    publish_enrollments(workspace.store, workspace.warehouse)  # once, for every job report
    initiatives = _initiatives(workspace, jobs, finish)
    step("activity")
    activity = _activity(workspace, jobs, begin, finish)
    return BoardReport(
        project=workspace.project.config.name,
        start=start,
        end=end,
        outcomes=outcomes,
        leading=LeadingIndicators(
            adoption=adoption, time_to_value=time_to_value, voice_of_customer=voice, risk=risk
        ),
        initiatives=initiatives,
        activity=activity,
        warnings=list(freshness(workspace.warehouse, finish, option="--end").warnings),
    )


# -- layer 1 ----------------------------------------------------------------------------------


def _outcomes(workspace: Workspace, start: date, end: date) -> Outcomes:
    trend_period, trend_start = trend_window(start, end)
    source = (
        f"closeloop outcomes revenue --start {start} --end {end}; the trend with "
        f"--start {trend_start} --period {trend_period}"
    )
    try:
        window = outcomes_revenue.revenue(workspace, start, end)
        trend = outcomes_revenue.revenue(workspace, trend_start, end, period=trend_period)
    except CloseloopError as error:
        return Outcomes(
            status="unavailable",
            reason=str(error),
            source=source,
            period=None,
            trend_period=trend_period,
            trend=[],
        )
    total = window.total
    reason = None
    if total.starting_mrr <= 0 and total.new_mrr <= 0:
        reason = "no subscription revenue (MRR) in or before the period: import subscriptions"
    return Outcomes(
        status="unavailable" if reason else "ok",
        reason=reason,
        source=source,
        period=total,
        trend_period=trend_period,
        trend=list(trend.rows),
    )


# -- layer 2 ----------------------------------------------------------------------------------


def _adoption(workspace: Workspace, start: datetime, end: datetime) -> AdoptionPart:
    source = f"closeloop outcomes adoption --start {start:%Y-%m-%d} --end {end:%Y-%m-%d}"
    try:
        found = outcomes_adoption.adoption(workspace, start, end)
    except CloseloopError as error:
        return AdoptionPart(
            status="unavailable",
            reason=str(error),
            source=source,
            overall=None,
            features=[],
            usage_drops=None,
            checked_accounts=None,
        )
    active = found.overall.active_accounts
    features = sorted(found.feature_adoption, key=lambda f: (-(f.adoption_rate or 0.0), f.feature))[
        :TOP_FEATURES
    ]
    return AdoptionPart(
        status="ok" if active else "unavailable",
        reason=None if active else "no activity events in the period",
        source=source,
        overall=found.overall,
        features=features,
        usage_drops=len(found.usage_drops.flagged),
        checked_accounts=found.usage_drops.checked_accounts,
    )


def _time_to_value(
    workspace: Workspace, start: datetime, end: datetime, value_event: str | None
) -> TimeToValuePart:
    if not value_event:
        return TimeToValuePart(
            status="unavailable",
            reason="no value event: set board_report.value_event in closeloop.yaml "
            "(or --value-event) to the event that marks first value",
            source="closeloop outcomes adoption --value-event EVENT",
            value_event=None,
            overall=None,
            cohorts=[],
        )
    source = (
        f"closeloop outcomes adoption --start {start:%Y-%m-%d} --end {end:%Y-%m-%d} "
        f"--value-event {value_event}"
    )
    try:
        found = outcomes_adoption.adoption(workspace, start, end, value_event=value_event)
    except CloseloopError as error:
        return TimeToValuePart(
            status="unavailable",
            reason=str(error),
            source=source,
            value_event=value_event,
            overall=None,
            cohorts=[],
        )
    cohorts = found.time_to_value.cohorts if found.time_to_value is not None else []
    overall = next((cohort for cohort in cohorts if cohort.cohort == "all"), None)
    reached = overall is not None and overall.reached_value > 0
    return TimeToValuePart(
        status="ok" if reached else "unavailable",
        reason=None if reached else f"no account has a {value_event!r} event before the end",
        source=source,
        value_event=value_event,
        overall=overall,
        cohorts=[cohort for cohort in cohorts if cohort.cohort != "all"],
    )


def _voice(workspace: Workspace, start: datetime, end: datetime) -> VoicePart:
    source = f"closeloop outcomes voc --start {start:%Y-%m-%d} --end {end:%Y-%m-%d}"
    try:
        found = outcomes_voc.voc(workspace, start, end, comments=0)
    except CloseloopError as error:
        return VoicePart(
            status="unavailable", reason=str(error), source=source, nps=None, csat=None
        )
    answered = found.nps.responses + found.csat.responses
    return VoicePart(
        status="ok" if answered else "unavailable",
        reason=None if answered else "no NPS or CSAT answers in the period",
        source=source,
        nps=found.nps,
        csat=found.csat,
    )


def _risk(workspace: Workspace, at: datetime) -> RiskPart:
    source = f"closeloop signals --at {at:%Y-%m-%d}"
    try:
        found = signals(workspace, at)
    except CloseloopError as error:
        return RiskPart(
            status="unavailable",
            reason=str(error),
            source=source,
            as_of=at,
            accounts_at_risk=0,
            arr_at_risk=0.0,
            signals=[],
        )
    flagged: dict[str, float] = {}
    for signal in found.signals:
        for account in signal.accounts:
            arr = account.arr
            flagged[account.account_id] = arr if arr is not None and math.isfinite(arr) else 0.0
    return RiskPart(
        status="ok",
        reason=None,
        source=source,
        as_of=at,
        accounts_at_risk=len(flagged),
        arr_at_risk=sum(flagged.values()),
        signals=[
            RiskSignal(
                id=signal.id,
                kind=str(signal.kind),
                description=signal.description,
                accounts=signal.count,
                arr_at_risk=signal.arr_at_risk,
            )
            for signal in found.signals
        ],
    )


# -- initiatives ------------------------------------------------------------------------------


def _initiatives(workspace: Workspace, jobs: list[JobSummary], end: datetime) -> Initiatives:
    chosen = [job for job in jobs if job.launched_at is not None and _naive(job.launched_at) < end]
    # Every job measured in one refresh (one pass over the events), as of its last tick or end.
    names = [job.name for job in chosen if job.in_project and job.last_tick is not None]
    reports = refresh_measurements(workspace, names=names, segment_by=(), publish=False, until=end)
    measured = [_initiative(workspace, job, end, reports.get(job.name)) for job in chosen]
    return Initiatives(
        status="ok" if measured else "unavailable",
        reason=None if measured else "no job was launched before the period end",
        source="closeloop report JOB --as-of END, for every launched job",
        jobs=measured,
    )


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _unmeasured(job: JobSummary, reason: str, as_of: datetime | None = None) -> Initiative:
    return Initiative(
        name=job.name,
        job_status=job.status,
        launched_at=job.launched_at,
        as_of=as_of,
        status="unavailable",
        reason=reason,
        enrolled=job.enrolled if as_of is None else 0,
        decision=None,
        decision_words=None,
        summary=None,
        lift=None,
        lift_lower=None,
        lift_upper=None,
        relative_lift=None,
        lift_status=None,
        added_arr=None,
        added_arr_lower=None,
        added_arr_upper=None,
        revenue_horizon_days=None,
        revenue_status=None,
    )


def _initiative(
    workspace: Workspace,
    job: JobSummary,
    end: datetime,
    measured: JobReport | CloseloopError | None = None,
) -> Initiative:
    if not job.in_project:
        return _unmeasured(
            job, "no longer in the project's definitions (closeloop library keeps its record)"
        )
    if job.last_tick is None:
        return _unmeasured(job, "no ticks yet")
    as_of = min(_naive(job.last_tick), end)
    try:
        if isinstance(measured, CloseloopError):
            raise measured
        report = measured or job_report(workspace, job.name, as_of, segment_by=(), publish=False)
    except CloseloopError as error:
        return _unmeasured(job, str(error), as_of)
    model = job_report_model(report)
    verdict = model.verdict
    effect = report.measurement.comparison(TREATMENT, COMPLETION_RATE, HOLDOUT)
    absolute = (
        effect.absolute
        if effect is not None
        else report.matched.completion
        if report.matched is not None
        else None
    )
    relative = effect.relative if effect is not None else None
    value = _value(model.revenue_value)
    return Initiative(
        name=job.name,
        job_status=job.status,
        launched_at=job.launched_at,
        as_of=as_of,
        status="ok",
        reason=None,
        enrolled=sum(arm.entered for arm in model.arms.values()),
        decision=verdict.decision if verdict is not None else None,
        decision_words=verdict.words if verdict is not None else None,
        summary=verdict.summary if verdict is not None else None,
        lift=absolute.estimate if absolute is not None else None,
        lift_lower=absolute.ci.lower if absolute is not None else None,
        lift_upper=absolute.ci.upper if absolute is not None else None,
        relative_lift=relative.estimate if relative is not None else None,
        lift_status=model.status,
        added_arr=value[0],
        added_arr_lower=value[1],
        added_arr_upper=value[2],
        revenue_horizon_days=value[3],
        revenue_status=value[4],
    )


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _value(
    revenue: RevenueValue | None,
) -> tuple[float | None, float | None, float | None, int | None, str | None]:
    """The added ARR with its interval from the longest horizon where it could be compared
    (the figure the job report's verdict states as its impact)."""
    if revenue is None:
        return None, None, None, None, None
    for horizon in sorted(revenue.horizons, key=lambda h: -h.days):
        comparison = horizon.comparison
        lower, upper = comparison.added_arr_ci
        if _finite(comparison.added_arr) and _finite(lower) and _finite(upper):
            return comparison.added_arr, lower, upper, horizon.days, comparison.status
    return None, None, None, None, None


# -- layer 3 ----------------------------------------------------------------------------------


def _activity(
    workspace: Workspace, jobs: list[JobSummary], start: datetime, end: datetime
) -> Activity:
    source = (
        "closeloop jobs list, closeloop outbox (messages fallen due in the period), "
        f"closeloop plans achieved --at {end:%Y-%m-%d}"
    )
    launched = [_naive(job.launched_at) for job in jobs if job.launched_at is not None]
    running = [
        job
        for job in jobs
        if job.launched_at is not None
        and _naive(job.launched_at) < end
        and job.last_tick is not None
        and _naive(job.last_tick) >= start
    ]
    try:
        messages = status_counts_due(workspace.store, start, end)
        entered = enrollments_entered(workspace.warehouse, start, end)
        achieved = goals_achieved(workspace, end)
    except CloseloopError as error:
        return Activity(
            status="unavailable",
            reason=str(error),
            source=source,
            jobs_launched=0,
            jobs_running=0,
            accounts_enrolled=0,
            messages={},
            messages_sent=0,
            messages_failed=0,
            success_plans=None,
        )
    return Activity(
        status="ok",
        reason=None,
        source=source,
        jobs_launched=sum(1 for moment in launched if start <= moment < end),
        jobs_running=len(running),
        accounts_enrolled=entered,
        messages=dict(sorted(messages.items())),
        messages_sent=messages.get(OutboxStatus.SENT, 0),
        messages_failed=messages.get(OutboxStatus.DEAD, 0),
        success_plans=achieved.overall if achieved.overall.decided else None,
    )

"""The intervention library: every job ever run, what it did and what it caused.

A job is in the library once the state store has registered it (its first tick). Its definition is
the project's when the job still exists there, else the latest recorded version
(``definition_versions``), so a job deleted from ``jobs.yaml`` keeps its place. Its effect is the
job report's (:func:`closeloop.services.reports.job_report`): the completion lift of the variants
pooled against the holdout, each variant against the holdout, and per segment with
Benjamini–Hochberg adjusted p-values and false-coverage-rate adjusted intervals.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable

from closeloop.analysis.job_report import JobReport, build_job_report
from closeloop.analysis.measurement import COMPLETION_RATE, SegmentLift
from closeloop.definitions.models import (
    ActionStep,
    EmailStep,
    EnrollStep,
    FileStep,
    JobDefinition,
    SetAttributeStep,
    SlackStep,
    WaitStep,
    WebhookStep,
)
from closeloop.engine.assignment import HOLDOUT, TREATMENT
from closeloop.engine.lifecycle import JobOverview, jobs_overview
from closeloop.engine.publish import publish_enrollments
from closeloop.engine.versions import parse_text
from closeloop.errors import CloseloopError
from closeloop.schemas.library import (
    ArmEffect,
    Library,
    LibraryEntry,
    SegmentEffect,
    SortKey,
    VariantSend,
    VariantSummary,
)
from closeloop.services.project import Workspace
from closeloop.services.refresh import refresh_measurements
from closeloop.services.report_cache import REPORTS, report_key, warehouse_marks
from closeloop.services.reports import horizon_of, job_report
from closeloop.stats import ComparisonResult

SEGMENT_COLUMN = "segment"


def library(
    workspace: Workspace,
    *,
    goal: str | None = None,
    segment: str | None = None,
    status: str | None = None,
    message: str | None = None,
    within_days: float | None = None,
    sort: SortKey = SortKey.EFFECT,
    offset: int = 0,
    limit: int | None = None,
) -> Library:
    """Every job ever run, filtered and sorted (see :func:`select_entries`); ``count`` is how
    many match, ``jobs`` those from ``offset`` on (at most ``limit``, all by default)."""
    chosen = select_entries(
        list(library_entries(workspace)),
        goal=goal,
        segment=segment,
        status=status,
        message=message,
        within_days=within_days,
        sort=sort,
    )
    end = None if limit is None else offset + limit
    return Library(count=len(chosen), jobs=chosen[offset:end])


def library_entries(
    workspace: Workspace, *, names: Collection[str] | None = None, publish: bool = True
) -> Iterable[LibraryEntry]:
    """Every job the state store has registered (or those named), measured as of its latest tick.

    One job that cannot be measured (its definition no longer parses, its data is gone) becomes
    an entry with ``status="error"`` and the reason, never a failure of the whole library.
    ``publish`` first copies the engine's enrollments into the warehouse (once for every job).
    """
    store = workspace.store
    jobs = [job for job in jobs_overview(store) if names is None or job.name in names]
    segment_by = (
        (SEGMENT_COLUMN,) if SEGMENT_COLUMN in workspace.warehouse.table("accounts").columns else ()
    )
    if publish:
        publish_enrollments(store, workspace.warehouse)
    measured = _measured_in_project(workspace, [job for job in jobs if job.last_tick], segment_by)
    for job in jobs:
        name = job.name
        stored_text, versions = job.latest_definition, job.versions
        in_project = name in workspace.project.jobs
        source = "project" if in_project else "history"
        try:
            definition = (
                workspace.project.job(name).definition
                if in_project
                else JobDefinition.model_validate(parse_text(stored_text))
            )
        except (ValueError, CloseloopError) as error:
            yield _broken(job, str(error))
            continue
        last_tick = job.last_tick
        horizon_days = horizon_of(definition)
        entry = LibraryEntry(
            name=name,
            definition_source=source,
            version=job.version,
            versions=versions,
            target=str(definition.target),
            goal=definition.goal,
            audience=definition.audience,
            exclusions=list(definition.exclusions),
            horizon_days=horizon_days,
            holdout=job.holdout,
            variants=variant_summaries(definition),
            launched_at=job.launched_at,
            last_tick=last_tick,
            enrolled=job.enrolled,
            matured=0,
            status="not_measured",
            effect=None,
            variant_effects=[],
            segments=[],
        )
        if last_tick is None or not entry.enrolled:
            yield entry.model_copy(update={"warnings": ["no enrollments yet"]})
            continue
        try:
            if in_project:
                found = measured.get(name) or job_report(
                    workspace, name, last_tick, segment_by=segment_by, publish=False
                )
                if isinstance(found, CloseloopError):
                    raise found
                report = found
            else:
                report = build_job_report(
                    workspace.warehouse,
                    name,
                    as_of=last_tick,
                    horizon_days=horizon_days,
                    holdout_fraction=entry.holdout,
                    variants=tuple(
                        (variant.name, variant.weight) for variant in definition.variants
                    ),
                    segment_by=segment_by,
                )
        except CloseloopError as error:
            yield entry.model_copy(update={"status": "error", "error": str(error)})
            continue
        yield _measured(entry, report)


def _measured_in_project(
    workspace: Workspace, jobs: list[JobOverview], segment_by: tuple[str, ...]
) -> dict[str, JobReport | CloseloopError]:
    """The reports of the project's jobs as of their last ticks: from the process's cache
    while nothing they depend on changed, the others in one measurement refresh, without the
    revenue value the library does not show (cached under a key of their own)."""
    in_project = [job.name for job in jobs if job.name in workspace.project.jobs]
    if not in_project:
        return {}
    marks = warehouse_marks(workspace.warehouse, workspace.settings.warehouse_url)
    found: dict[str, JobReport | CloseloopError] = {}
    keys = {}
    for name in in_project:
        full = REPORTS.get(report_key(workspace, name, segment_by, marks))
        keys[name] = report_key(workspace, name, (*segment_by, WITHOUT_REVENUE), marks)
        cached = full or REPORTS.get(keys[name])
        if cached is not None:
            found[name] = cached
    missing = [name for name in in_project if name not in found]
    if missing:
        fresh = refresh_measurements(
            workspace, names=missing, segment_by=segment_by, publish=False, revenue=False
        )
        for name, report in fresh.items():
            found[name] = report
            if isinstance(report, JobReport):
                REPORTS.put(keys[name], report)
    return found


WITHOUT_REVENUE = "(without revenue value)"
"""Marks a cached report measured without its revenue value (the library's)."""


def variant_summaries(definition: JobDefinition) -> list[VariantSummary]:
    """Each treated arm with the emails it sends and when (days after entry, waits summed)."""
    weights = {variant.name: variant.weight for variant in definition.variants}
    summaries = []
    for arm in definition.arms:
        day = 0.0
        sends = []
        for step in definition.steps_of(arm):
            if isinstance(step, WaitStep):
                day += step.wait_days
            elif isinstance(step, EmailStep):
                sends.append(VariantSend(day=day, subject=step.subject, template=step.template))
            else:
                sends.append(
                    VariantSend(day=day, subject=_gist(step), template="", channel=str(step.send))
                )
        summaries.append(VariantSummary(name=arm, weight=weights.get(arm, 1.0), sends=sends))
    return summaries


def _gist(step: ActionStep) -> str:
    """What a non-email action does, in a few words."""
    if isinstance(step, SlackStep):
        return step.text
    if isinstance(step, WebhookStep):
        return step.url
    if isinstance(step, SetAttributeStep):
        return f"{step.attribute} = {step.value}"
    if isinstance(step, EnrollStep):
        return f"enroll into {step.job}"
    if isinstance(step, FileStep):
        return f"files in {step.folder}/"
    return str(step.send)


def select_entries(
    entries: list[LibraryEntry],
    *,
    goal: str | None = None,
    segment: str | None = None,
    status: str | None = None,
    message: str | None = None,
    within_days: float | None = None,
    sort: SortKey = SortKey.EFFECT,
) -> list[LibraryEntry]:
    """Filter and sort library entries.

    ``goal`` keeps jobs whose goal expression contains the text (case-insensitive). ``message``
    keeps jobs with a send whose subject, template or channel contains the text; ``within_days``
    (timing) jobs whose first send comes at most that many days after entry. ``segment``
    keeps jobs measured in that segment and only that segment's rows; then ``status`` and the
    ``effect`` sort read the segment's pooled lift instead of the job's overall lift.
    """
    chosen = entries
    if goal:
        chosen = [entry for entry in chosen if goal.lower() in entry.goal.lower()]
    if message:
        text = message.lower()
        chosen = [
            entry
            for entry in chosen
            if any(
                text in send.subject.lower()
                or text in send.template.lower()
                or text in send.channel.lower()
                for variant in entry.variants
                for send in variant.sends
            )
        ]
    if within_days is not None:
        chosen = [
            entry
            for entry in chosen
            if any(send.day <= within_days for variant in entry.variants for send in variant.sends)
        ]
    if segment is not None:
        chosen = [
            entry.model_copy(
                update={"segments": [row for row in entry.segments if row.segment == segment]}
            )
            for entry in chosen
            if entry.segment_effect(segment) is not None
        ]
    if status:
        chosen = [entry for entry in chosen if entry.headline_status(segment) == status]
    if sort == SortKey.EFFECT:

        def by_effect(entry: LibraryEntry) -> tuple[bool, float]:
            value = entry.headline_effect(segment)
            return (math.isnan(value), -value if not math.isnan(value) else 0.0)

        return sorted(chosen, key=by_effect)
    if sort == SortKey.N:
        return sorted(chosen, key=lambda entry: -entry.enrolled)
    if sort == SortKey.STARTED:
        return sorted(chosen, key=lambda entry: entry.launched_at, reverse=True)
    return sorted(chosen, key=lambda entry: entry.name.lower())


def _effect(arm: str, absolute: ComparisonResult, relative: ComparisonResult | None) -> ArmEffect:
    return ArmEffect(
        arm=arm,
        estimate=absolute.estimate,
        lower=absolute.ci.lower,
        upper=absolute.ci.upper,
        relative=relative.estimate if relative is not None else math.nan,
        p_value=absolute.p_value,
        status=str(absolute.status),
    )


def _segment(row: SegmentLift) -> SegmentEffect:
    return SegmentEffect(
        column=row.column,
        segment=row.segment,
        arm=row.arm,
        n_treated=row.arm_stat.n,
        n_holdout=row.control_stat.n,
        estimate=row.lift.estimate,
        lower=row.lift.ci.lower,
        upper=row.lift.ci.upper,
        adjusted_lower=row.adjusted_ci.lower if row.adjusted_ci is not None else math.nan,
        adjusted_upper=row.adjusted_ci.upper if row.adjusted_ci is not None else math.nan,
        p_value=row.lift.p_value,
        p_value_bh=row.p_value_bh,
        small=row.small,
        status=str(row.lift.status),
    )


def _measured(entry: LibraryEntry, report: JobReport) -> LibraryEntry:
    overall = report.measurement.comparison(TREATMENT, COMPLETION_RATE, HOLDOUT)
    variant_effects = []
    if report.variant_measurement is not None:
        for arm in report.variant_measurement.treated_arms:
            found = report.variant_measurement.comparison(arm, COMPLETION_RATE, HOLDOUT)
            if found is not None:
                variant_effects.append(_effect(arm, found.absolute, found.relative))
    return entry.model_copy(
        update={
            "matured": sum(arm.matured for arm in report.measurement.arms.values()),
            "status": str(report.status),
            "effect": (_effect(TREATMENT, overall.absolute, overall.relative) if overall else None),
            "variant_effects": variant_effects,
            "segments": [_segment(row) for row in report.segments],
            "warnings": list(report.warnings),
        }
    )


def _broken(job: JobOverview, reason: str) -> LibraryEntry:
    return LibraryEntry(
        name=job.name,
        definition_source="history",
        version=job.version,
        versions=job.versions,
        target="",
        goal="",
        audience="",
        exclusions=[],
        horizon_days=math.nan,
        holdout=job.holdout,
        variants=[],
        launched_at=job.launched_at,
        last_tick=job.last_tick,
        enrolled=job.enrolled,
        matured=0,
        status="error",
        effect=None,
        variant_effects=[],
        segments=[],
        error=f"its recorded definition cannot be read: {reason}",
    )

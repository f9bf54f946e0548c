"""The dashboard's job page: the job's report, cached while nothing it depends on changes, and
what the page shows around it (definition, health strip, funnel, accounts, delivery log).

A report takes seconds (it measures in the warehouse); a page must answer in a fraction of one.
:func:`cached_job_report` keeps the *analysis* of a job's report, keyed on everything that can
change it: the job's definition (content hash), its record (version, holdout, status), its last
tick, the state store's high-water marks (enrollments, outbox, opt-outs, the job's audit entries)
and the warehouse's (row counts of every canonical table and the attribute history, and the
newest event). A tick, an import, a delivery or an edit changes a mark, so a cached report is never
stale. The public model is then shaped per request, with the data-freshness warnings as of now,
exactly as :func:`closeloop.services.reports.report_job` shapes it for the CLI and the API.

The marks themselves, the newest event, the accounts' text columns and the page's state-store
reads (the job's summary, pages of enrollments and deliveries, audit entries, last tick) are
remembered while the DuckDB warehouse's and the SQLite store's files are unwritten
(:mod:`closeloop.services.file_marks`): a warm page then runs no query and never connects the
warehouse. A write moves a file's stamp, so the next request reads again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import ibis

from closeloop.data.history import as_of
from closeloop.data.tables import ACCOUNTS
from closeloop.engine import job_marks
from closeloop.engine.lifecycle import audit_entries
from closeloop.engine.state import utc_now
from closeloop.errors import NotFoundError
from closeloop.schemas.base import Page
from closeloop.schemas.job_page import (
    CheckState,
    DefinitionChange,
    DeliveryCheck,
    FreshnessCheck,
    FunnelArm,
    JobAccount,
    JobDefinitionSummary,
    JobHealth,
    JobPage,
    JobSegments,
    SampleRatioCheck,
    StoreQuery,
)
from closeloop.schemas.job_report import JobReport as JobReportModel
from closeloop.schemas.jobs import Enrollment, JobSummary
from closeloop.schemas.resources import Account
from closeloop.services import file_marks, operations
from closeloop.services.data import Freshness, freshness_of, workspace_newest_event
from closeloop.services.project import Workspace
from closeloop.services.report_cache import (
    CACHE_SIZE,
    DEFAULT_SEGMENT_BY,
    REPORTS,
    ReportCache,
    cached_analysis,
    workspace_marks,
)
from closeloop.services.reports import ReportedJob
from closeloop.services.results import job_report_model

T = TypeVar("T")

PAGE_SIZE = 25
"""Rows per page of the accounts and the delivery log."""

FRESHNESS_LABEL = "the last tick"  # as report_job names the time without --as-of


@dataclass(frozen=True)
class CachedReport:
    """A job's report shaped for the surfaces, and whether it came from the cache."""

    reported: ReportedJob
    fresh: Freshness  # how current the data is, now
    hit: bool
    warehouse: tuple[Any, ...]  # the warehouse's marks the key was built from
    key: tuple[Any, ...]  # everything the report depends on


def cached_job_report(
    workspace: Workspace,
    job_name: str,
    *,
    segment_by: Sequence[str] = DEFAULT_SEGMENT_BY,
    cache: ReportCache = REPORTS,
) -> CachedReport:
    """The job's report as of its last tick, as ``closeloop report NAME --format json`` and the
    API give it (same model), from the cache when nothing it depends on has changed."""
    marks = workspace_marks(workspace)
    report, key, hit = cached_analysis(
        workspace, job_name, segment_by=segment_by, cache=cache, marks=marks
    )
    fresh = freshness_of(workspace_newest_event(workspace), report.as_of, option=FRESHNESS_LABEL)
    model = job_report_model(report, warnings=[*report.warnings, *fresh.warnings])
    reported = ReportedJob(report=report, model=model, data_warnings=fresh.warnings)
    return CachedReport(reported, fresh, hit, marks, key)


# -- the page --------------------------------------------------------------------------------------


def job_page(
    workspace: Workspace,
    job_name: str,
    *,
    completed_offset: int = 0,
    not_completed_offset: int = 0,
    deliveries_offset: int = 0,
    limit: int = PAGE_SIZE,
) -> JobPage:
    """``/jobs/{name}``: the report and the definition, health, funnel, accounts and deliveries.

    An unknown job is a NotFoundError naming the known ones; a draft (no tick yet) too, saying
    how to run one.
    """
    summary = _stored(workspace, ("summary", job_name), lambda: _summary(workspace, job_name))
    if summary.last_tick is None:
        raise NotFoundError(
            f"job {job_name!r} has no ticks yet, so nothing to report; run `closeloop tick`"
        )
    cached = cached_job_report(workspace, job_name)
    counts = store_counts(workspace, job_name, cached.key)
    report = cached.reported.model
    completed = _stored(
        workspace,
        ("enrollments", job_name, "completed", completed_offset, limit),
        lambda: operations.enrollments_page(
            workspace, job_name=job_name, status="completed", offset=completed_offset, limit=limit
        ),
    )
    not_completed = _stored(
        workspace,
        ("enrollments", job_name, "exited", not_completed_offset, limit),
        lambda: operations.enrollments_page(
            workspace, job_name=job_name, status="exited", offset=not_completed_offset, limit=limit
        ),
    )
    accounts = accounts_by_id(
        workspace,
        (item.account_id for item in [*completed.items, *not_completed.items]),
        marks=cached.warehouse,
    )
    return JobPage(
        job_name=job_name,
        report=report,
        definition=_definition(workspace, job_name, summary),
        health=JobHealth(
            sample_ratio=_sample_ratio(counts.enrolled, report),
            deliveries=_delivery_check(counts.messages),
            freshness=_freshness_check(workspace, job_name, cached),
        ),
        funnel=_funnel(counts.messaged, report),
        completed=_with_accounts(completed, accounts),
        not_completed=_with_accounts(not_completed, accounts),
        deliveries=_stored(
            workspace,
            ("outbox", job_name, deliveries_offset, limit),
            lambda: operations.outbox_list(
                workspace, job_name=job_name, offset=deliveries_offset, limit=limit
            ),
        ),
    )


def _stored(workspace: Workspace, question: tuple[Any, ...], read: Callable[[], T]) -> T:
    """``read()`` of the state store (and the project's job names), remembered while the
    store's file is unwritten (``file_marks``; a store on a server is read every time)."""
    return file_marks.remembered(
        (file_marks.store_stamp(workspace.store),),
        (workspace.settings.state_url, tuple(sorted(workspace.project.jobs)), *question),
        read,
    )


def _summary(workspace: Workspace, job_name: str) -> JobSummary:
    summary = next((job for job in operations.list_jobs(workspace) if job.name == job_name), None)
    if summary is None:
        known = ", ".join(sorted(workspace.project.jobs)) or "none"
        raise NotFoundError(f"no job {job_name!r}; jobs: {known}")
    return summary


def _definition(workspace: Workspace, job_name: str, summary: JobSummary) -> JobDefinitionSummary:
    loaded = workspace.project.jobs.get(job_name)
    changes = [
        DefinitionChange(
            at=entry.at,
            actor=entry.actor,
            from_version=_int(entry.detail, "from_version"),
            to_version=_int(entry.detail, "to_version"),
        )
        for entry in _stored(
            workspace, ("audit", job_name), lambda: audit_entries(workspace.store, job_name)
        )
        if entry.action == "job.changed"
    ]
    changes.sort(key=lambda change: change.at)
    definition = loaded.definition if loaded is not None else None
    hypothesis = definition.hypothesis if definition is not None else None
    return JobDefinitionSummary(
        name=job_name,
        description=definition.description if definition is not None else "",
        status=str(summary.status),
        target=str(definition.target) if definition is not None else "account",
        hypothesis=hypothesis.expected_effect if hypothesis is not None else None,
        primary_metric=hypothesis.primary_metric if hypothesis is not None else None,
        minimum_effect=hypothesis.minimum_effect if hypothesis is not None else None,
        goal=definition.goal if definition is not None else "",
        audience=definition.audience if definition is not None else "",
        version=summary.version,
        launched_at=summary.launched_at,
        edited_after_launch=bool(changes),
        changes=changes,
        file=_relative(workspace, loaded.file) if loaded is not None else None,
    )


def _relative(workspace: Workspace, file: str) -> str:
    path = Path(file)
    try:
        return path.resolve().relative_to(workspace.settings.project_dir.resolve()).as_posix()
    except ValueError:
        return file


def _int(detail: Any, key: str) -> int | None:
    value = detail.get(key) if isinstance(detail, dict) else None
    return value if isinstance(value, int) else None


@dataclass(frozen=True)
class StoreCounts:
    """The state-store counts of the health strip and the funnel, with their statements."""

    enrolled: job_marks.Counted
    messages: job_marks.Counted
    messaged: job_marks.Counted


_COUNTS: OrderedDict[tuple[Any, ...], StoreCounts] = OrderedDict()
_COUNTS_LOCK = threading.Lock()


def store_counts(workspace: Workspace, job_name: str, key: tuple[Any, ...]) -> StoreCounts:
    """Enrollments per arm, messages per status, units messaged per arm: kept with the report's
    key, whose state-store marks (enrollment and outbox counts per status) change with them."""
    with _COUNTS_LOCK:
        found = _COUNTS.get(key)
    if found is not None:
        return found
    store = workspace.store
    found = StoreCounts(
        enrolled=job_marks.enrollments_by_arm(store, job_name),
        messages=job_marks.messages_by_status(store, job_name),
        messaged=job_marks.messaged_by_arm(store, job_name),
    )
    with _COUNTS_LOCK:
        _COUNTS[key] = found
        while len(_COUNTS) > CACHE_SIZE:
            _COUNTS.popitem(last=False)
    return found


def _sample_ratio(counted: job_marks.Counted, report: JobReportModel) -> SampleRatioCheck:
    srm = report.srm
    state: CheckState = "unknown" if srm is None else ("bad" if srm.mismatch else "ok")
    return SampleRatioCheck(
        state=state,
        enrolled=counted.counts,
        holdout_fraction=report.holdout_fraction,
        srm=srm,
        query=StoreQuery(source="state_store", sql=counted.sql),
    )


def _delivery_check(counted: job_marks.Counted) -> DeliveryCheck:
    counts = counted.counts
    failed = counts.get("dead", 0)
    pending = counts.get("pending", 0) + counts.get("sending", 0)
    state: CheckState = "bad" if failed else ("warn" if pending else "ok")
    return DeliveryCheck(
        state=state,
        sent=counts.get("sent", 0),
        failed=failed,
        pending=pending,
        by_status=counts,
        query=StoreQuery(source="state_store", sql=counted.sql),
    )


_NEWEST_SQL: dict[tuple[str, str], str] = {}


def newest_event_query(workspace: Workspace) -> str:
    """The SQL of the newest-event query freshness runs (``max(timestamp)`` of the events)."""
    url = workspace.settings.warehouse_url
    key = (url, repr(sorted(workspace.project.config.sources.items())))
    text = _NEWEST_SQL.get(key)
    if text is None:
        text = str(ibis.to_sql(workspace.warehouse.table("events").timestamp.max()))
        _NEWEST_SQL[key] = text
    return text


def _hours(later: datetime, earlier: datetime | None) -> float | None:
    return None if earlier is None else (later - earlier).total_seconds() / 3600


def _freshness_check(workspace: Workspace, job_name: str, cached: CachedReport) -> FreshnessCheck:
    fresh = cached.fresh
    tick, tick_sql = _stored(
        workspace, ("last_tick", job_name), lambda: job_marks.last_tick(workspace.store, job_name)
    )
    return FreshnessCheck(
        state="warn" if fresh.warnings else "ok",
        checked_at=fresh.now,
        newest_event=fresh.newest_event,
        event_lag_hours=_hours(fresh.now, fresh.newest_event),
        last_tick=tick,
        tick_lag_hours=_hours(fresh.now, tick),
        warnings=list(fresh.warnings),
        query=StoreQuery(
            source="warehouse",
            sql=newest_event_query(workspace),
        ),
        tick_query=StoreQuery(source="state_store", sql=tick_sql),
    )


def _funnel(counted: job_marks.Counted, report: JobReportModel) -> list[FunnelArm]:
    messaged = counted.counts
    funnel = []
    for arm, counts in report.arms.items():
        delivered = report.deliveries.get(arm)
        funnel.append(
            FunnelArm(
                arm=arm,
                entered=counts.entered,
                messaged=messaged.get(arm, 0),
                delivered=delivered.units_reached if delivered is not None else 0,
                completed=counts.completed,
            )
        )
    return funnel


def _with_accounts(
    enrollments: Page[Enrollment], accounts: Mapping[str, Account]
) -> Page[JobAccount]:
    return Page[JobAccount](
        items=[
            JobAccount(enrollment=item, account=accounts.get(item.account_id))
            for item in enrollments.items
        ],
        total=enrollments.total,
        offset=enrollments.offset,
        limit=enrollments.limit,
    )


_ACCOUNTS: OrderedDict[tuple[Any, ...], dict[str, Account]] = OrderedDict()
_ACCOUNTS_LOCK = threading.Lock()


def accounts_by_id(
    workspace: Workspace, account_ids: Iterable[str], *, marks: tuple[Any, ...] | None = None
) -> dict[str, Account]:
    """The accounts among ``account_ids`` with their attributes now (one warehouse query).

    With the warehouse's ``marks`` the answer is kept until they change (an import or a
    write-back adds rows to the accounts or the attribute history); an attribute change dated
    in the future is therefore applied by the next import rather than at its time.
    """
    wanted = sorted(set(account_ids))
    if not wanted:
        return {}
    key = (workspace.settings.warehouse_url, marks, tuple(wanted)) if marks is not None else None
    if key is not None:
        with _ACCOUNTS_LOCK:
            found = _ACCOUNTS.get(key)
        if found is not None:
            return found
    found = _read_accounts(workspace, wanted)
    if key is not None:
        with _ACCOUNTS_LOCK:
            _ACCOUNTS[key] = found
            while len(_ACCOUNTS) > CACHE_SIZE * 4:
                _ACCOUNTS.popitem(last=False)
    return found


def _read_accounts(workspace: Workspace, wanted: list[str]) -> dict[str, Account]:
    warehouse = workspace.warehouse
    table = as_of(warehouse, "account", warehouse.table(ACCOUNTS.name), utc_now(), key=ACCOUNTS.key)
    rows = table.filter(table.account_id.isin(wanted)).to_pyarrow().to_pylist()
    canonical = set(ACCOUNTS.column_names)
    found = {}
    for row in rows:
        fields = {name: row.get(name) for name in canonical if name not in ("properties",)}
        extra = {key: value for key, value in row.items() if key not in canonical}
        found[str(row["account_id"])] = Account.model_validate(
            {**fields, "extra": _jsonable(extra)}
        )
    return found


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    plain: dict[str, Any] = {}
    for key, value in values.items():
        if value is None or isinstance(value, str | int | float | bool):
            plain[key] = value
        else:
            plain[key] = str(value)
    return plain


# -- segments --------------------------------------------------------------------------------------


NOT_SEGMENTS = frozenset({"account_id", "name", "domain", "properties"})
"""Text columns of the accounts that identify an account rather than group accounts."""


def segment_columns(workspace: Workspace) -> list[str]:
    """The accounts' text columns a report can be broken down by (their values at entry)."""

    def read() -> list[str]:
        schema = workspace.warehouse.table(ACCOUNTS.name).schema()
        return sorted(
            name for name, kind in schema.items() if kind.is_string() and name not in NOT_SEGMENTS
        )

    # A new column is a write to the warehouse's file, which changes its stamp.
    columns = file_marks.remembered(
        (file_marks.workspace_stamp(workspace),),
        ("segment_columns", workspace.settings.warehouse_url),
        read,
    )
    return list(columns)


def job_segments(
    workspace: Workspace, job_name: str, column: str, *, segment: str | None = None
) -> JobSegments:
    """``/jobs/{name}/segments/{column}``: the report broken down by ``column`` (cached)."""
    _summary(workspace, job_name)
    columns = segment_columns(workspace)
    if column not in columns:
        raise NotFoundError(
            f"no account attribute {column!r} to break job {job_name!r} down by; "
            f"one of: {', '.join(columns)}"
        )
    report = cached_job_report(workspace, job_name, segment_by=(column,)).reported.model
    found = [
        item
        for measurement in (report.measurement, report.variant_measurement)
        if measurement is not None
        for item in measurement.segments
        if item.column == column
    ]
    if segment is not None and not any(item.segment == segment for item in found):
        known = ", ".join(sorted({item.segment for item in found})) or "none"
        raise NotFoundError(f"no segment {segment!r} of {column!r} in job {job_name!r}: {known}")
    heterogeneity = [
        test
        for measurement in (report.measurement, report.variant_measurement)
        if measurement is not None
        for test in measurement.heterogeneity
        if test.column == column
    ]
    return JobSegments(
        job_name=job_name,
        as_of=report.as_of,
        column=column,
        columns=columns,
        selected=segment,
        segments=found,
        heterogeneity=heterogeneity,
        warnings=report.warnings,
    )

"""The dashboard's job page (``/jobs/{name}`` and its ``.json`` twin) and its segment drill-down.

The page is the job's report exactly as ``closeloop report NAME --format json`` and
``GET /api/jobs/{name}/report`` return it (``report``), plus what a page adds: the definition it
runs, a health strip (each item with the query that produced it), the funnel per arm, the accounts
that completed and did not with their attributes, and the delivery log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from closeloop.schemas.base import Number, Page, Schema
from closeloop.schemas.job_report import JobReport
from closeloop.schemas.jobs import Enrollment, OutboxList
from closeloop.schemas.measurement import HeterogeneityTest, SampleRatio, Segment
from closeloop.schemas.resources import Account

CheckState = Literal["ok", "warn", "bad", "unknown"]


class DefinitionChange(Schema):
    """An edit of the job's definition after launch (a new version; the audit log's job.changed)."""

    at: datetime
    actor: str
    from_version: int | None
    to_version: int | None


class JobDefinitionSummary(Schema):
    """What the job is: its hypothesis, goal and audience, and which version runs."""

    name: str
    description: str
    status: str = Field(description="draft, live, paused or stopped")
    target: str = Field(description="account or person")
    hypothesis: str | None = Field(description="the expected effect, locked at launch")
    primary_metric: str | None
    minimum_effect: float | None
    goal: str = Field(description="the goal expression")
    audience: str = Field(description="the audience expression")
    version: int | None = Field(description="the version running (null for a draft)")
    launched_at: datetime | None
    edited_after_launch: bool = Field(description="the definition changed since launch")
    changes: list[DefinitionChange] = Field(description="each edit after launch, oldest first")
    file: str | None = Field(description="the YAML file, relative to the project")


class StoreQuery(Schema):
    """The query a health item ran, as text to read: where, and the SQL."""

    source: Literal["state_store", "warehouse"]
    sql: str


class SampleRatioCheck(Schema):
    """Are the arms split as configured? The enrollments per arm and the report's chi-square."""

    state: CheckState = Field(description="bad: mismatch (p < 0.001); unknown: not testable")
    enrolled: dict[str, int] = Field(description="enrollments per arm (variants pooled or not)")
    holdout_fraction: float
    srm: SampleRatio | None = Field(description="the report's check (null: not testable)")
    query: StoreQuery


class DeliveryCheck(Schema):
    """The job's outbox: how many messages were sent, failed (dead) and are still pending."""

    state: CheckState = Field(description="bad: some dead; warn: some pending or sending")
    sent: int = Field(ge=0)
    failed: int = Field(ge=0, description="dead-lettered after their retries")
    pending: int = Field(ge=0, description="pending or sending")
    by_status: dict[str, int]
    query: StoreQuery


class FreshnessCheck(Schema):
    """How current the data is: the newest event against now, and the job's last tick."""

    state: CheckState = Field(description="warn: the report's freshness warnings are not empty")
    checked_at: datetime = Field(description="now, when the page was built (UTC)")
    newest_event: datetime | None
    event_lag_hours: Number = Field(description="hours from the newest event to now")
    last_tick: datetime | None
    tick_lag_hours: Number = Field(description="hours from the last tick to now")
    warnings: list[str] = Field(description="the freshness warnings the report carries")
    query: StoreQuery = Field(description="the warehouse query for the newest event")
    tick_query: StoreQuery


class JobHealth(Schema):
    sample_ratio: SampleRatioCheck
    deliveries: DeliveryCheck
    freshness: FreshnessCheck


class FunnelArm(Schema):
    """One arm from entry to the goal: entered → messaged → delivered → completed."""

    arm: str
    entered: int = Field(ge=0)
    messaged: int = Field(ge=0, description="units with a message planned to send (not ghost)")
    delivered: int = Field(ge=0, description="units with at least one sent message")
    completed: int = Field(ge=0)


class JobAccount(Schema):
    """An enrollment of the job with its account's attributes (now; null if none is known)."""

    enrollment: Enrollment
    account: Account | None


class JobPage(Schema):
    """``/jobs/{name}``: the report, and what the page shows around it."""

    job_name: str
    report: JobReport = Field(description="exactly GET /api/jobs/{name}/report")
    definition: JobDefinitionSummary
    health: JobHealth
    funnel: list[FunnelArm]
    completed: Page[JobAccount] = Field(description="accounts that reached the goal, newest first")
    not_completed: Page[JobAccount] = Field(
        description="accounts that left without the goal, newest first"
    )
    deliveries: OutboxList = Field(description="the job's delivery log, newest first")


class JobSegments(Schema):
    """``/jobs/{name}/segments/{column}``: each segment's lift by one pre-entry column."""

    job_name: str
    as_of: str
    column: str
    columns: list[str] = Field(description="the account attributes one can break it down by")
    selected: str | None = Field(description="the segment asked for (?segment=), if any")
    segments: list[Segment] = Field(description="the report's segments of the column")
    heterogeneity: list[HeterogeneityTest]
    warnings: list[str]

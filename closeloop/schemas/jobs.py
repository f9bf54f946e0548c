"""Jobs and what operating them returns: summaries, details, dry runs, enrollments, the outbox.

``closeloop jobs list|show``, ``dry-run``, ``outbox list`` and ``optout list`` print these models
with ``--format json``; the REST API returns the same models.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from closeloop.schemas.base import Schema


class JobSummary(Schema):
    """A job of the project or of the store: its status (``draft`` when never launched)."""

    name: str
    status: str = Field(description="draft, live, paused or stopped")
    version: int | None = Field(description="the definition version running; null for a draft")
    versions: int = Field(ge=0, description="how many definition versions the store recorded")
    launched_at: datetime | None
    last_tick: datetime | None
    enrolled: int = Field(ge=0, description="enrollments ever made")
    active: int = Field(ge=0, description="enrollments neither completed nor exited")
    in_project: bool = Field(description="false when the store knows a job the YAML dropped")
    enrolled_by_arm: dict[str, int] = Field(
        default_factory=dict, description="enrollments ever made, per arm (empty for a draft)"
    )


class JobList(Schema):
    """``closeloop jobs list``: every job of the project and of the store, by name."""

    count: int = Field(ge=0)
    jobs: list[JobSummary]


class ArmDeliveries(Schema):
    """What one arm of a job was sent: units, units reached and messages by status."""

    arm: str
    units: int = Field(ge=0)
    units_reached: int = Field(ge=0, description="units with at least one sent message")
    by_status: dict[str, int]


class AuditEntry(Schema):
    """One entry of the audit log: who did what to which subject, and when."""

    at: datetime
    actor: str
    action: str = Field(description="e.g. job.launched, job.pause, job.account_removed")
    subject: str
    detail: Any = Field(default=None, description="what changed (a JSON value), if recorded")


class JobDetail(Schema):
    """``closeloop jobs show``: status, deliveries per arm, outbox counts, versions, audit log."""

    summary: JobSummary
    deliveries: dict[str, ArmDeliveries] = Field(description="arm -> its deliveries")
    outbox: dict[str, int] = Field(description="messages by status")
    versions_in_use: list[tuple[int, int]] = Field(
        description="[version, enrollments] pairs; more than one: edited while running"
    )
    audit: list[AuditEntry] = Field(description="the job's audit log, oldest first")
    definition: dict[str, Any] | None = Field(
        default=None,
        description="the job as YAML-equivalent JSON (defaults left out; secrets in URLs "
        "masked); null when the project no longer defines it",
    )
    file: str | None = Field(
        default=None, description="the project file that defines the job, relative to the project"
    )


# -- dry runs ------------------------------------------------------------------------------------


class EnteringUnit(Schema):
    account_id: str
    person_id: str | None = None
    arm: str


class PreviewMessage(Schema):
    """A message a dry run would plan (rendered, never sent)."""

    account_id: str
    step: int
    channel: str
    status: str
    due_at: datetime | None
    payload: dict[str, Any] = Field(description="the rendered message (secrets in URLs masked)")
    problem: str | None = Field(description="why it cannot be rendered, if it cannot")


class DryRun(Schema):
    """``closeloop dry-run``: who would enter, complete and exit, and every message planned."""

    job: str
    at: datetime
    status: str = Field(description="the job's status (a draft is previewed as if launched)")
    entering: list[EnteringUnit]
    entering_by_arm: dict[str, int]
    completing: int = Field(ge=0)
    exiting: dict[str, str] = Field(description="unit -> exit reason")
    messages: list[PreviewMessage]


# -- lifecycle -----------------------------------------------------------------------------------


class TickSummary(Schema):
    """What one tick of one job did."""

    job: str
    at: datetime
    version: int
    status: str
    entered: int = Field(ge=0)
    completed: int = Field(ge=0)
    exited: int = Field(ge=0)
    already_done: bool = Field(description="true when this tick had been run before")
    outbox: dict[str, int] = Field(description="messages written, by status")
    problems: list[str] = Field(description="messages that could not be rendered")


class LaunchResult(Schema):
    """``closeloop jobs launch``: the launch tick, or ``launched: false`` when already live."""

    job: str
    launched: bool = Field(description="false when the job had already been launched")
    tick: TickSummary | None = None
    checks: list[str] = Field(
        default_factory=list, description="what the launch can detect (power, baselines)"
    )


class StatusChange(Schema):
    """A pause, resume or stop: the status before and after (equal when nothing changed)."""

    job: str
    previous: str
    status: str
    changed: bool


class AccountRemoval(Schema):
    job: str
    account_id: str
    removed: int = Field(ge=0, description="active enrollments that exited with reason removed")


# -- enrollments and the outbox ------------------------------------------------------------------


class Enrollment(Schema):
    """One enrollment of a unit in a job: its arm and whether it completed or exited."""

    enrollment_id: str
    job: str
    job_version: int
    account_id: str
    person_id: str | None
    arm: str
    status: str = Field(description="active, completed or exited")
    entered_at: datetime
    completed_at: datetime | None
    exited_at: datetime | None
    exit_reason: str | None


class OutboxMessage(Schema):
    """A message in the outbox with its delivery state."""

    id: int
    idempotency_key: str
    job_name: str
    account_id: str
    arm: str | None
    step_index: int
    channel: str
    status: str
    attempts: int = Field(ge=0)
    due_at: datetime | None
    next_attempt_at: datetime
    sent_at: datetime | None
    last_error: str | None
    detail: str | None = Field(description="what the channel reported besides success")


class OutboxList(Schema):
    """``closeloop outbox list`` and ``GET /api/outbox``: counts by status and one page of
    messages, newest first."""

    counts: dict[str, int] = Field(description="messages by status (of the job, if one is given)")
    count: int = Field(ge=0, description="how many messages this page lists")
    messages: list[OutboxMessage]
    total: int = Field(ge=0, description="how many messages match the filters, over all pages")
    offset: int = Field(default=0, ge=0, description="index of the first message of this page")
    limit: int = Field(ge=1, description="the most messages a page holds")


class OutboxRetry(Schema):
    requeued: int = Field(ge=0, description="dead messages put back in the queue")


class OptOut(Schema):
    account_id: str
    opted_out_at: datetime
    source: str = Field(description="link, cli, import or api")
    actor: str
    reason: str | None


class OptOutList(Schema):
    count: int = Field(ge=0)
    optouts: list[OptOut]


# -- creating and editing ------------------------------------------------------------------------


class JobWritten(Schema):
    """A job definition created or replaced through the API, after the project validated."""

    job: str
    file: str = Field(description="the project file it was written to, relative to the project")
    created: bool = Field(description="true for a new job, false for a replaced one")
    version: int = Field(ge=1, description="the definition version now recorded")
    warnings: list[str] = Field(default_factory=list, description="the project's warnings")
    detail: JobDetail


# -- requests ------------------------------------------------------------------------------------


class AtRequest(Schema):
    """When an operation happens (ISO 8601; no zone means UTC); now when left out."""

    at: datetime | None = Field(default=None, description="when; now when left out")


class RetryRequest(Schema):
    """Which dead-lettered messages to queue again: these ids, this job's, or every one."""

    ids: list[int] | None = Field(default=None, description="message ids; all dead ones if null")
    job: str | None = Field(default=None, description="only this job's messages")
    at: datetime | None = Field(default=None, description="when; now when left out")

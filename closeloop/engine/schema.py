"""Tables of the transactional state store (jobs, versions, enrollments, outbox, ticks, audit).

SQLAlchemy Core, so the same definitions serve SQLite (embedded default) and PostgreSQL. The
migrations in ``migrations/`` create exactly these tables; a test checks they agree.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    func,
)

metadata = MetaData()

definition_versions = Table(
    "definition_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),
    Column("name", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("definition", Text, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("author", String(200), nullable=False),
    UniqueConstraint("kind", "name", "version", name="uq_definition_version"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("salt", String(64), nullable=False),
    Column("current_version", Integer, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("holdout", Float, nullable=False),
    Column("launched_at", DateTime, nullable=False),
    Column("hypothesis", Text),
    # draft jobs have no row; launch makes a row with status live (see engine.lifecycle)
    Column("status", String(16), nullable=False, server_default="live"),
    Column("status_changed_at", DateTime),
    # bumped by every transaction that changes the job's enrollments: a tick decides from what it
    # read at one revision and records only if the revision is still the same (engine.tick)
    Column("revision", Integer, nullable=False, server_default="0"),
    # the plan the always-valid results are tuned for, fixed at launch (None: none was made)
    Column("planned_units", Float),
    Column("planned_baseline", Float),
    Column("planned_effect", Float),
)

enrollments = Table(
    "enrollments",
    metadata,
    Column("enrollment_id", String(40), primary_key=True),
    Column("job_name", String(200), ForeignKey("jobs.name"), nullable=False),
    Column("job_version", Integer, nullable=False),
    Column("account_id", String(200), nullable=False),
    Column("arm", String(64), nullable=False),
    Column("entered_at", DateTime, nullable=False),
    Column("completed_at", DateTime),
    Column("exited_at", DateTime),
    Column("exit_reason", String(32)),
    # set for jobs whose target is a person; the enrollment id (job, unit, entered_at) is unique
    Column("person_id", String(200)),
    # set by the database on every insert and update (migration 0011): what engine.publish
    # copies to the warehouse is what changed since its last copy
    Column("revision", BigInteger),
    Index("ix_enrollments_job_active", "job_name", "completed_at", "exited_at"),
    Index("ix_enrollments_unit", "job_name", "account_id", "person_id"),
    Index("ix_enrollments_revision", "revision"),
    # the contact policy's "entered within the last N days" across jobs (migration 0010)
    Index("ix_enrollments_entered", "entered_at", "account_id"),
)

# At most one active enrollment per (job, unit), enforced by the store itself: whatever two
# processes decide, the second insert of an active unit fails.
Index(
    "uq_enrollments_active_unit",
    enrollments.c.job_name,
    func.coalesce(enrollments.c.person_id, enrollments.c.account_id),
    unique=True,
    sqlite_where=and_(enrollments.c.completed_at.is_(None), enrollments.c.exited_at.is_(None)),
    postgresql_where=and_(enrollments.c.completed_at.is_(None), enrollments.c.exited_at.is_(None)),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("idempotency_key", String(80), nullable=False, unique=True),
    Column("enrollment_id", String(40), ForeignKey("enrollments.enrollment_id"), nullable=False),
    Column("job_name", String(200), nullable=False),
    Column("account_id", String(200), nullable=False),
    Column("step_index", Integer, nullable=False),
    Column("channel", String(32), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", DateTime, nullable=False),
    Column("next_attempt_at", DateTime, nullable=False),
    Column("claimed_at", DateTime),
    Column("sent_at", DateTime),
    Column("last_error", Text),
    # when the message fell due; retries move next_attempt_at, never this
    Column("due_at", DateTime),
    # what the channel reported besides success (e.g. recipients the server refused)
    Column("detail", Text),
    Index("ix_outbox_due", "status", "next_attempt_at"),
    Index("ix_outbox_enrollment", "enrollment_id"),
)

# Accounts that asked not to be contacted: every channel honours it and their enrollments exit.
optouts = Table(
    "optouts",
    metadata,
    Column("account_id", String(200), primary_key=True),
    Column("opted_out_at", DateTime, nullable=False),
    Column("source", String(32), nullable=False),  # link, cli, import, api
    Column("actor", String(200), nullable=False),
    Column("reason", Text),
)

# Revisions shared by every job: ``contacts`` is bumped by every tick that enrolls anyone, so
# ticks of different jobs that decide under the contact policy record one after the other
# (engine.tick). One row per counter, created by the migration.
counters = Table(
    "counters",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Integer, nullable=False),
)

# ``send: enroll`` actions: the target job's next tick enrolls the referred unit.
referrals = Table(
    "referrals",
    metadata,
    Column("idempotency_key", String(80), primary_key=True),
    Column("job_name", String(200), nullable=False),
    Column("account_id", String(200), nullable=False),
    Column("person_id", String(200)),
    Column("from_job", String(200), nullable=False),
    Column("referred_at", DateTime, nullable=False),
    Column("consumed_at", DateTime),
    Index("ix_referrals_open", "job_name", "consumed_at"),
)

ticks = Table(
    "ticks",
    metadata,
    Column("job_name", String(200), ForeignKey("jobs.name"), primary_key=True),
    Column("at", DateTime, primary_key=True),
    Column("job_version", Integer, nullable=False),
    Column("entered", Integer, nullable=False),
    Column("completed", Integer, nullable=False),
    Column("exited", Integer, nullable=False),
    Column("processed_at", DateTime, nullable=False),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("detail", Text),
)

# API tokens (migration 0006): the SHA-256 of each token, never the token; ``prefix`` is its first
# characters, shown in lists so a person can tell tokens apart.
api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("last_used_at", DateTime),
    Column("revoked_at", DateTime),
)

# The split a tick used, per arm, for jobs with adaptive allocation: the holdout's share is the
# job's holdout; each variant's is its floored posterior probability of being best times the
# treated share. ``matured`` / ``completed`` are the counts the posterior was computed from.
tick_allocations = Table(
    "tick_allocations",
    metadata,
    Column("job_name", String(200), ForeignKey("jobs.name"), primary_key=True),
    Column("at", DateTime, primary_key=True),
    Column("arm", String(64), primary_key=True),
    Column("share", Float, nullable=False),
    Column("probability_best", Float),
    Column("matured", Integer, nullable=False),
    Column("completed", Integer, nullable=False),
)

# Segment messages acknowledged but not yet written to the warehouse (migration 0007): the
# flusher claims rows until ``claimed_until``, writes them and deletes them (services.ingest).
ingest_buffer = Table(
    "ingest_buffer",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # track, page, screen, identify or group
    Column("message_id", String(200), nullable=False),
    Column("received_at", DateTime, nullable=False),
    Column("timestamp", DateTime, nullable=False),  # the message's time, corrected for skew
    Column("token_id", Integer),
    Column("body", Text, nullable=False),  # the message as sent (JSON)
    Column("claimed_by", String(64)),
    Column("claimed_until", DateTime),
    Index("ix_ingest_buffer_claimed_until", "claimed_until"),
)

# Success plans (migration 0008): objectives agreed with a customer, per account. ``version``
# goes up with every change; ``success_plan_versions`` keeps each version's state (JSON) so an
# earlier one stays readable. Observations are the values over time; they are facts, not edits,
# and do not change the version. engine/plans.py holds the only SQL on these tables.
success_plans = Table(
    "success_plans",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account_id", String(200), nullable=False),
    Column("title", String(500), nullable=False),
    Column("owner", String(200)),
    Column("version", Integer, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("updated_at", DateTime, nullable=False),
    Column("updated_by", String(200), nullable=False),
    Index("ix_success_plans_account_id", "account_id"),
)

success_plan_versions = Table(
    "success_plan_versions",
    metadata,
    Column("plan_id", Integer, ForeignKey("success_plans.id"), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("at", DateTime, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("change", String(500), nullable=False),
    Column("state", Text, nullable=False),  # the plan, objectives and renegotiations (JSON)
)

plan_objectives = Table(
    "plan_objectives",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("plan_id", Integer, ForeignKey("success_plans.id"), nullable=False),
    Column("title", String(500), nullable=False),
    Column("measure", Text, nullable=False),  # an expression, or "manual"
    Column("baseline", Float, nullable=False),
    Column("target", Float, nullable=False),  # the latest agreed target
    Column("target_date", Date, nullable=False),
    Column("owner", String(200)),
    Column("dropped_at", DateTime),
    Column("created_at", DateTime, nullable=False),
    Index("ix_plan_objectives_plan_id", "plan_id"),
)

plan_renegotiations = Table(
    "plan_renegotiations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("objective_id", Integer, ForeignKey("plan_objectives.id"), nullable=False),
    Column("old_target", Float, nullable=False),
    Column("old_target_date", Date, nullable=False),
    Column("new_target", Float, nullable=False),
    Column("new_target_date", Date, nullable=False),
    Column("reason", Text, nullable=False),
    Column("agreed_by", String(200), nullable=False),
    Column("recorded_by", String(200), nullable=False),
    Column("recorded_at", DateTime, nullable=False),
    Index("ix_plan_renegotiations_objective_id", "objective_id"),
)

plan_observations = Table(
    "plan_observations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("objective_id", Integer, ForeignKey("plan_objectives.id"), nullable=False),
    Column("observed_at", DateTime, nullable=False),
    Column("value", Float, nullable=False),
    Column("source", String(16), nullable=False),  # expression or manual
    Column("recorded_by", String(200), nullable=False),
    Column("recorded_at", DateTime, nullable=False),
    Index("ix_plan_observations_objective_id", "objective_id", "observed_at"),
)

# The dashboard and the board report (migration 0009). engine/users.py holds the only SQL on
# users and web_sessions, engine/plan_links.py on plan_links, engine/board_sends.py on
# board_report_sends. Only hashes of secrets are stored (password, session cookie, link token).
users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("role", String(16), nullable=False),  # admin, editor or viewer
    Column("password_hash", String(500), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("last_login_at", DateTime),
)

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("session_hash", String(64), primary_key=True),  # SHA-256 of the session cookie
    Column("user_name", String(200), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
    Column("last_seen_at", DateTime, nullable=False),
    Column("revoked_at", DateTime),
    Index("ix_web_sessions_user_name", "user_name"),
)

plan_links = Table(
    "plan_links",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("plan_id", Integer, ForeignKey("success_plans.id"), nullable=False),
    Column("account_id", String(200), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime, nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("expires_at", DateTime, nullable=False),
    Column("revoked_at", DateTime),
    Column("last_opened_at", DateTime),
    Index("ix_plan_links_plan_id", "plan_id"),
)

board_report_sends = Table(
    "board_report_sends",
    metadata,
    Column("period", String(40), primary_key=True),  # e.g. 2026-11 for a monthly report
    Column("recipient", String(320), primary_key=True),
    Column("claimed_at", DateTime, nullable=False),
    Column("sent_at", DateTime),
    Column("message_id", String(500)),
    Column("error", Text),
)

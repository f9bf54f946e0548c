"""Success plans: what ``closeloop plans … --format json`` prints and ``/api/plans`` answers."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from closeloop.schemas.base import Number, Schema

ObjectiveStatus = Literal["open", "met", "missed", "dropped"]


class Milestone(Schema):
    """A share of the way from baseline to target, and when an observation first reached it."""

    threshold: float = Field(description="0.5, 0.8 or 1.0 of the way from baseline to target")
    value: float = Field(description="the measure's value at this threshold")
    reached_at: datetime | None = Field(
        description="the first observation at or beyond the threshold (null: not yet)"
    )


class Renegotiation(Schema):
    """A target agreed anew with the customer; the old target stays in the history."""

    old_target: float
    old_target_date: date
    new_target: float
    new_target_date: date
    reason: str
    agreed_by: str = Field(description="the customer contact who agreed")
    recorded_by: str
    recorded_at: datetime


class Observation(Schema):
    """A value of an objective's measure at a time."""

    observed_at: datetime
    value: float
    source: Literal["expression", "manual"]
    recorded_by: str
    recorded_at: datetime


class Objective(Schema):
    """An objective agreed with the customer, its progress and status as of ``as_of``."""

    id: int
    title: str
    measure: str = Field(description='an expression evaluated in the warehouse, or "manual"')
    baseline: float = Field(description="the value when the objective was created")
    target: float = Field(description="the latest agreed target value")
    target_date: date = Field(description="the latest agreed date (the whole day counts)")
    original_target: float
    original_target_date: date
    owner: str | None = Field(description="the objective's CSM (else the plan owner's)")
    status: ObjectiveStatus = Field(
        description="met: an observation reached the latest agreed target by its date; missed: "
        "the date passed without; dropped: set by a person; open otherwise"
    )
    met_at: datetime | None
    latest_value: Number
    latest_observed_at: datetime | None
    progress: Number = Field(
        description="(latest value - baseline) / (target - baseline); 1 is the target"
    )
    milestones: list[Milestone]
    renegotiations: list[Renegotiation]
    observations: list[Observation]


class PlanVersion(Schema):
    version: int
    at: datetime
    actor: str
    change: str


class Plan(Schema):
    """A success plan as one version left it, with statuses as of ``as_of``."""

    id: int
    account_id: str
    title: str
    owner: str | None
    version: int = Field(description="the version shown; writes may name it to refuse conflicts")
    latest_version: int
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str
    as_of: datetime = Field(description="statuses and milestones use observations up to here")
    objectives: list[Objective]
    versions: list[PlanVersion]


class PlanSummary(Schema):
    """One line per plan: its objectives counted by status."""

    id: int
    account_id: str
    title: str
    owner: str | None
    version: int
    updated_at: datetime
    objectives: int
    open: int
    met: int
    missed: int
    dropped: int
    next_target_date: date | None = Field(description="the earliest date of an open objective")


class PlanList(Schema):
    as_of: datetime
    plans: list[PlanSummary]


class CheckedValue(Schema):
    plan_id: int
    objective_id: int
    account_id: str
    value: Number


class CheckFailure(Schema):
    plan_id: int
    objective_id: int
    account_id: str
    reason: str


class PlanCheck(Schema):
    """What ``plans check`` evaluated as of ``at``: values recorded, skipped and failed."""

    at: datetime
    evaluated: int = Field(description="open expression objectives evaluated")
    recorded: int = Field(description="observations written (a value already there is skipped)")
    values: list[CheckedValue]
    failures: list[CheckFailure]


class AchievedGroup(Schema):
    """Objectives decided by ``at`` in one group, the share met and its Wilson interval."""

    group: str
    decided: int = Field(description="objectives met by `at`, or whose agreed date has passed")
    met: int
    missed: int
    rate: Number
    lower: Number
    upper: Number


class GoalsAchieved(Schema):
    """The goals-achieved rate as of ``at``: overall, and per CSM or per segment."""

    at: datetime
    by: Literal["csm", "segment"]
    confidence: float
    overall: AchievedGroup
    groups: list[AchievedGroup]


# -- requests (the API's bodies; the CLI's --file holds a list of ObjectiveInput) ------------

MAX_MAGNITUDE = 1e15  # as in expressions: larger values mean nothing here


def _storable(text: str | None) -> str | None:
    """Text every store keeps as written (no NUL, no lone surrogates)."""
    if text is not None and any(c == "\x00" or "\ud800" <= c <= "\udfff" for c in text):
        raise ValueError("contains a character that cannot be stored (NUL or a lone surrogate)")
    return text


def _agreed_date(value: date | None) -> date | None:
    if value is not None and not date(1970, 1, 1) <= value <= date(9000, 12, 31):
        raise ValueError("an agreed date is between 1970-01-01 and 9000-12-31")
    return value


Text = Annotated[str, AfterValidator(_storable)]
AgreedDate = Annotated[date, AfterValidator(_agreed_date)]
Value = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE)]


class ObjectiveInput(Schema):
    """An objective to agree: ``measure`` is an expression (its baseline is evaluated now) or
    ``manual`` (give the ``baseline``, the value today)."""

    title: Text = Field(min_length=1, max_length=500)
    measure: Text = Field(default="manual", min_length=1, max_length=4000)
    baseline: Value | None = Field(default=None, description="manual measures only")
    target: Value
    target_date: AgreedDate
    owner: Text | None = Field(default=None, min_length=1, max_length=200)


class PlanCreate(Schema):
    account_id: Text = Field(min_length=1, max_length=200)
    title: Text = Field(min_length=1, max_length=500)
    owner: Text | None = Field(default=None, min_length=1, max_length=200)
    objectives: list[ObjectiveInput] = Field(default_factory=list, max_length=200)


class ObjectivesAdd(Schema):
    objectives: list[ObjectiveInput] = Field(min_length=1, max_length=200)
    version: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="refuse (409) unless at this version"
    )


class ObjectiveUpdate(Schema):
    title: Text | None = Field(default=None, min_length=1, max_length=500)
    owner: Text | None = Field(default=None, min_length=1, max_length=200)
    status: Literal["dropped"] | None = Field(default=None, description="only people drop")
    value: Value | None = Field(default=None, description="a manual value observed now")
    version: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="refuse (409) unless at this version"
    )


class RenegotiationRequest(Schema):
    target: Value
    target_date: AgreedDate | None = Field(default=None, description="default: unchanged")
    reason: Text = Field(min_length=1, max_length=2000)
    agreed_by: Text = Field(min_length=1, max_length=200)
    version: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="refuse (409) unless at this version"
    )

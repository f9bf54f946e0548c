"""Definition models: what a closeloop project declares, as frozen pydantic models.

Expressions (audience, exclusions, goal) are kept as text here; the project loader parses each one
with its position in the YAML file so an error points at the right line and column.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

MIN_HOLDOUT = 0.05
MAX_HOLDOUT = 0.5
DEFAULT_HOLDOUT = 0.2
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _\-./]*$")


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Target(StrEnum):
    ACCOUNT = "account"


class ReEntry(StrEnum):
    NEVER = "never"


class EmailStep(Frozen):
    """Send an email built from a Jinja template in the project's ``templates/`` folder."""

    send: Literal["email"]
    subject: str = Field(min_length=1)
    template: str = Field(
        min_length=1, description="templates/<name>.txt.j2 (and optional .html.j2)"
    )
    to: Literal["account_contacts"] = "account_contacts"


Step = Annotated[EmailStep, Field(discriminator="send")]


class Hypothesis(Frozen):
    """What the team expects before launch; locked when the job launches."""

    expected_effect: str = Field(min_length=1)
    primary_metric: Literal["completion_rate", "time_to_goal"] = "completion_rate"
    minimum_effect: float | None = Field(default=None, gt=0, le=1)


class JobDefinition(Frozen):
    """An intervention: one goal, an audience, a duration, actions and a randomized holdout."""

    name: str = Field(min_length=1, max_length=120)
    description: str = ""
    target: Target = Target.ACCOUNT
    audience: str = Field(min_length=1)
    exclusions: tuple[str, ...] = ()
    goal: str = Field(min_length=1)
    duration_days: int = Field(gt=0, le=3650)
    re_entry: ReEntry = ReEntry.NEVER
    observational: bool = False  # before holdout: the holdout check reads it
    holdout: float = DEFAULT_HOLDOUT
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    steps: tuple[Step, ...] = ()
    hypothesis: Hypothesis | None = None
    priority: int = 0

    @field_validator("name")
    @classmethod
    def _name_is_readable(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                "a job name starts with a letter or digit and uses letters, digits, spaces, - _ . /"
            )
        return value

    @field_validator("holdout")
    @classmethod
    def _holdout_is_honest(cls, value: float, info: ValidationInfo) -> float:
        if not 0 <= value < 1:
            raise ValueError("holdout is a fraction of the audience, between 0 and 1")
        # Without a holdout nothing can be said about cause; only explicitly observational jobs may
        # go without one (they are measured by matching instead).
        if not info.data.get("observational") and not MIN_HOLDOUT <= value <= MAX_HOLDOUT:
            raise ValueError(
                f"holdout must be between {MIN_HOLDOUT} and {MAX_HOLDOUT} (got {value}); "
                "set `observational: true` to run without a randomized holdout"
            )
        return value

    @model_validator(mode="after")
    def _window_is_ordered(self) -> JobDefinition:
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self

    def is_enrolling(self, at: datetime) -> bool:
        """Whether the job admits new enrollments at ``at`` (its enrollment window is open)."""
        if self.starts_at is not None and at < self.starts_at:
            return False
        return self.ends_at is None or at < self.ends_at


class ProjectConfig(Frozen):
    """``closeloop.yaml``: the project's name and where its definitions live."""

    name: str = Field(min_length=1)
    jobs: tuple[str, ...] = ("jobs.yaml",)
    email_from: str = "success@closeloop.local"
    unsubscribe_url: str = "https://example.com/unsubscribe?account={account_id}"


class JobsFile(Frozen):
    jobs: tuple[JobDefinition, ...] = ()

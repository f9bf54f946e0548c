"""The job editor's results: a draft's located problems, its power and dry run before launch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from closeloop.schemas.base import Number, Schema
from closeloop.schemas.jobs import DryRun, JobWritten
from closeloop.schemas.planning import PowerPlan


class DraftProblem(Schema):
    """One problem of a draft, located as ``closeloop validate`` locates it."""

    severity: Literal["error", "warning"]
    message: str
    hint: str = ""
    in_draft: bool = Field(
        description="true when the place is in the draft's own text (line and column count in "
        "it); false for a problem elsewhere in the project (``file`` says where)"
    )
    file: str | None = Field(
        default=None, description="the project file (relative), or null for the draft's text"
    )
    line: int | None = Field(default=None, ge=1)
    column: int | None = Field(default=None, ge=1)
    source_line: str | None = Field(default=None, description="the text of the offending line")
    caret: str | None = Field(default=None, description="the line with a caret under the column")


class DraftValidation(Schema):
    """A job draft (the YAML of one item of ``jobs:``) checked with the whole project, as
    ``closeloop validate`` and the API's job writes check it; nothing is written."""

    job: str | None = Field(description="the draft's name, when it has one")
    editing: str | None = Field(description="the job being edited; null for a new job")
    file: str | None = Field(description="the jobs file the draft would be written to")
    valid: bool = Field(description="true when no problem is an error (warnings may remain)")
    problems: list[DraftProblem]


class DraftPower(Schema):
    """A draft's power estimate before launch (as ``closeloop power --job``): the weeks to reach
    the detectable effect and the sample per arm, or why none can be made."""

    validation: DraftValidation
    plan: PowerPlan | None = None
    problem: str | None = Field(default=None, description="why no estimate could be made")


class DraftDryRun(Schema):
    """A draft's dry run (as ``closeloop dry-run``): who would enter now and what each would get;
    nothing is recorded or sent."""

    validation: DraftValidation
    dry_run: DryRun | None = None
    audience_sample: list[str] = Field(
        default_factory=list, description="the first entering accounts (at most 20)"
    )
    problem: str | None = Field(default=None, description="why the dry run could not be made")


class DraftSaved(Schema):
    """A draft saved to its jobs file (as ``POST``/``PUT /api/jobs``), or the problems that kept
    it from being written (``written`` null: nothing changed)."""

    validation: DraftValidation
    written: JobWritten | None = None


class EditorFields(Schema):
    """The common fields of a job the editor's form fills into the YAML."""

    name: str = ""
    hypothesis: str = Field(default="", description="hypothesis.expected_effect")
    minimum_effect: Number = Field(default=None, description="hypothesis.minimum_effect")
    audience: str = ""
    goal: str = ""
    duration_days: int | None = None
    holdout: Number = None
    email_subject: str = Field(default="", description="the first email step's subject")
    email_template: str = Field(default="", description="the first email step's template")


class JobEditor(Schema):
    """The editor page: the job's YAML (one source of truth), its form fields and status."""

    editing: str | None = Field(description="the job being edited; null for a new job")
    status: str | None = Field(description="the edited job's status (draft, live, …)")
    yaml: str = Field(description="the job as the YAML of one item of `jobs:`")
    fields: EditorFields
    file: str | None = Field(description="the jobs file it is (or will be) written to")
